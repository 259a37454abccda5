//! The content store: containerd's content API in domain terms (digests, records,
//! ingests), over the index, the Kubo client and the local blob cache.
mod cache;
mod error;
pub mod filter;
mod follow_add;
mod fsck;
mod identity;
mod labels;
mod locks;
mod open_verified;
mod paths;
mod peers;
mod publish;
mod reader;
mod writer;

pub use error::StoreError;
pub use fsck::{fsck, FindingKind, FsckOptions, FsckReport, Outcome};
pub use open_verified::VerifiedBlob;
pub use paths::DataPaths;
pub use reader::BlobStream;
pub use writer::{WriteAction, WriteRequest, WriteState, Writer};

use crate::config::{Config, ImportOptions};
use crate::digest::Digest;
use crate::index::{BlobRecord, Index, UnixNanos};
use crate::ipfs::KuboClient;
use crate::resolve::cluster::ClusterClient;
use crate::resolve::Resolver;
use cache::BlobCache;
use error::blocking;
use filter::{Fields, Filter};
use locks::RefLocks;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// A committed blob as containerd sees it, plus its CID.
pub type Info = BlobRecord;

/// Progress of an in-progress ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    pub ingest_ref: String,
    pub offset: u64,
    pub total: u64,
    pub expected: Option<String>,
    pub started_at: UnixNanos,
    pub updated_at: UnixNanos,
}

/// Totals for `ipcs status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub blobs: u64,
    pub blob_bytes: u64,
    pub ingests: u64,
    pub cache_bytes: u64,
}

/// How many records a List response carries at most.
const LIST_BATCH: usize = 256;

pub(crate) struct Inner {
    paths: DataPaths,
    index: Index,
    kubo: KuboClient,
    cache: BlobCache,
    locks: Arc<RefLocks>,
    lock_wait: Duration,
    max_label_bytes: usize,
    max_ref_bytes: usize,
    import: ImportOptions,
    resolver: Arc<Resolver>,
    cluster: Option<ClusterClient>,
    peer_deadline: Duration,
    /// One adoption from peers at a time per digest: containerd's Info and the layer
    /// prefetch often ask for the same blob together.
    adopting: tokio::sync::Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds how many blobs of a manifest are fetched from peers at once in the background.
    prefetch_slots: Arc<tokio::sync::Semaphore>,
    /// Set when some local blob may be missing from the cluster pinset.
    unpublished: AtomicBool,
    publish_now: Notify,
}

impl Inner {
    async fn exists(self: &Arc<Self>, d: &Digest) -> Result<bool, StoreError> {
        let me = self.clone();
        let key = d.to_string();
        blocking(move || Ok(me.index.blob(&key)?.is_some())).await
    }

    async fn record(self: &Arc<Self>, d: &Digest) -> Result<BlobRecord, StoreError> {
        let me = self.clone();
        let key = d.to_string();
        blocking(move || {
            me.index
                .blob(&key)?
                .ok_or(StoreError::NotFound(format!("content {key}")))
        })
        .await
    }
}

#[derive(Clone)]
pub struct ContentStore {
    inner: Arc<Inner>,
}

struct InfoFields<'a>(&'a BlobRecord);

impl Fields for InfoFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.split_first()? {
            (f, []) if f == "digest" => Some(self.0.digest.clone()),
            (f, rest) if f == "labels" && !rest.is_empty() => {
                self.0.labels.get(&rest.join(".")).cloned()
            }
            _ => None,
        }
    }
}

struct StatusFields<'a>(&'a IngestStatus);

impl Fields for StatusFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "ref" => Some(self.0.ingest_ref.clone()),
            _ => None,
        }
    }
}

impl ContentStore {
    /// Opens the data directory, dropping debris a crash may have left (temp files,
    /// ingest dirs without a record, cached files without a blob record).
    pub async fn open(config: &Config) -> Result<ContentStore, StoreError> {
        let paths = DataPaths::new(&config.data_dir);
        let p = paths.clone();
        let pin_name = blocking(move || {
            p.create_dirs()
                .map_err(StoreError::io(format!("creating {}", p.root().display())))?;
            identity::pin_name(&p).map_err(StoreError::io("reading the store id"))
        })
        .await?;
        let kubo = kubo_client(config, pin_name)?;
        let p = paths.clone();
        let cache_max = config.cache_max_bytes;
        let (index, cache) = blocking(move || {
            p.create_dirs()
                .map_err(StoreError::io(format!("creating {}", p.root().display())))?;
            let index = Index::open(&p.index())?;
            let _ = std::fs::remove_dir_all(p.tmp());
            std::fs::create_dir_all(p.tmp()).map_err(StoreError::io("creating tmp dir"))?;
            let live: HashSet<_> = index
                .ingests()?
                .iter()
                .map(|r| p.ingest_dir(&r.ingest_ref))
                .collect();
            for entry in
                std::fs::read_dir(p.ingests()).map_err(StoreError::io("listing ingests"))?
            {
                let dir = entry.map_err(StoreError::io("listing ingests"))?.path();
                if !live.contains(&dir) {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            let cache = BlobCache::new(p.clone(), cache_max);
            cache
                .load(|d, size| matches!(index.blob(&d.to_string()), Ok(Some(r)) if r.size == size))
                .map_err(StoreError::io("loading blob cache"))?;
            Ok((index, cache))
        })
        .await?;
        let cluster = config
            .cluster_api
            .as_ref()
            .map(|api| ClusterClient::new(api, config.kubo_timeout(), config.cluster_replication));
        let inner = Arc::new(Inner {
            paths,
            index,
            kubo,
            cache,
            locks: Arc::new(RefLocks::new(config.max_open_ingests)),
            lock_wait: config.lock_wait(),
            max_label_bytes: config.max_label_bytes,
            max_ref_bytes: config.max_ref_bytes,
            import: config.import.clone(),
            resolver: Arc::new(Resolver::default()),
            cluster: cluster.clone(),
            peer_deadline: config.peer_fetch_deadline(),
            adopting: Default::default(),
            prefetch_slots: Arc::new(tokio::sync::Semaphore::new(peers::PREFETCH_CONCURRENCY)),
            unpublished: AtomicBool::new(true),
            publish_now: Notify::new(),
        });
        if let Some(cluster) = cluster {
            publish::spawn(inner.clone(), cluster, config.cluster_refresh());
        }
        Ok(ContentStore { inner })
    }

    pub fn kubo(&self) -> &KuboClient {
        &self.inner.kubo
    }

    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut stats = StoreStats {
                ingests: inner.index.ingests()?.len() as u64,
                cache_bytes: inner.cache.bytes(),
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

    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.inner.resolver
    }

    /// A blob's info; a blob only peers have is fetched, verified and adopted first.
    pub async fn info(&self, d: &Digest) -> Result<Info, StoreError> {
        self.inner.record_or_adopt(d).await
    }

    pub async fn update(
        &self,
        d: &Digest,
        labels: BTreeMap<String, String>,
        paths: Vec<String>,
    ) -> Result<Info, StoreError> {
        // Refuse bad paths even for unknown digests, before touching the index.
        let max = self.inner.max_label_bytes;
        labels::apply_update(&BTreeMap::new(), &labels, &paths, max)?;
        let inner = self.inner.clone();
        let key = d.to_string();
        blocking(move || {
            let mut failure = None;
            let updated = inner.index.update_blob(&key, |rec| {
                match labels::apply_update(&rec.labels, &labels, &paths, max) {
                    Ok(l) => {
                        rec.labels = l;
                        rec.updated_at = UnixNanos::now();
                    }
                    Err(e) => failure = Some(e),
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            updated.ok_or(StoreError::NotFound(format!("content {key}")))
        })
        .await
    }

    /// Streams matching blobs in batches.
    pub fn list(
        &self,
        filters: &[String],
    ) -> Result<mpsc::Receiver<Result<Vec<Info>, StoreError>>, StoreError> {
        let filter = Filter::parse_all(filters)?;
        let (tx, rx) = mpsc::channel(4);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(LIST_BATCH);
            let mut open = true;
            let result = inner.index.for_each_blob(|rec| {
                if filter.matches(&InfoFields(&rec)) {
                    batch.push(rec);
                }
                if batch.len() == LIST_BATCH {
                    open = tx.blocking_send(Ok(std::mem::take(&mut batch))).is_ok();
                }
                open
            });
            let last = match result {
                Ok(()) => Ok(batch),
                Err(e) => Err(StoreError::from(e)),
            };
            if open {
                let _ = tx.blocking_send(last);
            }
        });
        Ok(rx)
    }

    /// Unpins the blob's DAG and forgets it. If Kubo cannot unpin, nothing changes and
    /// the error says why (containerd's GC retries on its next pass). A pin that no
    /// longer carries this store's name was taken over by someone else (Kubo keeps one
    /// recursive pin per CID: `nerdctl push ipfs://` re-adds every blob with `pin=true`),
    /// so, as in fsck, it is left alone and only the record goes.
    pub async fn delete(&self, d: &Digest) -> Result<(), StoreError> {
        let rec = self.inner.record(d).await?;
        let kubo = &self.inner.kubo;
        let ctx = || format!("unpinning {} ({})", rec.digest, rec.cid);
        let pinned_as = kubo
            .recursive_pin_name(&rec.cid)
            .await
            .map_err(StoreError::ipfs(ctx()))?;
        match (kubo.pin_name(), pinned_as.as_deref()) {
            (Some(ours), Some(name)) if name != ours => {
                tracing::info!(digest = %rec.digest, cid = %rec.cid, pin = name, "pinned by someone else; left pinned");
            }
            _ => kubo
                .pin_rm(&rec.cid)
                .await
                .map_err(StoreError::ipfs(ctx()))?,
        }
        let inner = self.inner.clone();
        let d = d.clone();
        blocking(move || {
            inner.index.remove_blob(&d.to_string())?;
            inner
                .cache
                .remove(&d)
                .map_err(StoreError::io(format!("removing cached {d}")))
        })
        .await?;
        tracing::info!(digest = %rec.digest, cid = %rec.cid, "deleted and unpinned");
        Ok(())
    }

    /// Reads `size` bytes from `offset` (size ≤ 0 or past the end: to the end). A cached
    /// blob is served without the index: containerd's unpack sends one Read per 32 KiB.
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
                return Ok(stream);
            }
        }
        let rec = self.inner.record_or_adopt(d).await?;
        let end = read_end(d, rec.size, offset, size)?;
        if offset == end {
            return Ok(BlobStream::empty());
        }
        let file = self
            .inner
            .cache
            .open_or_fetch(&self.inner.kubo, &rec)
            .await?;
        Ok(BlobStream::new(file, offset, end))
    }

    fn status_from_record(&self, rec: crate::index::IngestRecord) -> IngestStatus {
        let (offset, updated_at) = match self.inner.locks.progress(&rec.ingest_ref) {
            Some(p) => (p.offset, p.updated_at),
            None => {
                let meta = std::fs::metadata(self.inner.paths.ingest_data(&rec.ingest_ref)).ok();
                let offset = meta.as_ref().map(|m| m.len()).unwrap_or(0);
                let mtime = meta
                    .and_then(|m| m.modified().ok())
                    .map(UnixNanos::from_system_time);
                // Writers stamp the file's mtime precisely (see writer::stamp).
                let updated = match mtime {
                    Some(m) if offset > 0 => m,
                    _ => rec.updated_at,
                };
                (offset, updated)
            }
        };
        let total = self
            .inner
            .locks
            .progress(&rec.ingest_ref)
            .map(|p| p.total)
            .unwrap_or(rec.total);
        IngestStatus {
            ingest_ref: rec.ingest_ref,
            offset,
            total,
            expected: rec.expected,
            started_at: rec.started_at,
            updated_at,
        }
    }

    pub async fn status(&self, ingest_ref: &str) -> Result<IngestStatus, StoreError> {
        let me = self.clone();
        let r = ingest_ref.to_string();
        blocking(move || {
            let rec = me
                .inner
                .index
                .ingest(&r)?
                .ok_or_else(|| StoreError::NotFound(format!("ref {r}")))?;
            Ok(me.status_from_record(rec))
        })
        .await
    }

    pub async fn list_statuses(&self, filters: &[String]) -> Result<Vec<IngestStatus>, StoreError> {
        let filter = Filter::parse_all(filters)?;
        let me = self.clone();
        blocking(move || {
            Ok(me
                .inner
                .index
                .ingests()?
                .into_iter()
                .map(|rec| me.status_from_record(rec))
                .filter(|s| filter.matches(&StatusFields(s)))
                .collect())
        })
        .await
    }

    /// Drops an ingest. Waits for a writer holding the ref like a Write would.
    pub async fn abort(&self, ingest_ref: &str) -> Result<(), StoreError> {
        self.validate_ref(ingest_ref)?;
        let _guard = self
            .inner
            .locks
            .acquire_uncounted(
                ingest_ref,
                self.inner.lock_wait,
                locks::Progress {
                    offset: 0,
                    total: 0,
                    updated_at: UnixNanos::now(),
                },
            )
            .await?;
        let inner = self.inner.clone();
        let r = ingest_ref.to_string();
        let existed = blocking(move || writer::remove_ingest(&inner, &r)).await?;
        if !existed {
            return Err(StoreError::NotFound(format!("ref {ingest_ref}")));
        }
        Ok(())
    }

    /// Opens the ingest for `ingest_ref`, holding its lock until the writer is dropped.
    pub async fn writer(
        &self,
        ingest_ref: &str,
        total: i64,
        expected: Option<Digest>,
    ) -> Result<Writer, StoreError> {
        self.validate_ref(ingest_ref)?;
        Writer::open(self.inner.clone(), ingest_ref.to_string(), total, expected).await
    }

    /// Refs are opaque index keys, never paths; only their length is bounded.
    fn validate_ref(&self, ingest_ref: &str) -> Result<(), StoreError> {
        writer::validate_ref(ingest_ref)?;
        let max = self.inner.max_ref_bytes;
        if ingest_ref.len() > max {
            return Err(StoreError::InvalidArgument(format!(
                "ref of {} bytes is longer than max_ref_bytes = {max}",
                ingest_ref.len()
            )));
        }
        Ok(())
    }
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

/// The Kubo client of a store whose blob pins are named `pin_name`.
pub(crate) fn kubo_client(config: &Config, pin_name: String) -> Result<KuboClient, StoreError> {
    Ok(KuboClient::new(
        &config.kubo_api,
        config.kubo_timeout(),
        config.kubo_min_rate_bytes_per_sec,
    )
    .map_err(StoreError::ipfs("configuring kubo client"))?
    .with_pin_name(pin_name))
}
