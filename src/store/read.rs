//! Info, Read, List and totals. A cached blob is read without the index (containerd's
//! unpack sends one Read per 32 KiB); a blob not cached is fetched whole from the
//! backend once, verified against its digest, then served from the cache.
use crate::data::cache::{FetchError, Wanted};
use crate::digest::Digest;
use crate::filter::{Fields, Filter};
use crate::metrics::Source;
use crate::store::error::{blocking, StoreError};
use crate::store::{BlobStream, ContentStore, Info, Inner, StoreStats};
use futures::StreamExt;
use std::fs::File;
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many records a List response carries at most.
const LIST_BATCH: usize = 256;

struct InfoFields<'a>(&'a Info);

impl Fields for InfoFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.split_first()? {
            (f, []) if f == "digest" => Some(self.0.digest.to_string()),
            (f, rest) if f == "labels" && !rest.is_empty() => {
                self.0.labels.get(&rest.join(".")).cloned()
            }
            _ => None,
        }
    }
}

impl From<FetchError> for StoreError {
    fn from(e: FetchError) -> StoreError {
        match e {
            FetchError::Backend { context, source } => StoreError::Ipfs { context, source },
            FetchError::Io { context, source } => StoreError::Io { context, source },
            FetchError::Mismatch(msg) => StoreError::DataLoss(msg),
        }
    }
}

impl Inner {
    /// The blob's file: the cached one, else fetched from the backend and verified. A
    /// fetch credits the blob's next `size` bytes served to `source` (the backend's own
    /// blocks: Kubo; a DAG just pulled from other nodes: peers).
    pub(crate) async fn open_blob(
        self: &Arc<Self>,
        info: &Info,
        source: Source,
    ) -> Result<File, StoreError> {
        let want = Wanted {
            digest: &info.digest,
            cid: &info.cid,
            size: info.size,
        };
        // Opened first so that a cache entry whose file is gone counts as the miss it is.
        if let Some(f) = self.cache.open_async(&info.digest).await {
            self.metrics.cache_lookup(true);
            return Ok(f);
        }
        self.metrics.cache_lookup(false);
        let file = self
            .cache
            .open_or_fetch(self.backend.as_ref(), want)
            .await?;
        self.served.filled(&info.digest, source, info.size);
        Ok(file)
    }
}

impl ContentStore {
    /// A blob's info; a blob the index lacks is offered to the read-miss hook first.
    pub async fn info(&self, d: &Digest) -> Result<Info, StoreError> {
        self.inner.record_or_miss(d).await
    }

    /// Reads `size` bytes from `offset` (size ≤ 0 or past the end: to the end).
    pub async fn read(&self, d: &Digest, offset: i64, size: i64) -> Result<BlobStream, StoreError> {
        if offset < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "negative offset {offset}"
            )));
        }
        let offset = offset as u64;
        if let Some(blob_size) = self.inner.cache.cached_size(d) {
            let end = read_end(d, blob_size, offset, size)?;
            if offset == end {
                return Ok(BlobStream::empty());
            }
            let path = self.inner.cache.path(d);
            if let Some(stream) = BlobStream::open_cached(path, offset, end).await? {
                self.inner.metrics.cache_lookup(true);
                self.inner
                    .served
                    .serve(&self.inner.metrics, d, end - offset);
                return Ok(stream);
            }
        }
        let info = self.info(d).await?;
        let end = read_end(d, info.size, offset, size)?;
        if offset == end {
            return Ok(BlobStream::empty());
        }
        let file = self.inner.open_blob(&info, Source::Kubo).await?;
        self.inner
            .served
            .serve(&self.inner.metrics, d, end - offset);
        Ok(BlobStream::new(file, offset, end))
    }

    /// The whole blob if it is at most `limit` bytes (manifests), else `None`.
    pub async fn read_small(&self, d: &Digest, limit: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let info = self.info(d).await?;
        if info.size > limit {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(info.size as usize);
        let mut s = self.read(d, 0, 0).await?;
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?.1);
        }
        Ok(Some(out))
    }

    /// Whether the blob is in the local cache (no index lookup, no hook).
    pub fn is_cached(&self, d: &Digest) -> bool {
        self.inner.cache.cached_size(d).is_some()
    }

    /// Whether the store can serve: its index answers a lookup and its backend (Kubo)
    /// its version. `Err` says which is not.
    pub async fn ready(&self) -> Result<(), String> {
        let probe: Digest = format!("sha256:{}", "0".repeat(64))
            .parse()
            .map_err(|e| format!("{e}"))?;
        self.inner
            .exists(&probe)
            .await
            .map_err(|e| format!("index: {e}"))?;
        self.inner
            .backend
            .version()
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Whether the index holds the blob (no hook).
    pub async fn contains(&self, d: &Digest) -> Result<bool, StoreError> {
        self.inner.exists(d).await
    }

    /// The blob's info if the index holds it (no hook: never asks peers).
    pub async fn local_info(&self, d: &Digest) -> Result<Option<Info>, StoreError> {
        match self.inner.record(d).await {
            Ok(rec) => Ok(Some(rec.into())),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let (stored_bytes, stored_blobs) = inner.cache.stored();
            let mut stats = StoreStats {
                ingests: inner.index.ingests()?.len() as u64,
                cache_bytes: inner.cache.bytes(),
                stored_bytes,
                stored_blobs,
                index_bytes: std::fs::metadata(inner.paths.index())
                    .map(|m| m.len())
                    .unwrap_or(0),
                ingest_bytes: dir_bytes(&inner.paths.ingests()),
                ..Default::default()
            };
            inner.index.for_each_blob(|rec| {
                stats.blobs += 1;
                stats.blob_bytes += rec.size;
                true
            })?;
            Ok(stats)
        })
        .await
    }

    /// Streams matching blobs in batches. Each page of the index is read in its own
    /// short blocking step; waiting for a slow client happens on the async side.
    pub fn list(
        &self,
        filters: &[String],
    ) -> Result<mpsc::Receiver<Result<Vec<Info>, StoreError>>, StoreError> {
        let filter = Arc::new(Filter::parse_all(filters)?);
        let (tx, rx) = mpsc::channel(4);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            loop {
                let (inner2, filter2, from) = (inner.clone(), filter.clone(), after.take());
                let page = blocking(move || {
                    let (recs, more) = inner2.index.blobs_page(from.as_deref(), LIST_BATCH)?;
                    let last = recs.last().map(|r| r.digest.to_string());
                    let hits: Vec<Info> = recs
                        .into_iter()
                        .map(Info::from)
                        .filter(|i| filter2.matches(&InfoFields(i)))
                        .collect();
                    Ok((hits, more, last))
                })
                .await;
                let (hits, more, last) = match page {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if (!hits.is_empty() || !more) && tx.send(Ok(hits)).await.is_err() {
                    return;
                }
                if !more {
                    return;
                }
                after = last;
            }
        });
        Ok(rx)
    }
}

/// Bytes of the regular files under `dir` (ingest dirs are one level of files deep).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Where a Read of `size` bytes at `offset` ends in a blob of `blob_size` bytes.
fn read_end(d: &Digest, blob_size: u64, offset: u64, size: i64) -> Result<u64, StoreError> {
    if offset > blob_size {
        return Err(StoreError::OutOfRange(format!(
            "offset {offset} is beyond the end of {d} ({blob_size} bytes)"
        )));
    }
    Ok(if size <= 0 {
        blob_size
    } else {
        offset.saturating_add(size as u64).min(blob_size)
    })
}
