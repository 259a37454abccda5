//! Blobs this node never stored, obtained from peers. On an Info or Read miss the store
//! asks the resolver for digest → CID hints, fetches the DAG through Kubo (bitswap from
//! peers) within a deadline, and adopts the blob only if the bytes hash to the digest.
//! Whatever goes wrong — no hint, a wrong CID, slow peers, Kubo or cluster down — ends in
//! NOT_FOUND, so containerd downloads from the registry as if ipcs knew nothing.
use crate::digest::Digest;
use crate::index::{BlobRecord, Committed, UnixNanos};
use crate::store::error::{blocking, StoreError};
use crate::store::Inner;
use std::collections::BTreeMap;
use std::sync::Arc;

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
            let fetched = tokio::time::timeout(
                self.peer_deadline,
                self.cache.open_or_fetch(&self.kubo, &rec),
            )
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
        }
    }
}
