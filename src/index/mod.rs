//! The embedded metadata index: digest → CID, size, labels, timestamps; and the records
//! of in-progress ingests. Backed by redb (ACID, fsync on every commit), so a record is
//! either durably there or not at all. All calls block: callers use `spawn_blocking`.
mod leans;
mod pending;
mod records;
mod tables;

pub use records::{BlobRecord, IngestRecord, UnixNanos};

use redb::{Database, ReadableDatabase, ReadableTable};
use std::path::Path;
use std::sync::Arc;
use tables::{BLOBS, INGESTS, LEANS, PENDING_IMPORTS};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index: {0}")]
    Db(String),
    /// Another process holds the database's exclusive lock (e.g. a running `ipcs serve`).
    #[error("index {0} is in use by another process")]
    InUse(String),
    #[error("index record {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for IndexError {
            fn from(e: $t) -> Self { IndexError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Outcome of recording a commit.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    Inserted,
    /// Another writer committed the same digest first; nothing was changed.
    AlreadyExists,
}

#[derive(Clone)]
pub struct Index {
    db: Arc<Database>,
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, IndexError> {
    serde_json::from_slice(bytes).map_err(|source| IndexError::Corrupt {
        key: key.to_string(),
        source,
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("index records always serialize")
}

impl Index {
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let db = match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(IndexError::InUse(path.display().to_string()))
            }
            other => other?,
        };
        // Create the tables up front so read transactions never see them missing; only
        // when one is missing, so that a store on a full disk still opens.
        let all_there = {
            let tx = db.begin_read()?;
            [BLOBS, INGESTS, LEANS, PENDING_IMPORTS]
                .iter()
                .all(|t| tx.open_table(*t).is_ok())
        };
        if !all_there {
            let tx = db.begin_write()?;
            tx.open_table(BLOBS)?;
            tx.open_table(INGESTS)?;
            tx.open_table(LEANS)?;
            tx.open_table(PENDING_IMPORTS)?;
            tx.commit()?;
        }
        Ok(Index { db: Arc::new(db) })
    }

    pub fn blob(&self, digest: &str) -> Result<Option<BlobRecord>, IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOBS)?;
        let v = table.get(digest)?;
        v.map(|v| decode(digest, v.value())).transpose()
    }

    /// Visits every blob in digest order until `f` returns false.
    pub fn for_each_blob(&self, mut f: impl FnMut(BlobRecord) -> bool) -> Result<(), IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOBS)?;
        for entry in table.iter()? {
            let (k, v) = entry?;
            if !f(decode(k.value(), v.value())?) {
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` blobs with keys after `after`, in digest order, and whether the
    /// table holds more. Each page is its own short read transaction, so a List whose
    /// client stops reading holds no transaction (nor a blocking thread) meanwhile.
    pub fn blobs_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<BlobRecord>, bool), IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOBS)?;
        let range = match after {
            Some(a) => {
                table.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => table.range::<&str>(..)?,
        };
        let mut out = Vec::new();
        for entry in range {
            let (k, v) = entry?;
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(decode(k.value(), v.value())?);
        }
        Ok((out, false))
    }

    #[cfg(test)]
    pub fn blob_count(&self) -> Result<u64, IndexError> {
        use redb::ReadableTableMetadata;
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(BLOBS)?.len()?)
    }

    /// Records a committed blob and drops the ingest it came from, atomically.
    pub fn commit_blob(
        &self,
        record: &BlobRecord,
        ingest_ref: Option<&str>,
    ) -> Result<Committed, IndexError> {
        self.commit(record, ingest_ref, false)
    }

    /// As `commit_blob`, for a blob whose import into the backend is still to come: it is
    /// recorded as pending in the same transaction.
    pub fn commit_blob_pending(
        &self,
        record: &BlobRecord,
        ingest_ref: &str,
    ) -> Result<Committed, IndexError> {
        self.commit(record, Some(ingest_ref), true)
    }

    fn commit(
        &self,
        record: &BlobRecord,
        ingest_ref: Option<&str>,
        pending: bool,
    ) -> Result<Committed, IndexError> {
        let tx = self.db.begin_write()?;
        let outcome = {
            let mut blobs = tx.open_table(BLOBS)?;
            let mut ingests = tx.open_table(INGESTS)?;
            if let Some(r) = ingest_ref {
                ingests.remove(r)?;
            }
            let key = record.digest.to_string();
            if blobs.get(key.as_str())?.is_some() {
                Committed::AlreadyExists
            } else {
                blobs.insert(key.as_str(), encode(record).as_slice())?;
                if pending {
                    tx.open_table(PENDING_IMPORTS)?
                        .insert(key.as_str(), &[][..])?;
                }
                Committed::Inserted
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Applies `f` to the stored record and saves the result; `None` if absent.
    pub fn update_blob(
        &self,
        digest: &str,
        f: impl FnOnce(&mut BlobRecord),
    ) -> Result<Option<BlobRecord>, IndexError> {
        let tx = self.db.begin_write()?;
        let updated = {
            let mut blobs = tx.open_table(BLOBS)?;
            let current = blobs
                .get(digest)?
                .map(|v| decode::<BlobRecord>(digest, v.value()))
                .transpose()?;
            match current {
                Some(mut rec) => {
                    f(&mut rec);
                    blobs.insert(digest, encode(&rec).as_slice())?;
                    Some(rec)
                }
                None => None,
            }
        };
        tx.commit()?;
        Ok(updated)
    }

    pub fn remove_blob(&self, digest: &str) -> Result<Option<BlobRecord>, IndexError> {
        let tx = self.db.begin_write()?;
        let removed = {
            let mut blobs = tx.open_table(BLOBS)?;
            // A blob deleted before its import leaves nothing to import.
            tx.open_table(PENDING_IMPORTS)?.remove(digest)?;
            let old = blobs.remove(digest)?;
            old.map(|v| decode(digest, v.value())).transpose()?
        };
        tx.commit()?;
        Ok(removed)
    }

    pub fn ingest(&self, ingest_ref: &str) -> Result<Option<IngestRecord>, IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(INGESTS)?;
        let v = table.get(ingest_ref)?;
        v.map(|v| decode(ingest_ref, v.value())).transpose()
    }

    pub fn put_ingest(&self, record: &IngestRecord) -> Result<(), IndexError> {
        let tx = self.db.begin_write()?;
        tx.open_table(INGESTS)?
            .insert(record.ingest_ref.as_str(), encode(record).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn remove_ingest(&self, ingest_ref: &str) -> Result<Option<IngestRecord>, IndexError> {
        let tx = self.db.begin_write()?;
        let removed = {
            let mut table = tx.open_table(INGESTS)?;
            let old = table.remove(ingest_ref)?;
            old.map(|v| decode(ingest_ref, v.value())).transpose()?
        };
        tx.commit()?;
        Ok(removed)
    }

    pub fn ingests(&self) -> Result<Vec<IngestRecord>, IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(INGESTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(super) fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    pub(super) fn blob(d: &str) -> BlobRecord {
        BlobRecord {
            digest: d.parse().unwrap(),
            cid: "bafk".parse().unwrap(),
            size: 3,
            labels: BTreeMap::new(),
            created_at: UnixNanos(1),
            updated_at: UnixNanos(1),
        }
    }

    fn ingest(r: &str) -> IngestRecord {
        IngestRecord {
            ingest_ref: r.into(),
            total: 0,
            expected: None,
            started_at: UnixNanos(5),
            updated_at: UnixNanos(6),
        }
    }

    #[test]
    fn commit_blob_drops_ingest_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("i.redb")).unwrap();
        idx.put_ingest(&ingest("r1")).unwrap();
        assert_eq!(
            idx.commit_blob(&blob(&d('a')), Some("r1")).unwrap(),
            Committed::Inserted
        );
        assert!(idx.ingest("r1").unwrap().is_none());
        assert_eq!(
            idx.commit_blob(&blob(&d('a')), None).unwrap(),
            Committed::AlreadyExists
        );
        assert_eq!(idx.blob_count().unwrap(), 1);
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        {
            let idx = Index::open(&path).unwrap();
            idx.commit_blob(&blob(&d('b')), None).unwrap();
            idx.put_ingest(&ingest("r2")).unwrap();
        }
        let idx = Index::open(&path).unwrap();
        assert_eq!(idx.blob(&d('b')).unwrap().unwrap().cid.as_str(), "bafk");
        assert_eq!(idx.ingests().unwrap(), vec![ingest("r2")]);
    }

    #[test]
    fn update_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("i.redb")).unwrap();
        assert!(idx.update_blob(&d('c'), |_| {}).unwrap().is_none());
        idx.commit_blob(&blob(&d('c')), None).unwrap();
        let rec = idx
            .update_blob(&d('c'), |r| {
                r.labels.insert("k".into(), "v".into());
            })
            .unwrap()
            .unwrap();
        assert_eq!(rec.labels["k"], "v");
        assert!(idx.remove_blob(&d('c')).unwrap().is_some());
        assert!(idx.remove_blob(&d('c')).unwrap().is_none());
    }

    #[test]
    fn pages_cover_every_blob_once() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("i.redb")).unwrap();
        for c in "abcde".chars() {
            idx.commit_blob(&blob(&d(c)), None).unwrap();
        }
        let (first, more) = idx.blobs_page(None, 2).unwrap();
        assert!(more);
        let last = first[1].digest.to_string();
        let (rest, more) = idx.blobs_page(Some(&last), 10).unwrap();
        assert!(!more);
        assert_eq!(first.len() + rest.len(), 5);
        assert_eq!(rest[0].digest.to_string(), d('c'));
    }

    /// An ingest record whose expected digest does not parse is corrupt, not an ingest
    /// without expectation (it used to be dropped silently on resume).
    #[test]
    fn unparsable_expected_digest_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("i.redb")).unwrap();
        let raw = r#"{"ingest_ref":"r","total":0,"expected":"sha256:nothex","started_at":1,"updated_at":1}"#;
        let tx = idx.db.begin_write().unwrap();
        tx.open_table(INGESTS)
            .unwrap()
            .insert("r", raw.as_bytes())
            .unwrap();
        tx.commit().unwrap();
        assert!(matches!(idx.ingest("r"), Err(IndexError::Corrupt { .. })));
    }
}
