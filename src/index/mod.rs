//! The embedded metadata index: digest → CID, size, labels, timestamps; and the records
//! of in-progress ingests. Backed by redb (ACID, fsync on every commit), so a record is
//! either durably there or not at all. All calls block: callers use `spawn_blocking`.
mod records;
mod tables;

pub use records::{BlobRecord, IngestRecord, UnixNanos};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::Path;
use std::sync::Arc;
use tables::{BLOBS, INGESTS};

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
        // Create the tables up front so read transactions never see them missing.
        let tx = db.begin_write()?;
        tx.open_table(BLOBS)?;
        tx.open_table(INGESTS)?;
        tx.commit()?;
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

    pub fn blob_count(&self) -> Result<u64, IndexError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(BLOBS)?.len()?)
    }

    /// Records a committed blob and drops the ingest it came from, atomically.
    pub fn commit_blob(
        &self,
        record: &BlobRecord,
        ingest_ref: Option<&str>,
    ) -> Result<Committed, IndexError> {
        let tx = self.db.begin_write()?;
        let outcome = {
            let mut blobs = tx.open_table(BLOBS)?;
            let mut ingests = tx.open_table(INGESTS)?;
            if let Some(r) = ingest_ref {
                ingests.remove(r)?;
            }
            if blobs.get(record.digest.as_str())?.is_some() {
                Committed::AlreadyExists
            } else {
                blobs.insert(record.digest.as_str(), encode(record).as_slice())?;
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

    fn blob(d: &str) -> BlobRecord {
        BlobRecord {
            digest: d.into(),
            cid: "bafk".into(),
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
            idx.commit_blob(&blob("sha256:a"), Some("r1")).unwrap(),
            Committed::Inserted
        );
        assert!(idx.ingest("r1").unwrap().is_none());
        assert_eq!(
            idx.commit_blob(&blob("sha256:a"), None).unwrap(),
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
            idx.commit_blob(&blob("sha256:b"), None).unwrap();
            idx.put_ingest(&ingest("r2")).unwrap();
        }
        let idx = Index::open(&path).unwrap();
        assert_eq!(idx.blob("sha256:b").unwrap().unwrap().cid, "bafk");
        assert_eq!(idx.ingests().unwrap(), vec![ingest("r2")]);
    }

    #[test]
    fn update_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("i.redb")).unwrap();
        assert!(idx.update_blob("sha256:c", |_| {}).unwrap().is_none());
        idx.commit_blob(&blob("sha256:c"), None).unwrap();
        let rec = idx
            .update_blob("sha256:c", |r| {
                r.labels.insert("k".into(), "v".into());
            })
            .unwrap()
            .unwrap();
        assert_eq!(rec.labels["k"], "v");
        assert!(idx.remove_blob("sha256:c").unwrap().is_some());
        assert!(idx.remove_blob("sha256:c").unwrap().is_none());
    }
}
