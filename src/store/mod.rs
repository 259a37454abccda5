//! The content core: containerd's content API in domain terms (ingest, commit, read,
//! info/list/update/delete, ref locks, labels) over the index, the data directory and
//! two seams it owns: a blob backend (`crate::backend`: add, cat, pin, unpin, stat) and
//! distribution hooks (`hooks`: commit events and a read-miss hook) that peer
//! distribution plugs into. The core never names Kubo or the cluster.
//!
//! Files: `open` builds a store; `read` serves Info/Read/List/stats; `manage` Update and
//! Delete; `ingest` Status/ListStatuses/Abort and opens writers; `writer` + `follow_add`
//! run one Write stream and its commit; `adopt` records a blob another node stored;
//! `open_verified` hands in-process readers (the differ) a verified local file;
//! `kept_once` keeps a committed blob's file as its only copy when the backend references
//! files instead of copying them; `ingest_hash` computes an ingest's digest and CID as it
//! streams, and `later_import` imports such blobs into the backend after their commit.
mod adopt;
mod error;
mod follow_add;
pub mod hooks;
mod ingest;
mod ingest_hash;
mod kept_once;
mod labels;
mod later_import;
mod locks;
mod manage;
mod open;
mod open_verified;
mod pin_holder;
mod read;
mod reader;
mod rules;
mod served;
mod types;
mod writer;

#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use error::{blocking, StoreError};
pub use hooks::{Distribution, Standalone};
pub use kept_once::stored_digest;
pub use later_import::ImportHold;
pub use open_verified::VerifiedBlob;
pub use reader::BlobStream;
pub use rules::MAX_MANIFEST_BYTES;
pub use types::{Info, IngestStatus, StoreStats};
pub use writer::{WriteAction, WriteRequest, WriteState, Writer};

use crate::backend::BlobBackend;
use crate::data::{BlobCache, DataPaths};
use crate::digest::Digest;
use crate::index::{BlobRecord, Index};
use crate::metrics::Metrics;
use locks::RefLocks;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Inner {
    paths: DataPaths,
    index: Index,
    backend: Arc<dyn BlobBackend>,
    cache: Arc<BlobCache>,
    locks: Arc<RefLocks>,
    lock_wait: Duration,
    max_label_bytes: usize,
    max_ref_bytes: usize,
    hooks: Arc<dyn Distribution>,
    metrics: Metrics,
    served: served::Served,
    /// One keep or release of a stored file per digest at a time.
    stored_turns: crate::data::SingleFlight<Digest>,
    /// Imports that run after their commit; None when the backend copies blobs.
    later: Option<Arc<later_import::LaterImports>>,
}

/// A handle on the content core; cheap to clone.
#[derive(Clone)]
pub struct ContentStore {
    inner: Arc<Inner>,
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

    /// The blob's record, asking the read-miss hook when the index does not have it.
    async fn record_or_miss(self: &Arc<Self>, d: &Digest) -> Result<Info, StoreError> {
        match self.record(d).await.map(Info::from) {
            Err(StoreError::NotFound(msg)) => {
                let core = ContentStore {
                    inner: self.clone(),
                };
                match self.hooks.clone().read_miss(core, d.clone()).await {
                    Some(rec) => Ok(rec),
                    None => Err(StoreError::NotFound(msg)),
                }
            }
            other => other,
        }
    }

    /// Tells the hooks a blob became local (committed here or adopted).
    async fn announce(self: &Arc<Self>, rec: &BlobRecord) {
        let core = ContentStore {
            inner: self.clone(),
        };
        self.hooks.clone().committed(core, rec.clone().into()).await
    }
}

impl ContentStore {
    pub fn backend(&self) -> &Arc<dyn BlobBackend> {
        &self.inner.backend
    }

    /// The process's metrics, for the layers above that count (peers, differ, faces).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}
