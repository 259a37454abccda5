//! The local blob cache: whole, verified blobs as plain files, so that containerd's many
//! small Reads are served by `pread` instead of a Kubo round trip each. Committed blobs
//! enter it by rename (their ingest file); blobs this node never wrote are fetched from
//! IPFS once, checked against their digest, then kept. Bounded in bytes, evicting the
//! least recently used; IPFS stays the source of truth, so eviction loses nothing.
//!
//! Blobs kept once (the backend references their file instead of holding a copy) live
//! beside the cache, under `stored/`: served the same way, never evicted and not counted
//! against the bound, because they are the only copy.
use crate::backend::{BackendError, BlobBackend, Reach};
use crate::cid::Cid;
use crate::data::paths::{blob_files, BlobFile, DataPaths};
use crate::data::single_flight::SingleFlight;
use crate::digest::{Digest, Digester};
use futures::StreamExt;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Why a fetch produced no file. The cache knows nothing of gRPC: the core maps these.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{context}: {source}")]
    Backend {
        context: String,
        source: BackendError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The bytes did not match the recorded size and digest; nothing was kept.
    #[error("{0}")]
    Mismatch(String),
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        context: context.to_string(),
        source,
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// What a fetch needs to know of a blob.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    pub digest: &'a Digest,
    pub cid: &'a Cid,
    pub size: u64,
}

struct Entry {
    size: u64,
    last_used: u64,
    /// The only copy, under `stored/`: never evicted.
    stored: bool,
}

#[derive(Default)]
struct State {
    entries: HashMap<Digest, Entry>,
    /// Bytes of the evictable entries (the bound applies to these).
    total: u64,
    /// Bytes of the stored entries.
    stored: u64,
    clock: u64,
}

impl State {
    fn insert(&mut self, digest: Digest, size: u64, stored: bool) {
        self.clock += 1;
        let last_used = self.clock;
        let entry = Entry {
            size,
            last_used,
            stored,
        };
        if let Some(old) = self.entries.insert(digest, entry) {
            self.forget(&old);
        }
        match stored {
            true => self.stored += size,
            false => self.total += size,
        }
    }

    fn forget(&mut self, e: &Entry) {
        match e.stored {
            true => self.stored -= e.size,
            false => self.total -= e.size,
        }
    }
}

/// Removes a file; one already gone is fine.
fn remove_if_present(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub struct BlobCache {
    paths: DataPaths,
    max_bytes: u64,
    state: Mutex<State>,
    /// One fetch per digest at a time; later readers wait for it and reuse its file.
    fetching: SingleFlight<Digest>,
    /// Makes every temp file name unique, whoever fetches.
    tmp_seq: AtomicU64,
    /// Blobs evicted since start (read by the metrics).
    evicted: AtomicU64,
}

impl BlobCache {
    pub fn new(paths: DataPaths, max_bytes: u64) -> BlobCache {
        BlobCache {
            paths,
            max_bytes,
            state: Mutex::new(State::default()),
            fetching: Default::default(),
            tmp_seq: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Registers the cached files found at startup, keeping only those `keep` accepts,
    /// and the stored files `keep_stored` accepts. Other cached files are removed; other
    /// stored files are returned, for the caller to decide (the backend may still read
    /// from them).
    pub fn load(
        &self,
        keep: impl Fn(&Digest, u64) -> bool,
        keep_stored: impl Fn(&Digest, u64) -> bool,
    ) -> std::io::Result<Vec<(Digest, PathBuf)>> {
        let mut found = Vec::new();
        let mut unrecorded = Vec::new();
        for (dir, stored) in [(self.paths.cache(), false), (self.paths.stored(), true)] {
            for BlobFile { digest, path, meta } in blob_files(&dir)? {
                match digest.filter(|_| meta.is_file()) {
                    Some(d) if stored && keep_stored(&d, meta.len()) => {
                        found.push((meta.modified().ok(), d, meta.len(), true))
                    }
                    Some(d) if stored => unrecorded.push((d, path)),
                    Some(d) if keep(&d, meta.len()) => {
                        found.push((meta.modified().ok(), d, meta.len(), false))
                    }
                    _ => std::fs::remove_file(path)?,
                }
            }
        }
        found.sort_by_key(|(t, _, _, _)| *t);
        let mut st = self.state.lock().expect("cache state");
        for (_, d, size, stored) in found {
            st.insert(d, size, stored);
        }
        drop(st);
        self.evict(None)?;
        Ok(unrecorded)
    }

    /// A fresh temp path on the cache's filesystem, unique within this process (the
    /// tmp dir is emptied at startup).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.paths.tmp().join(format!("{what}-{n}"))
    }

    /// Moves a verified file into the cache. Blocks: call from blocking code.
    pub fn adopt(&self, digest: &Digest, file: PathBuf, size: u64) -> std::io::Result<()> {
        let dest = self.paths.cached_blob(digest);
        std::fs::create_dir_all(dest.parent().expect("cache path has a parent"))?;
        std::fs::rename(&file, &dest)?;
        self.state
            .lock()
            .expect("cache state")
            .insert(digest.clone(), size, false);
        self.evict(Some(digest))
    }

    /// Gives the verified file `file` its stored name (a second link: the caller still
    /// owns `file`), replacing whatever that name held: a stored name only ever holds its
    /// digest's bytes. Not yet served: `register_stored` does that once the blob is
    /// recorded. Blocks: call from blocking code.
    pub fn link_stored(&self, digest: &Digest, file: &std::path::Path) -> std::io::Result<PathBuf> {
        let dest = self.paths.stored_blob(digest);
        std::fs::create_dir_all(dest.parent().expect("stored path has a parent"))?;
        let tmp = self.temp_path("link");
        std::fs::hard_link(file, &tmp)?;
        // Renamed over the name, so a reader never sees it missing.
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(dest)
    }

    /// Serves a recorded blob from its stored file (see `link_stored`).
    pub fn register_stored(&self, digest: &Digest, size: u64) {
        self.state
            .lock()
            .expect("cache state")
            .insert(digest.clone(), size, true);
    }

    /// Whether `digest` is kept as a stored file (the only copy).
    pub fn is_stored(&self, digest: &Digest) -> bool {
        let st = self.state.lock().expect("cache state");
        st.entries.get(digest).is_some_and(|e| e.stored)
    }

    /// The size of a cached blob, marking it used: enough to serve a Read without the
    /// index, since only blobs with a record are ever cached.
    pub fn cached_size(&self, digest: &Digest) -> Option<u64> {
        let mut st = self.state.lock().expect("cache state");
        st.clock += 1;
        let now = st.clock;
        let e = st.entries.get_mut(digest)?;
        e.last_used = now;
        Some(e.size)
    }

    /// Where the blob's file is: its stored name if kept once, else its cache name.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        match self.is_stored(digest) {
            true => self.paths.stored_blob(digest),
            false => self.paths.cached_blob(digest),
        }
    }

    /// Opens a cached blob, marking it used. Blocks: call from blocking code.
    pub fn open(&self, digest: &Digest) -> Option<File> {
        let stored = {
            let mut st = self.state.lock().expect("cache state");
            st.clock += 1;
            let now = st.clock;
            let e = st.entries.get_mut(digest)?;
            e.last_used = now;
            e.stored
        };
        match stored {
            true => File::open(self.paths.stored_blob(digest)).ok(),
            false => File::open(self.paths.cached_blob(digest)).ok(),
        }
    }

    /// `open` on a blocking thread.
    pub async fn open_async(self: &std::sync::Arc<Self>, digest: &Digest) -> Option<File> {
        let me = self.clone();
        let d = digest.clone();
        tokio::task::spawn_blocking(move || me.open(&d))
            .await
            .ok()
            .flatten()
    }

    /// `remove` on a blocking thread.
    pub async fn remove_async(self: &std::sync::Arc<Self>, digest: &Digest) -> std::io::Result<()> {
        let me = self.clone();
        let d = digest.clone();
        blocking(move || me.remove(&d)).await
    }

    /// Drops a blob's cached copy. A stored file is left in place: the backend may read
    /// from it, so only `remove_stored` takes it away. Blocks: call from blocking code.
    pub fn remove(&self, digest: &Digest) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("cache state");
        if st.entries.get(digest).is_some_and(|e| !e.stored) {
            let e = st.entries.remove(digest).expect("checked");
            st.forget(&e);
        }
        remove_if_present(&self.paths.cached_blob(digest))
    }

    /// Stops serving a stored blob and, if `unlink`, removes its file (the caller checked
    /// that no DAG the backend keeps reads from it any more). Blocks: call from blocking
    /// code.
    pub fn remove_stored(&self, digest: &Digest, unlink: bool) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("cache state");
        if st.entries.get(digest).is_some_and(|e| e.stored) {
            let e = st.entries.remove(digest).expect("checked");
            st.forget(&e);
        }
        drop(st);
        match unlink {
            true => remove_if_present(&self.paths.stored_blob(digest)),
            false => Ok(()),
        }
    }

    /// Bytes of the evictable cache.
    pub fn bytes(&self) -> u64 {
        self.state.lock().expect("cache state").total
    }

    /// Bytes and count of the stored blobs being served.
    pub fn stored(&self) -> (u64, u64) {
        let st = self.state.lock().expect("cache state");
        let n = st.entries.values().filter(|e| e.stored).count() as u64;
        (st.stored, n)
    }

    /// Blobs evicted to keep within the bound since this cache was made.
    pub fn evictions(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Drops least recently used blobs until the cache fits, never `keep`. Open file
    /// handles stay valid after the unlink, so a Read in progress is not disturbed.
    fn evict(&self, keep: Option<&Digest>) -> std::io::Result<()> {
        let victims: Vec<Digest> = {
            let mut st = self.state.lock().expect("cache state");
            // Most calls find the cache within bounds: skip the sort over every entry.
            if st.total <= self.max_bytes {
                return Ok(());
            }
            let mut by_age: Vec<(u64, Digest, u64)> = st
                .entries
                .iter()
                .filter(|(d, e)| Some(*d) != keep && !e.stored)
                .map(|(d, e)| (e.last_used, d.clone(), e.size))
                .collect();
            by_age.sort();
            let mut victims = Vec::new();
            let mut total = st.total;
            for (_, d, size) in by_age {
                if total <= self.max_bytes {
                    break;
                }
                total -= size;
                victims.push(d);
            }
            for d in &victims {
                if let Some(e) = st.entries.remove(d) {
                    st.forget(&e);
                }
            }
            self.evicted
                .fetch_add(victims.len() as u64, Ordering::Relaxed);
            victims
        };
        for d in victims {
            match std::fs::remove_file(self.paths.cached_blob(&d)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Returns the blob's file, fetching the whole DAG from the backend first if needed.
    /// No byte is handed out before the fetched content matched the size and digest.
    pub async fn open_or_fetch(
        self: &std::sync::Arc<Self>,
        backend: &dyn BlobBackend,
        want: Wanted<'_>,
    ) -> Result<File, FetchError> {
        if let Some(f) = self.open_async(want.digest).await {
            return Ok(f);
        }
        let _turn = self.fetching.turn(want.digest.clone()).await;
        match self.open_async(want.digest).await {
            Some(f) => Ok(f),
            None => self.fetch(backend, &want).await,
        }
    }

    async fn fetch(
        self: &std::sync::Arc<Self>,
        backend: &dyn BlobBackend,
        want: &Wanted<'_>,
    ) -> Result<File, FetchError> {
        let tmp = self.temp_path(&format!("fetch-{}", want.digest.hex()));
        let result = self.fetch_into(backend, want, tmp.clone()).await;
        if result.is_err() {
            let _ = blocking(move || std::fs::remove_file(tmp)).await;
        }
        result
    }

    async fn fetch_into(
        self: &std::sync::Arc<Self>,
        backend: &dyn BlobBackend,
        want: &Wanted<'_>,
        tmp: PathBuf,
    ) -> Result<File, FetchError> {
        let context = format!("fetching {} ({}) from ipfs", want.digest, want.cid);
        let ctx = |source| FetchError::Backend {
            context: context.clone(),
            source,
        };
        let mut stream = backend
            .cat(want.cid, 0, want.size, Reach::Network)
            .await
            .map_err(ctx)?;
        let t = tmp.clone();
        let mut out = blocking(move || File::create(&t))
            .await
            .map_err(io("creating fetch file"))?;
        let mut hasher = Digester::new(want.digest.algorithm());
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ctx)?;
            received += chunk.len() as u64;
            if received > want.size {
                break;
            }
            let (f, h) = blocking(move || {
                let mut f = out;
                let mut h = hasher;
                h.update(&chunk);
                f.write_all(&chunk)?;
                Ok((f, h))
            })
            .await
            .map_err(io("writing fetch file"))?;
            out = f;
            hasher = h;
        }
        let got = hasher.digest();
        if received != want.size || &got != want.digest {
            tracing::error!(
                digest = %want.digest, cid = %want.cid, received, got = %got,
                "content from ipfs does not match its digest; not serving it"
            );
            return Err(FetchError::Mismatch(format!(
                "{}: ipfs object {} has {} bytes with digest {}, expected {} bytes",
                want.digest, want.cid, received, got, want.size
            )));
        }
        let me = self.clone();
        let (d, size) = (want.digest.clone(), want.size);
        blocking(move || {
            out.sync_all()?;
            drop(out);
            me.adopt(&d, tmp, size)?;
            me.open(&d)
                .ok_or_else(|| std::io::Error::other(format!("{d} vanished from the cache")))
        })
        .await
        .map_err(io("caching fetched blob"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(cache: &BlobCache, paths: &DataPaths, content: &[u8]) -> Digest {
        let mut h = Digester::new(crate::digest::Algorithm::Sha256);
        h.update(content);
        let d = h.digest();
        let tmp = paths.tmp().join("x");
        std::fs::write(&tmp, content).unwrap();
        cache.adopt(&d, tmp, content.len() as u64).unwrap();
        d
    }

    #[test]
    fn evicts_least_recently_used_beyond_bound() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        paths.create_dirs().unwrap();
        let cache = BlobCache::new(paths.clone(), 10);
        let a = put(&cache, &paths, b"aaaa");
        let b = put(&cache, &paths, b"bbbb");
        assert!(cache.open(&a).is_some()); // a is now more recent than b
        let c = put(&cache, &paths, b"cccc");
        assert!(cache.open(&b).is_none());
        assert!(cache.open(&a).is_some());
        assert!(cache.open(&c).is_some());
        assert_eq!(cache.bytes(), 8);
        assert!(!paths.cached_blob(&b).exists());
    }

    #[test]
    fn load_drops_files_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        paths.create_dirs().unwrap();
        let cache = BlobCache::new(paths.clone(), 100);
        let a = put(&cache, &paths, b"keep");
        let b = put(&cache, &paths, b"drop");
        std::fs::write(paths.cache().join("sha256").join("not-a-digest"), b"x").unwrap();
        let reloaded = BlobCache::new(paths.clone(), 100);
        reloaded.load(|d, _| *d == a, |_, _| false).unwrap();
        assert!(reloaded.open(&a).is_some());
        assert!(reloaded.open(&b).is_none());
        assert!(!paths.cached_blob(&b).exists());
        assert_eq!(
            std::fs::read_dir(paths.cache().join("sha256"))
                .unwrap()
                .count(),
            1
        );
    }
}
