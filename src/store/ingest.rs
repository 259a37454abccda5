//! Ingests seen from outside a Write stream: Status, ListStatuses, Abort, and opening a
//! writer. A held ref's live progress comes from its lock; otherwise from the file.
use crate::digest::Digest;
use crate::filter::{Fields, Filter};
use crate::index::{IngestRecord, UnixNanos};
use crate::store::error::{blocking, StoreError};
use crate::store::locks::Progress;
use crate::store::{rules, writer, ContentStore, IngestStatus, Writer};

struct StatusFields<'a>(&'a IngestStatus);

impl Fields for StatusFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "ref" => Some(self.0.ingest_ref.clone()),
            _ => None,
        }
    }
}

impl ContentStore {
    /// Blocks (file metadata): call from blocking code.
    fn status_from_record(&self, rec: IngestRecord) -> IngestStatus {
        // One snapshot of the writer's progress: offset, total and time must agree.
        let (offset, total, updated_at) = match self.inner.locks.progress(&rec.ingest_ref) {
            Some(p) => (p.offset, p.total, p.updated_at),
            None => {
                let meta = std::fs::metadata(self.inner.paths.ingest_data(&rec.ingest_ref)).ok();
                let offset = meta.as_ref().map(|m| m.len()).unwrap_or(0);
                let mtime = meta
                    .and_then(|m| m.modified().ok())
                    .map(UnixNanos::from_system_time);
                // Writers stamp the file's mtime precisely (see writer::stamp).
                let updated = match mtime {
                    Some(m) if offset > 0 => m,
                    _ => rec.updated_at,
                };
                (offset, rec.total, updated)
            }
        };
        IngestStatus {
            ingest_ref: rec.ingest_ref,
            offset,
            total,
            expected: rec.expected,
            started_at: rec.started_at,
            updated_at,
        }
    }

    pub async fn status(&self, ingest_ref: &str) -> Result<IngestStatus, StoreError> {
        let me = self.clone();
        let r = ingest_ref.to_string();
        blocking(move || {
            let rec = me
                .inner
                .index
                .ingest(&r)?
                .ok_or_else(|| StoreError::NotFound(format!("ref {r}")))?;
            Ok(me.status_from_record(rec))
        })
        .await
    }

    pub async fn list_statuses(&self, filters: &[String]) -> Result<Vec<IngestStatus>, StoreError> {
        let filter = Filter::parse_all(filters)?;
        let me = self.clone();
        blocking(move || {
            Ok(me
                .inner
                .index
                .ingests()?
                .into_iter()
                .map(|rec| me.status_from_record(rec))
                .filter(|s| filter.matches(&StatusFields(s)))
                .collect())
        })
        .await
    }

    /// Drops an ingest. Waits for a writer holding the ref like a Write would.
    pub async fn abort(&self, ingest_ref: &str) -> Result<(), StoreError> {
        rules::validate_ref(ingest_ref, self.inner.max_ref_bytes)?;
        let _guard = self
            .inner
            .locks
            .acquire_uncounted(
                ingest_ref,
                self.inner.lock_wait,
                Progress {
                    offset: 0,
                    total: 0,
                    updated_at: UnixNanos::now(),
                },
            )
            .await?;
        let inner = self.inner.clone();
        let r = ingest_ref.to_string();
        let existed = blocking(move || writer::remove_ingest(&inner, &r)).await?;
        if !existed {
            return Err(StoreError::NotFound(format!("ref {ingest_ref}")));
        }
        Ok(())
    }

    /// Opens the ingest for `ingest_ref`, holding its lock until the writer is dropped.
    pub async fn writer(
        &self,
        ingest_ref: &str,
        total: i64,
        expected: Option<Digest>,
    ) -> Result<Writer, StoreError> {
        rules::validate_ref(ingest_ref, self.inner.max_ref_bytes)?;
        Writer::open(self.inner.clone(), ingest_ref.to_string(), total, expected).await
    }
}
