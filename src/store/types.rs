//! What the core answers with. `Info` is the API's view of a blob; the index's
//! `BlobRecord` is the storage form and stays inside the core.
use crate::cid::Cid;
use crate::digest::Digest;
use crate::index::{BlobRecord, UnixNanos};
use std::collections::BTreeMap;

/// A committed blob as containerd sees it, plus its CID for the admin listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub digest: Digest,
    pub cid: Cid,
    pub size: u64,
    pub labels: BTreeMap<String, String>,
    pub created_at: UnixNanos,
    pub updated_at: UnixNanos,
}

impl From<BlobRecord> for Info {
    fn from(r: BlobRecord) -> Info {
        Info {
            digest: r.digest,
            cid: r.cid,
            size: r.size,
            labels: r.labels,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Progress of an in-progress ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    pub ingest_ref: String,
    pub offset: u64,
    pub total: u64,
    pub expected: Option<Digest>,
    pub started_at: UnixNanos,
    pub updated_at: UnixNanos,
}

/// Totals for `ipcs status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub blobs: u64,
    pub blob_bytes: u64,
    pub ingests: u64,
    pub cache_bytes: u64,
    pub index_bytes: u64,
    pub ingest_bytes: u64,
    pub stored_bytes: u64,
    pub stored_blobs: u64,
}
