//! The one entry point for readers inside ipcs (the differ) that want a blob's bytes
//! without an RPC per read: the blob as a local file, verified against its digest.
use crate::digest::Digest;
use crate::metrics::Source;
use crate::store::{ContentStore, StoreError};
use std::fs::File;

/// A committed blob's bytes as an open file. The file stays readable even if the cache
/// evicts it meanwhile (eviction only unlinks).
pub struct VerifiedBlob {
    pub file: File,
    pub size: u64,
}

impl ContentStore {
    /// Opens the blob's cached file, or fetches it from the backend (a blob the index
    /// lacks is offered to the read-miss hook first, as for Read)
    /// and checks it against its digest first. Only blobs whose bytes were verified
    /// (at commit or at fetch) are ever in the cache, so no byte of a wrong blob is
    /// handed out.
    pub async fn open_verified(&self, d: &Digest) -> Result<VerifiedBlob, StoreError> {
        let file = match self.inner.cache.open_async(d).await {
            Some(f) => {
                self.inner.metrics.cache_lookup(true);
                f
            }
            None => {
                let info = self.inner.record_or_miss(d).await?;
                self.inner.open_blob(&info, Source::Kubo).await?
            }
        };
        let size = file
            .metadata()
            .map_err(StoreError::io(format!("reading the size of cached {d}")))?
            .len();
        self.inner.served.serve(&self.inner.metrics, d, size);
        Ok(VerifiedBlob { file, size })
    }
}
