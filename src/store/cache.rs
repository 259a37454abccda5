//! The local blob cache: whole, verified blobs as plain files, so that containerd's many
//! small Reads are served by `pread` instead of a Kubo round trip each. Committed blobs
//! enter it by rename (their ingest file); blobs this node never wrote are fetched from
//! IPFS once, checked against their digest, then kept. Bounded in bytes, evicting the
//! least recently used; IPFS stays the source of truth, so eviction loses nothing.
use crate::digest::{Digest, Digester};
use crate::index::BlobRecord;
use crate::ipfs::KuboClient;
use crate::store::error::{blocking, StoreError};
use crate::store::paths::DataPaths;
use futures::StreamExt;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

struct Entry {
    size: u64,
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Digest, Entry>,
    total: u64,
    clock: u64,
}

pub struct BlobCache {
    paths: DataPaths,
    max_bytes: u64,
    state: Mutex<State>,
    /// One fetch per digest at a time; later readers wait for it and reuse its file.
    fetching: tokio::sync::Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

impl BlobCache {
    pub fn new(paths: DataPaths, max_bytes: u64) -> BlobCache {
        BlobCache {
            paths,
            max_bytes,
            state: Mutex::new(State::default()),
            fetching: Default::default(),
        }
    }

    /// Registers the cached files found at startup, keeping only those `keep` accepts.
    pub fn load(&self, keep: impl Fn(&Digest, u64) -> bool) -> std::io::Result<()> {
        let mut found = Vec::new();
        for alg_dir in std::fs::read_dir(self.paths.cache())? {
            let alg_dir = alg_dir?;
            let alg = alg_dir.file_name().to_string_lossy().to_string();
            for f in std::fs::read_dir(alg_dir.path())? {
                let f = f?;
                let meta = f.metadata()?;
                let name = f.file_name().to_string_lossy().to_string();
                match format!("{alg}:{name}").parse::<Digest>() {
                    Ok(d) if meta.is_file() && keep(&d, meta.len()) => {
                        found.push((meta.modified().ok(), d, meta.len()))
                    }
                    _ => std::fs::remove_file(f.path())?,
                }
            }
        }
        found.sort_by_key(|(t, _, _)| *t);
        let mut st = self.state.lock().expect("cache state");
        for (_, d, size) in found {
            st.clock += 1;
            let last_used = st.clock;
            st.total += size;
            st.entries.insert(d, Entry { size, last_used });
        }
        drop(st);
        self.evict(None)
    }

    /// Moves a verified file into the cache.
    pub fn adopt(&self, digest: &Digest, file: PathBuf, size: u64) -> std::io::Result<()> {
        let dest = self.paths.cached_blob(digest);
        std::fs::create_dir_all(dest.parent().expect("cache path has a parent"))?;
        std::fs::rename(&file, &dest)?;
        {
            let mut st = self.state.lock().expect("cache state");
            st.clock += 1;
            let last_used = st.clock;
            if let Some(old) = st.entries.insert(digest.clone(), Entry { size, last_used }) {
                st.total -= old.size;
            }
            st.total += size;
        }
        self.evict(Some(digest))
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

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.paths.cached_blob(digest)
    }

    /// Opens a cached blob, marking it used.
    pub fn open(&self, digest: &Digest) -> Option<File> {
        {
            let mut st = self.state.lock().expect("cache state");
            st.clock += 1;
            let now = st.clock;
            st.entries.get_mut(digest)?.last_used = now;
        }
        File::open(self.paths.cached_blob(digest)).ok()
    }

    pub fn remove(&self, digest: &Digest) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("cache state");
        if let Some(e) = st.entries.remove(digest) {
            st.total -= e.size;
        }
        match std::fs::remove_file(self.paths.cached_blob(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.state.lock().expect("cache state").total
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
                .filter(|(d, _)| Some(*d) != keep)
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
                    st.total -= e.size;
                }
            }
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

    /// Returns the blob's file, fetching the whole DAG from IPFS first if needed. No byte
    /// is handed out before the fetched content matched the recorded size and digest.
    pub async fn open_or_fetch(
        &self,
        kubo: &KuboClient,
        record: &BlobRecord,
    ) -> Result<File, StoreError> {
        let digest: Digest = record.digest.parse()?;
        if let Some(f) = self.open(&digest) {
            return Ok(f);
        }
        let slot = {
            let mut fetching = self.fetching.lock().await;
            fetching.entry(digest.clone()).or_default().clone()
        };
        let _turn = slot.lock().await;
        let result = match self.open(&digest) {
            Some(f) => Ok(f),
            None => self.fetch(kubo, record, &digest).await,
        };
        self.fetching.lock().await.remove(&digest);
        result
    }

    async fn fetch(
        &self,
        kubo: &KuboClient,
        record: &BlobRecord,
        digest: &Digest,
    ) -> Result<File, StoreError> {
        let tmp = self.paths.tmp().join(format!("fetch-{}", digest.hex()));
        let ctx = format!("fetching {} ({}) from ipfs", record.digest, record.cid);
        let mut stream = Box::pin(
            kubo.cat(&record.cid, 0, record.size)
                .await
                .map_err(StoreError::ipfs(ctx.clone()))?,
        );
        let t = tmp.clone();
        let mut out =
            blocking(move || File::create(&t).map_err(StoreError::io("creating fetch file")))
                .await?;
        let mut hasher = Digester::new(digest.algorithm());
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(StoreError::ipfs(ctx.clone()))?;
            received += chunk.len() as u64;
            if received > record.size {
                break;
            }
            let (f, h) = blocking(move || {
                let mut f = out;
                let mut h = hasher;
                h.update(&chunk);
                f.write_all(&chunk)
                    .map_err(StoreError::io("writing fetch file"))?;
                Ok((f, h))
            })
            .await?;
            out = f;
            hasher = h;
        }
        let got = hasher.digest();
        if received != record.size || &got != digest {
            let _ = std::fs::remove_file(&tmp);
            tracing::error!(
                digest = %record.digest, cid = %record.cid, received, got = %got,
                "content from ipfs does not match its digest; not serving it"
            );
            return Err(StoreError::DataLoss(format!(
                "{}: ipfs object {} has {} bytes with digest {}, expected {} bytes",
                record.digest, record.cid, received, got, record.size
            )));
        }
        let size = record.size;
        let d = digest.clone();
        blocking(move || {
            out.sync_all()
                .map_err(StoreError::io("syncing fetch file"))?;
            Ok(())
        })
        .await?;
        self.adopt(&d, tmp, size)
            .map_err(StoreError::io("caching fetched blob"))?;
        self.open(&d)
            .ok_or_else(|| StoreError::Internal(format!("{d} vanished from cache")))
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
        reloaded.load(|d, _| *d == a).unwrap();
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
