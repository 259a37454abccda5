//! Keeps this node's blobs in the IPFS Cluster pinset and the local mirror of that pinset
//! fresh. One background loop: read the pinset (the resolver answers Info misses from this
//! snapshot, never with a request per Info), then pin in the cluster whatever local blob is
//! not there yet. A cluster that is down only delays publishing; commits never wait for it.
//! With `swarm = true` the pinset is read more often right after start, and at once after
//! each member announce (`members`), so that the swarm's members know each other early.
use crate::metrics::Kind;
use crate::peer::{Peers, TagRecord};
use crate::share_policy::Verdict;
use crate::store::{ContentStore, Info, StoreError};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// At most this many blobs are published per round, so one round stays short.
const PUBLISH_BATCH: usize = 256;

pub(crate) fn spawn(peers: Arc<Peers>, store: ContentStore, every: Duration) {
    tokio::spawn(async move {
        let Some(cluster) = peers.cluster.clone() else {
            return;
        };
        let mut healthy = true;
        let started = std::time::Instant::now();
        let metrics = store.metrics().clone();
        let weak = Arc::downgrade(&peers);
        metrics.sample(
            "ipcs_cluster_pinset_age_seconds",
            "Seconds since the local snapshot of the cluster pinset was last read",
            Kind::Gauge,
            move || {
                Some(
                    weak.upgrade()?
                        .resolver
                        .cluster_refreshed()?
                        .elapsed()
                        .as_secs_f64(),
                )
            },
        );
        loop {
            match cluster.view().await {
                Ok(view) => {
                    if !healthy {
                        tracing::info!(cluster = %cluster.address(), "cluster reachable again");
                    }
                    healthy = true;
                    metrics.pinset_blobs(view.blobs.len());
                    peers.resolver.set_cluster_view(view);
                    let scan = unpublished_blobs(&peers, &store);
                    let pin = |rec: Info| {
                        let cluster = cluster.clone();
                        async move {
                            let r = cluster
                                .pin_blob(rec.cid.as_str(), &rec.digest.to_string(), rec.size)
                                .await;
                            match &r {
                                Ok(()) => {
                                    tracing::debug!(digest = %rec.digest, cid = %rec.cid, "published to cluster")
                                }
                                Err(e) => {
                                    tracing::warn!(digest = %rec.digest, error = %e, "publishing to cluster failed; will retry")
                                }
                            }
                            r.is_ok()
                        }
                    };
                    publish_round(&peers.unpublished, scan, pin).await;
                }
                Err(e) => {
                    if healthy {
                        tracing::warn!(error = %e, "cluster unreachable; using the last pinset snapshot, publishing later");
                    }
                    healthy = false;
                }
            }
            let pause = crate::peer::members::refresh_every(
                every,
                peers.member.is_some(),
                started.elapsed(),
            );
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = peers.publish_now.notified() => {}
            }
        }
    });
}

/// Local blobs the last pinset snapshot lacks, at most `PUBLISH_BATCH`, minus those of
/// repositories this node does not share. A blob whose source label has not arrived yet
/// (containerd labels it after the commit) leaves the work pending for the next round.
async fn unpublished_blobs(peers: &Peers, store: &ContentStore) -> Result<Vec<Info>, StoreError> {
    let mut rx = store.list(&[])?;
    let mut out = Vec::new();
    while let Some(batch) = rx.recv().await {
        for rec in batch? {
            match peers.share.verdict(&rec.labels) {
                Verdict::Share => {}
                Verdict::Keep => continue,
                Verdict::Unknown => {
                    peers.unpublished.store(true, Ordering::SeqCst);
                    continue;
                }
            }
            // Its DAG is not in Kubo yet: published once imported (`imported` hook).
            if store.import_pending(&rec.digest) {
                continue;
            }
            if !peers.resolver.cluster_has_cid(rec.cid.as_str()) {
                out.push(rec);
                if out.len() == PUBLISH_BATCH {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// One publishing round. The flag is cleared before the scan, so a commit during the
/// round sets it again; it is set back whenever the round did not finish the work: the
/// scan failed, stopped at the batch bound, or a pin failed.
async fn publish_round<P, F>(
    unpublished: &AtomicBool,
    scan: impl Future<Output = Result<Vec<Info>, StoreError>>,
    mut pin: P,
) where
    P: FnMut(Info) -> F,
    F: Future<Output = bool>,
{
    if !unpublished.swap(false, Ordering::SeqCst) {
        return;
    }
    let missing = match scan.await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "listing blobs to publish failed; will retry");
            unpublished.store(true, Ordering::SeqCst);
            return;
        }
    };
    let mut unfinished = missing.len() == PUBLISH_BATCH;
    for rec in missing {
        if !pin(rec).await {
            unfinished = true;
            break;
        }
    }
    if unfinished {
        unpublished.store(true, Ordering::SeqCst);
    }
}

impl Peers {
    /// Publishes that image `reference` (host/name:tag) points to manifest `digest`, so
    /// that peers can resolve the tag while the registry is unreachable. Best effort.
    pub async fn publish_tag(
        &self,
        store: &ContentStore,
        reference: &str,
        digest: &str,
        media_type: &str,
        manifest: bytes::Bytes,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if self
            .resolver
            .tag(reference)
            .is_some_and(|t| t.digest == digest)
        {
            return;
        }
        let record = serde_json::json!({
            "ipcs-tag": reference,
            "digest": digest,
            "mediaType": media_type,
            "size": manifest.len(),
        });
        let cid = match store
            .backend()
            .add_record(record.to_string().into_bytes())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%reference, error = %e, "could not store tag record in ipfs");
                return;
            }
        };
        let tag = TagRecord {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
            size: manifest.len() as u64,
            published: String::new(),
        };
        match cluster.pin_tag(cid.as_str(), reference, &tag).await {
            Ok(()) => {
                tracing::info!(%reference, %digest, cid = %cid, "published tag to cluster")
            }
            Err(e) => tracing::warn!(%reference, error = %e, "could not publish tag to cluster"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scan that fails must leave the work pending (it used to be dropped with
    /// `let _ =` after the flag was cleared, until the next commit).
    #[tokio::test]
    async fn a_failed_scan_keeps_blobs_unpublished() {
        let flag = AtomicBool::new(true);
        let scan = async { Err(StoreError::Internal("index unreadable".into())) };
        publish_round(&flag, scan, |_| async { true }).await;
        assert!(flag.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_finished_round_clears_the_flag_and_a_failed_pin_does_not() {
        let info = |c: char| Info {
            digest: format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap(),
            cid: "bafyx".parse().unwrap(),
            size: 1,
            labels: Default::default(),
            created_at: crate::index::UnixNanos(0),
            updated_at: crate::index::UnixNanos(0),
        };
        let flag = AtomicBool::new(true);
        publish_round(&flag, async { Ok(vec![info('a')]) }, |_| async { true }).await;
        assert!(!flag.load(Ordering::SeqCst));
        flag.store(true, Ordering::SeqCst);
        publish_round(&flag, async { Ok(vec![info('a')]) }, |_| async { false }).await;
        assert!(flag.load(Ordering::SeqCst));
    }
}
