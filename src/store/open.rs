//! Opening a store: the data directory, the index, the cache, and the debris a crash may
//! have left (temp files, ingest dirs without a record, cached files without a record).
use crate::backend::BlobBackend;
use crate::config::Config;
use crate::data::{BlobCache, DataPaths};
use crate::index::Index;
use crate::metrics::{Kind, Metrics};
use crate::store::error::{blocking, StoreError};
use crate::store::hooks::Distribution;
use crate::store::later_import::{self, LaterImports};
use crate::store::locks::RefLocks;
use crate::store::{ContentStore, Inner};
use std::collections::HashSet;
use std::sync::Arc;

impl ContentStore {
    /// Opens `config.data_dir` over `backend`, sending commit events and read misses to
    /// `hooks`. The backend must name its pins with this data dir's id
    /// (`data::identity::pin_name`).
    pub async fn open(
        config: &Config,
        backend: Arc<dyn BlobBackend>,
        hooks: Arc<dyn Distribution>,
        metrics: Metrics,
    ) -> Result<ContentStore, StoreError> {
        let given = DataPaths::new(&config.data_dir);
        let cache_max = config.cache_max_bytes;
        let (paths, index, cache, pending) = blocking(move || {
            given
                .create_dirs()
                .map_err(StoreError::io(format!("creating {}", given.root().display())))?;
            // Absolute and real: a backend that keeps references records these paths.
            let p = std::fs::canonicalize(given.root())
                .map(|root| DataPaths::new(&root))
                .map_err(StoreError::io(format!("resolving {}", given.root().display())))?;
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
            let recorded =
                |d: &crate::digest::Digest, size| matches!(index.blob(&d.to_string()), Ok(Some(r)) if r.size == size);
            let leaned_on =
                |d: &crate::digest::Digest| matches!(index.leaners_of(&d.to_string()), Ok(l) if !l.is_empty());
            let unrecorded = cache
                .load(recorded, |d, size| recorded(d, size) || leaned_on(d))
                .map_err(StoreError::io("loading blob cache"))?;
            if !unrecorded.is_empty() {
                // Left by commits a crash cut short: the backend may hold references into
                // them, so they stay until `ipcs fsck --repair` decides.
                tracing::warn!(files = unrecorded.len(), "stored files without a record; run ipcs fsck");
            }
            let pending = index.pending_imports()?;
            Ok((p, index, cache, pending))
        })
        .await?;
        let pending: Vec<_> = pending.iter().filter_map(|d| d.parse().ok()).collect();
        let later = match backend.by_reference() {
            Some(by_ref) => {
                let layout = by_ref.layout().filter(|_| config.import_after_commit);
                Some(LaterImports::new(layout, pending))
            }
            None => {
                if !pending.is_empty() {
                    // Their stored files serve reads; only the backend lacks their DAGs.
                    tracing::warn!(blobs = pending.len(), "blobs committed with filestore = true wait for their import into ipfs; start with filestore = true to finish them");
                }
                None
            }
        };
        let inner = Arc::new(Inner {
            paths,
            index,
            backend,
            cache: Arc::new(cache),
            locks: Arc::new(RefLocks::new(config.max_open_ingests)),
            lock_wait: config.lock_wait(),
            max_label_bytes: config.max_label_bytes,
            max_ref_bytes: config.max_ref_bytes,
            hooks,
            metrics,
            served: Default::default(),
            stored_turns: Default::default(),
            later: later.as_ref().map(|(l, _)| l.clone()),
        });
        if let Some((_, rx)) = later {
            later_import::start(&inner, rx);
        }
        sample(&inner);
        Ok(ContentStore { inner })
    }
}

/// What the metrics read from the store at each scrape. Weak: a scrape never keeps a
/// closed store alive.
fn sample(inner: &Arc<Inner>) {
    let m = &inner.metrics;
    let w = Arc::downgrade(inner);
    m.sample(
        "ipcs_cache_bytes",
        "Bytes in the local blob cache",
        Kind::Gauge,
        move || Some(w.upgrade()?.cache.bytes() as f64),
    );
    let w = Arc::downgrade(inner);
    m.sample(
        "ipcs_cache_evictions",
        "Blobs evicted from the local cache to keep it within cache_max_bytes",
        Kind::Counter,
        move || Some(w.upgrade()?.cache.evictions() as f64),
    );
    let w = Arc::downgrade(inner);
    m.sample(
        "ipcs_pending_imports",
        "Committed blobs whose import into ipfs is still to come",
        Kind::Gauge,
        move || Some(w.upgrade()?.later.as_ref().map_or(0, |l| l.count()) as f64),
    );
    let w = Arc::downgrade(inner);
    m.sample(
        "ipcs_open_ingests",
        "Write streams holding an ingest now",
        Kind::Gauge,
        move || Some(w.upgrade()?.locks.writers() as f64),
    );
}
