//! The one entry point for readers inside ipcs (the differ) that want a blob's bytes
//! without an RPC per read: the blob as a local file, verified against its digest.
use crate::digest::Digest;
use crate::store::{ContentStore, StoreError};
use std::fs::File;

/// A committed blob's bytes as an open file. The file stays readable even if the cache
/// evicts it meanwhile (eviction only unlinks).
pub struct VerifiedBlob {
    pub file: File,
    pub size: u64,
}

impl ContentStore {
    /// Opens the blob's cached file, or fetches it from IPFS (or adopts it from peers)
    /// and checks it against its digest first. Only blobs whose bytes were verified
    /// (at commit or at fetch) are ever in the cache, so no byte of a wrong blob is
    /// handed out.
    pub async fn open_verified(&self, d: &Digest) -> Result<VerifiedBlob, StoreError> {
        let file = match self.inner.cache.open(d) {
            Some(f) => f,
            None => {
                let rec = self.inner.record_or_adopt(d).await?;
                self.inner
                    .cache
                    .open_or_fetch(&self.inner.kubo, &rec)
                    .await?
            }
        };
        let size = file
            .metadata()
            .map_err(StoreError::io(format!("reading the size of cached {d}")))?
            .len();
        Ok(VerifiedBlob { file, size })
    }
}
