//! Blobs this node never stored, obtained from peers. On an Info or Read miss the store
//! asks the resolver for digest → CID hints, fetches the DAG through Kubo (bitswap from
//! peers) within a deadline, and adopts the blob only if the bytes hash to the digest.
//! Whatever goes wrong — no hint, a wrong CID, slow peers, Kubo or cluster down — ends in
//! NOT_FOUND, so containerd downloads from the registry as if ipcs knew nothing.
//!
//! containerd asks Info of each blob inside its metadata write transaction, so blobs a
//! pull needs would cross one after another; once a manifest arrives from peers, its
//! config and layers are fetched in the background, a few at once, and each Info then
//! finds its blob ready or joins the fetch already under way.
use crate::digest::Digest;
use crate::index::{BlobRecord, Committed, UnixNanos};
use crate::store::error::{blocking, StoreError};
use crate::store::Inner;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Blobs of one manifest fetched from peers at once in the background.
pub(crate) const PREFETCH_CONCURRENCY: usize = 4;
/// At most this many blobs of one manifest are prefetched (real images stay under 128
/// layers); a manifest naming thousands cannot keep the node fetching for hours.
const PREFETCH_MAX_BLOBS: usize = 256;

impl Inner {
    /// The blob's record, adopting it from peers if the index does not have it.
    pub(crate) async fn record_or_adopt(
        self: &Arc<Self>,
        d: &Digest,
    ) -> Result<BlobRecord, StoreError> {
        match self.record(d).await {
            Err(StoreError::NotFound(msg)) => match self.adopt_from_peers(d).await {
                Some(rec) => Ok(rec),
                None => Err(StoreError::NotFound(msg)),
            },
            other => other,
        }
    }

    async fn adopt_from_peers(self: &Arc<Self>, d: &Digest) -> Option<BlobRecord> {
        let slot = {
            let mut adopting = self.adopting.lock().await;
            adopting.entry(d.clone()).or_default().clone()
        };
        let adopted = {
            let (_turn, waited) = match slot.clone().try_lock_owned() {
                Ok(turn) => (turn, false),
                Err(_) => (slot.clone().lock_owned().await, true),
            };
            // Whoever held the turn before adopted it, or tried every candidate in vain
            // (trying again would only make containerd wait twice before the registry).
            match self.record(d).await {
                Ok(rec) => Some(rec),
                Err(_) if waited => None,
                Err(_) => self.adopt_candidates(d).await,
            }
        };
        let mut adopting = self.adopting.lock().await;
        if Arc::strong_count(&slot) <= 2 {
            // Nobody else waits on this digest: the map only ever holds live fetches.
            adopting.remove(d);
        }
        adopted
    }

    async fn adopt_candidates(self: &Arc<Self>, d: &Digest) -> Option<BlobRecord> {
        let key = d.to_string();
        for cand in self.resolver.candidates(&key) {
            let t = UnixNanos::now();
            let rec = BlobRecord {
                digest: key.clone(),
                cid: cand.cid.clone(),
                size: cand.size,
                labels: BTreeMap::new(),
                created_at: t,
                updated_at: t,
            };
            let fetched = tokio::time::timeout(self.peer_deadline, async {
                self.prefetch_dag(d, &rec).await?;
                self.cache.open_or_fetch(&self.kubo, &rec).await
            })
            .await;
            match fetched {
                Ok(Ok(_file)) => {}
                Ok(Err(StoreError::DataLoss(msg))) => {
                    tracing::error!(digest = %key, cid = %cand.cid, origin = ?cand.origin, "{msg}; ignoring this mapping");
                    self.resolver.reject(&key, &cand.cid);
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(digest = %key, cid = %cand.cid, error = %e, "peers could not deliver; containerd will use the registry");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(digest = %key, cid = %cand.cid, deadline = ?self.peer_deadline, "peers did not deliver in time; containerd will use the registry");
                    continue;
                }
            }
            if let Err(e) = self.kubo.pin_add(&cand.cid, cand.size).await {
                tracing::warn!(digest = %key, cid = %cand.cid, error = %e, "could not pin a blob from peers; containerd will use the registry");
                let _ = self.cache.remove(d);
                continue;
            }
            let inner = self.clone();
            let r = rec.clone();
            let stored = blocking(move || Ok(inner.index.commit_blob(&r, None)?)).await;
            match stored {
                Ok(Committed::Inserted) => {
                    tracing::info!(digest = %key, cid = %cand.cid, size = cand.size, origin = ?cand.origin, "obtained from peers, verified");
                    self.learn_if_manifest(d, cand.size).await;
                    return Some(rec);
                }
                Ok(Committed::AlreadyExists) => return self.record(d).await.ok(),
                Err(e) => {
                    tracing::warn!(digest = %key, error = %e, "could not record a blob from peers");
                    return None;
                }
            }
        }
        None
    }

    /// Pulls the candidate's whole DAG into Kubo before it is read and hashed, after the
    /// root's recorded file size matched (a mapping to a DAG of another size is refused
    /// before any more of it crosses the network).
    async fn prefetch_dag(&self, d: &Digest, rec: &BlobRecord) -> Result<(), StoreError> {
        if self.cache.cached_size(d).is_some() {
            return Ok(());
        }
        let ctx = || format!("fetching {} ({}) from peers", rec.digest, rec.cid);
        let size = self
            .kubo
            .file_size(&rec.cid)
            .await
            .map_err(StoreError::ipfs(ctx()))?;
        if size != rec.size {
            return Err(StoreError::DataLoss(format!(
                "ipfs DAG {} holds {size} bytes, but {} is {} bytes",
                rec.cid, rec.digest, rec.size
            )));
        }
        let blocks = self
            .kubo
            .fetch_dag(&rec.cid, rec.size)
            .await
            .map_err(StoreError::ipfs(ctx()))?;
        tracing::debug!(digest = %rec.digest, cid = %rec.cid, blocks, "DAG fetched from peers");
        Ok(())
    }

    /// Small JSON blobs may be manifests whose descriptors carry `ipfs://` URLs.
    pub(crate) async fn learn_if_manifest(self: &Arc<Self>, d: &Digest, size: u64) {
        const MAX_MANIFEST: u64 = 4 << 20;
        if size == 0 || size > MAX_MANIFEST {
            return;
        }
        let Some(file) = self.cache.open(d) else {
            return;
        };
        let bytes = blocking(move || {
            use std::io::Read;
            let mut buf = Vec::new();
            let mut f = file;
            f.read_to_end(&mut buf)
                .map_err(StoreError::io("reading manifest"))?;
            Ok(buf)
        })
        .await;
        if let Ok(bytes) = bytes {
            let n = self.resolver.learn_from_manifest(&bytes);
            if n > 0 {
                tracing::info!(digest = %d, hints = n, "learned ipfs:// locations from manifest");
            }
            self.prefetch_blobs_of(d, &bytes);
        }
    }

    /// Starts fetching, in the background, every blob the image manifest `bytes` names
    /// that this node lacks and peers are known to hold.
    fn prefetch_blobs_of(self: &Arc<Self>, manifest: &Digest, bytes: &[u8]) {
        let wanted: Vec<Digest> = crate::resolve::image_blobs(bytes)
            .iter()
            .filter_map(|s| s.parse().ok())
            .filter(|b: &Digest| self.cache.cached_size(b).is_none())
            .filter(|b| !self.resolver.candidates(&b.to_string()).is_empty())
            .take(PREFETCH_MAX_BLOBS)
            .collect();
        if wanted.is_empty() {
            return;
        }
        tracing::info!(%manifest, blobs = wanted.len(), "prefetching the manifest's blobs from peers");
        for b in wanted {
            let inner = self.clone();
            let slots = self.prefetch_slots.clone();
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                if inner.exists(&b).await.unwrap_or(true) {
                    return;
                }
                inner.adopt_from_peers(&b).await;
            });
        }
    }
}
