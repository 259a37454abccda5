//! Keeps this node's blobs in the IPFS Cluster pinset and the local mirror of that pinset
//! fresh. One background loop: read the pinset (the resolver answers Info misses from this
//! snapshot, never with a request per Info), then pin in the cluster whatever local blob is
//! not there yet. A cluster that is down only delays publishing; commits never wait for it.
use crate::resolve::cluster::ClusterClient;
use crate::resolve::TagRecord;
use crate::store::{ContentStore, Inner};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// At most this many blobs are published per round, so one round stays short.
const PUBLISH_BATCH: usize = 256;

pub(crate) fn spawn(inner: Arc<Inner>, cluster: ClusterClient, every: Duration) {
    tokio::spawn(async move {
        let mut healthy = true;
        loop {
            match cluster.view().await {
                Ok(view) => {
                    if !healthy {
                        tracing::info!(cluster = %cluster.address(), "cluster reachable again");
                    }
                    healthy = true;
                    inner.resolver.set_cluster_view(view);
                    publish_missing(&inner, &cluster).await;
                }
                Err(e) => {
                    if healthy {
                        tracing::warn!(error = %e, "cluster unreachable; using the last pinset snapshot, publishing later");
                    }
                    healthy = false;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = inner.publish_now.notified() => {}
            }
        }
    });
}

async fn publish_missing(inner: &Arc<Inner>, cluster: &ClusterClient) {
    if !inner.unpublished.swap(false, Ordering::SeqCst) {
        return;
    }
    let me = inner.clone();
    let missing = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let _ = me.index.for_each_blob(|rec| {
            if !me.resolver.cluster_has_cid(&rec.cid) {
                out.push(rec);
            }
            out.len() < PUBLISH_BATCH
        });
        out
    })
    .await
    .unwrap_or_default();
    let mut failed = missing.len() == PUBLISH_BATCH;
    for rec in missing {
        match cluster.pin_blob(&rec.cid, &rec.digest, rec.size).await {
            Ok(()) => tracing::debug!(digest = %rec.digest, cid = %rec.cid, "published to cluster"),
            Err(e) => {
                tracing::warn!(digest = %rec.digest, error = %e, "publishing to cluster failed; will retry");
                failed = true;
                break;
            }
        }
    }
    if failed {
        inner.unpublished.store(true, Ordering::SeqCst);
    }
}

impl ContentStore {
    /// Publishes that image `reference` (host/name:tag) points to manifest `digest`, so
    /// that peers can resolve the tag while the registry is unreachable. Best effort.
    pub async fn publish_tag(
        &self,
        reference: &str,
        digest: &str,
        media_type: &str,
        manifest: bytes::Bytes,
    ) {
        let Some(cluster) = &self.inner.cluster else {
            return;
        };
        if self
            .inner
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
        let added = match self
            .inner
            .kubo
            .add_bytes(record.to_string().into_bytes(), &self.inner.import)
            .await
        {
            Ok(a) => a,
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
        match cluster.pin_tag(&added.cid, reference, &tag).await {
            Ok(()) => {
                tracing::info!(%reference, %digest, cid = %added.cid, "published tag to cluster")
            }
            Err(e) => tracing::warn!(%reference, error = %e, "could not publish tag to cluster"),
        }
    }
}
