//! Adopting a blob this node did not write, for the read-miss hook: given a digest and
//! a CID someone claims holds it, the core fetches the whole DAG, keeps it only if the
//! bytes hash to the digest, pins it by name and records it. The hook chooses
//! candidates and deadlines; the core alone decides what enters the index.
use crate::backend::Reach;
use crate::cid::Cid;
use crate::digest::Digest;
use crate::index::{BlobRecord, Committed, UnixNanos};
use crate::metrics::Source;
use crate::store::error::{blocking, StoreError};
use crate::store::{ContentStore, Info};
use std::collections::BTreeMap;

impl ContentStore {
    /// Fetches, verifies, pins and records `digest` from `cid` (`size` bytes). A
    /// mismatch is `DataLoss`; nothing is kept unless every step succeeded.
    pub async fn adopt(&self, digest: &Digest, cid: &Cid, size: u64) -> Result<Info, StoreError> {
        let t = UnixNanos::now();
        let rec = BlobRecord {
            digest: digest.clone(),
            cid: cid.clone(),
            size,
            labels: BTreeMap::new(),
            created_at: t,
            updated_at: t,
        };
        let inner = &self.inner;
        inner.open_blob(&rec.clone().into(), Source::Peers).await?;
        if let Err(e) = inner.backend.pin(cid, size, Reach::Network).await {
            let _ = inner.cache.remove_async(digest).await;
            return Err(StoreError::ipfs(format!("pinning {digest} ({cid})"))(e));
        }
        let me = inner.clone();
        let r = rec.clone();
        match blocking(move || Ok(me.index.commit_blob(&r, None)?)).await? {
            Committed::Inserted => {
                inner.announce(&rec).await;
                Ok(rec.into())
            }
            Committed::AlreadyExists => Ok(inner.record(digest).await?.into()),
        }
    }
}
