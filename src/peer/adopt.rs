//! Blobs this node never stored, obtained from peers. On an Info or Read miss the hint
//! view gives digest → CID candidates; each is checked for size, its DAG pulled through
//! the backend (bitswap from peers) within a deadline, and handed to the core, which
//! adopts the blob only if the bytes hash to the digest. Whatever goes wrong — no hint, a
//! wrong CID, slow peers, Kubo or cluster down — ends in NOT_FOUND, so containerd
//! downloads from the registry as if ipcs knew nothing.
//!
//! containerd asks Info of each blob inside its metadata write transaction, so blobs a
//! pull needs would cross one after another; once a manifest arrives, its config and
//! layers that peers hold are fetched in the background, a few at once, and each Info
//! then finds its blob ready or joins the fetch already under way.
use crate::cid::Cid;
use crate::digest::Digest;
use crate::metrics::{Adoption, Fallback, Hint};
use crate::peer::manifest::image_blobs;
use crate::peer::resolve::Origin;
use crate::peer::Peers;
use crate::store::{ContentStore, Info, StoreError, MAX_MANIFEST_BYTES};
use std::sync::Arc;

/// Blobs of one manifest fetched from peers at once in the background.
pub(crate) const PREFETCH_CONCURRENCY: usize = 4;
/// At most this many blobs of one manifest are prefetched (real images stay under 128
/// layers); a manifest naming thousands cannot keep the node fetching for hours.
const PREFETCH_MAX_BLOBS: usize = 256;

impl Peers {
    /// The blob adopted from peers, or why containerd must use the registry (`None`:
    /// another caller just tried and already counted its outcome).
    pub(crate) async fn adopt_from_peers(
        &self,
        core: &ContentStore,
        d: &Digest,
    ) -> Result<Info, Option<Fallback>> {
        let turn = self.adopting.turn(d.clone()).await;
        // Whoever held the turn before adopted it, or tried every candidate in vain
        // (trying again would only make containerd wait twice before the registry).
        match core.contains(d).await {
            Ok(true) => core.info(d).await.map_err(|_| None),
            _ if turn.waited => Err(None),
            _ => self.adopt_candidates(core, d).await.map_err(Some),
        }
    }

    async fn adopt_candidates(&self, core: &ContentStore, d: &Digest) -> Result<Info, Fallback> {
        let key = d.to_string();
        let metrics = core.metrics();
        let mut why = Fallback::NotInCluster;
        for cand in self.resolver.candidates(&key) {
            let Ok(cid) = cand.cid.parse::<Cid>() else {
                self.resolver.reject(&key, &cand.cid);
                why = Fallback::VerificationFailed;
                continue;
            };
            let adopted = tokio::time::timeout(self.peer_deadline, async {
                self.prefetch_dag(core, d, &cid, cand.size)
                    .await
                    .map_err(|e| (Adoption::RefusedSize, e))?;
                core.adopt(d, &cid, cand.size)
                    .await
                    .map_err(|e| (Adoption::RefusedDigest, e))
            })
            .await;
            match adopted {
                Ok(Ok(info)) => {
                    metrics.adoption(Adoption::Ok);
                    metrics.adopted_by_hint(match cand.origin {
                        Origin::Cluster => Hint::Cluster,
                        Origin::ManifestUrl => Hint::ManifestUrl,
                    });
                    tracing::info!(digest = %key, cid = %cid, size = cand.size, origin = ?cand.origin, "obtained from peers, verified");
                    return Ok(info);
                }
                Ok(Err((refusal, StoreError::DataLoss(msg)))) => {
                    metrics.adoption(refusal);
                    why = Fallback::VerificationFailed;
                    tracing::error!(digest = %key, cid = %cid, origin = ?cand.origin, "{msg}; ignoring this mapping");
                    self.resolver.reject(&key, &cand.cid);
                }
                Ok(Err((_, e))) => {
                    metrics.adoption(Adoption::Failed);
                    why = Fallback::PeerFailed;
                    tracing::warn!(digest = %key, cid = %cid, error = %e, "peers could not deliver; containerd will use the registry");
                }
                Err(_) => {
                    metrics.adoption(Adoption::Failed);
                    why = Fallback::PeerFailed;
                    tracing::warn!(digest = %key, cid = %cid, deadline = ?self.peer_deadline, "peers did not deliver in time; containerd will use the registry");
                }
            }
        }
        Err(why)
    }

    /// Pulls the candidate's whole DAG into the node before the core reads and hashes
    /// it, after the root's recorded file size matched (a mapping to a DAG of another
    /// size is refused before any more of it crosses the network).
    async fn prefetch_dag(
        &self,
        core: &ContentStore,
        d: &Digest,
        cid: &Cid,
        want: u64,
    ) -> Result<(), StoreError> {
        if core.is_cached(d) {
            return Ok(());
        }
        let backend = core.backend();
        let ctx = || format!("fetching {d} ({cid}) from peers");
        let size = backend.stat(cid).await.map_err(StoreError::ipfs(ctx()))?;
        if size != want {
            return Err(StoreError::DataLoss(format!(
                "ipfs DAG {cid} holds {size} bytes, but {d} is {want} bytes"
            )));
        }
        let blocks = backend
            .fetch(cid, want)
            .await
            .map_err(StoreError::ipfs(ctx()))?;
        tracing::debug!(digest = %d, cid = %cid, blocks, "DAG fetched from peers");
        Ok(())
    }

    /// Small blobs may be manifests whose descriptors carry `ipfs://` URLs.
    pub(crate) async fn learn_if_manifest(self: &Arc<Self>, core: &ContentStore, info: &Info) {
        if info.size == 0 || info.size > MAX_MANIFEST_BYTES {
            return;
        }
        let Ok(Some(bytes)) = core.read_small(&info.digest, MAX_MANIFEST_BYTES).await else {
            return;
        };
        let n = self.resolver.learn_from_manifest(&bytes);
        if n > 0 {
            tracing::info!(digest = %info.digest, hints = n, "learned ipfs:// locations from manifest");
        }
        self.prefetch_blobs_of(core, &info.digest, &bytes);
    }

    /// Starts fetching, in the background, every blob the image manifest `bytes` names
    /// that this node lacks and peers are known to hold.
    fn prefetch_blobs_of(self: &Arc<Self>, core: &ContentStore, manifest: &Digest, bytes: &[u8]) {
        let wanted: Vec<Digest> = image_blobs(bytes)
            .iter()
            .filter_map(|s| s.parse().ok())
            .filter(|b: &Digest| !core.is_cached(b))
            .filter(|b| !self.resolver.candidates(&b.to_string()).is_empty())
            .take(PREFETCH_MAX_BLOBS)
            .collect();
        if wanted.is_empty() {
            return;
        }
        tracing::info!(%manifest, blobs = wanted.len(), "prefetching the manifest's blobs from peers");
        for b in wanted {
            let me = self.clone();
            let core = core.clone();
            let slots = self.prefetch_slots.clone();
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                if core.contains(&b).await.unwrap_or(true) {
                    return;
                }
                let _ = me.adopt_from_peers(&core, &b).await;
            });
        }
    }
}
