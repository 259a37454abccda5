//! What the index stores per committed blob and per in-progress ingest. Digests and CIDs
//! are stored as their strings (the JSON encoding is unchanged) and checked on decode.
use crate::cid::Cid;
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch: containerd compares timestamps at nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnixNanos(pub i64);

impl UnixNanos {
    pub fn now() -> UnixNanos {
        Self::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> UnixNanos {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => UnixNanos(d.as_nanos().min(i64::MAX as u128) as i64),
            Err(e) => UnixNanos(-(e.duration().as_nanos().min(i64::MAX as u128) as i64)),
        }
    }

    pub fn seconds(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    pub fn subsec_nanos(self) -> i32 {
        self.0.rem_euclid(1_000_000_000) as i32
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub digest: Digest,
    /// Root CID of the blob's UnixFS DAG in IPFS.
    pub cid: Cid,
    pub size: u64,
    pub labels: BTreeMap<String, String>,
    pub created_at: UnixNanos,
    pub updated_at: UnixNanos,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestRecord {
    pub ingest_ref: String,
    /// Expected total size, 0 when unknown.
    pub total: u64,
    /// Expected digest if the client announced one. Typed, so a record that does not
    /// parse is reported corrupt instead of silently losing the expectation.
    pub expected: Option<Digest>,
    pub started_at: UnixNanos,
    /// Last write as persisted; a live writer keeps a fresher value in memory.
    pub updated_at: UnixNanos,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_split_into_seconds_and_fraction() {
        let t = UnixNanos(1_700_000_000_123_456_789);
        assert_eq!(t.seconds(), 1_700_000_000);
        assert_eq!(t.subsec_nanos(), 123_456_789);
        let before_epoch = UnixNanos(-1);
        assert_eq!(before_epoch.seconds(), -1);
        assert_eq!(before_epoch.subsec_nanos(), 999_999_999);
    }
}
