//! One Write stream's ingest: bytes appended to a per-ref file and hashed as they arrive,
//! resumable after a restart, and committed by publishing the file to IPFS and recording
//! digest → CID in the index. Commit order follows containerd's local store: sync →
//! check size → check digest → already there? drop the ingest : publish, record, cache.
//! With blobs kept once and imports after the commit (the default), the CID is computed
//! as the bytes arrive (`ingest_hash`) and the commit records it and answers, leaving the
//! import to `later_import`; kept once without it, the commit imports the stored file
//! (`kept_once`). With two copies, publishing starts with the first appended byte
//! (`FollowingAdd`), so the commit mostly waits for the import's tail; an import that
//! failed is redone from the file at commit.
use crate::cid::Cid;
use crate::digest::Digest;
use crate::index::{BlobRecord, Committed, IngestRecord, UnixNanos};
use crate::store::error::{blocking, StoreError};
use crate::store::follow_add::FollowingAdd;
use crate::store::ingest_hash::IngestHash;
use crate::store::labels::{validate_labels, validate_total};
use crate::store::locks::{Progress, RefGuard};
use crate::store::Inner;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAction {
    Stat,
    Write,
    Commit,
}

/// One message of a Write stream, in store terms.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub action: WriteAction,
    pub total: i64,
    pub expected: Option<Digest>,
    pub offset: i64,
    pub data: Bytes,
    pub labels: BTreeMap<String, String>,
}

/// What every Write response reports.
#[derive(Debug, Clone)]
pub struct WriteState {
    pub offset: u64,
    pub total: u64,
    pub digest: Digest,
    pub started_at: UnixNanos,
    pub updated_at: UnixNanos,
}

pub struct Writer {
    inner: Arc<Inner>,
    guard: RefGuard,
    ingest_ref: String,
    /// File and hashes travel together into blocking tasks and back.
    io: Option<(File, IngestHash)>,
    offset: u64,
    total: u64,
    expected: Option<Digest>,
    started_at: UnixNanos,
    updated_at: UnixNanos,
    /// Set once committed (or dropped as a duplicate): no further message is accepted.
    committed: bool,
    /// The digest of everything written, kept after commit closes the file.
    final_digest: Option<Digest>,
    /// Kubo's import of the bytes written so far, begun at the first append.
    follower: Option<FollowingAdd>,
}

fn now() -> UnixNanos {
    UnixNanos::now()
}

/// Opens (or creates) the ingest file and rehashes what it already holds.
fn open_ingest_file(
    inner: &Inner,
    ingest_ref: &str,
    algorithm: crate::digest::Algorithm,
) -> Result<(File, IngestHash, u64, Option<UnixNanos>), StoreError> {
    let dir = inner.paths.ingest_dir(ingest_ref);
    std::fs::create_dir_all(&dir).map_err(StoreError::io(format!("creating {}", dir.display())))?;
    let path = inner.paths.ingest_data(ingest_ref);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(StoreError::io(format!("opening ingest {ingest_ref}")))?;
    let layout = inner.later.as_ref().and_then(|l| l.layout);
    let mut hash = IngestHash::new(algorithm, layout);
    let offset = hash
        .read_from(&mut file)
        .map_err(StoreError::io(format!("rehashing ingest {ingest_ref}")))?;
    file.seek(SeekFrom::End(0))
        .map_err(StoreError::io(format!("seeking ingest {ingest_ref}")))?;
    let mtime = file
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok())
        .map(UnixNanos::from_system_time);
    Ok((file, hash, offset, mtime))
}

/// Records the time of a write as the file's mtime, to the nanosecond: the kernel's own
/// mtime comes from a coarse clock and can predate the write by milliseconds, and a
/// resumed ingest must report exactly when it was last written.
fn stamp(file: &File, ingest_ref: &str) -> Result<UnixNanos, StoreError> {
    let t = std::time::SystemTime::now();
    file.set_modified(t)
        .map_err(StoreError::io(format!("stamping ingest {ingest_ref}")))?;
    Ok(UnixNanos::from_system_time(t))
}

pub(crate) fn remove_ingest(inner: &Inner, ingest_ref: &str) -> Result<bool, StoreError> {
    let existed = inner.index.remove_ingest(ingest_ref)?.is_some();
    let dir = inner.paths.ingest_dir(ingest_ref);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io(format!("removing {}", dir.display()))(e))
        }
        _ => Ok(existed),
    }
}

impl Writer {
    pub(crate) async fn open(
        inner: Arc<Inner>,
        ingest_ref: String,
        total: i64,
        expected: Option<Digest>,
    ) -> Result<Writer, StoreError> {
        if total < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "negative total {total}"
            )));
        }
        if let Some(exp) = &expected {
            if inner.exists(exp).await? {
                return Err(StoreError::AlreadyExists(format!("content {exp}")));
            }
        }
        let guard = inner
            .locks
            .acquire(
                &ingest_ref,
                inner.lock_wait,
                Progress {
                    offset: 0,
                    total: total as u64,
                    updated_at: now(),
                },
            )
            .await?;
        let inner2 = inner.clone();
        let r = ingest_ref.clone();
        let exp = expected.clone();
        let (record, file, hash, offset, mtime) = blocking(move || {
            let existing = inner2.index.ingest(&r)?;
            let algorithm = exp
                .as_ref()
                .map(|d| d.algorithm())
                .unwrap_or(crate::digest::Algorithm::Sha256);
            let record = match existing {
                Some(mut rec) => {
                    let changed_total = total > 0 && rec.total != total as u64;
                    if changed_total {
                        rec.total = total as u64;
                    }
                    if exp.is_some() && rec.expected != exp {
                        rec.expected = exp.clone();
                        inner2.index.put_ingest(&rec)?;
                    } else if changed_total {
                        inner2.index.put_ingest(&rec)?;
                    }
                    rec
                }
                None => {
                    // A directory without a record is debris of an aborted ingest.
                    let _ = std::fs::remove_dir_all(inner2.paths.ingest_dir(&r));
                    let t = now();
                    let rec = IngestRecord {
                        ingest_ref: r.clone(),
                        total: total as u64,
                        expected: exp.clone(),
                        started_at: t,
                        updated_at: t,
                    };
                    inner2.index.put_ingest(&rec)?;
                    rec
                }
            };
            let (file, hash, offset, mtime) = open_ingest_file(&inner2, &r, algorithm)?;
            Ok((record, file, hash, offset, mtime))
        })
        .await?;
        let updated_at = match mtime {
            Some(m) if offset > 0 => m,
            _ => record.updated_at,
        };
        let w = Writer {
            inner,
            guard,
            ingest_ref,
            io: Some((file, hash)),
            offset,
            total: record.total,
            expected: record.expected.clone(),
            started_at: record.started_at,
            updated_at,
            committed: false,
            final_digest: None,
            follower: None,
        };
        w.report();
        Ok(w)
    }

    fn report(&self) {
        self.guard.report(Progress {
            offset: self.offset,
            total: self.total,
            updated_at: self.updated_at,
        });
    }

    pub fn state(&self) -> WriteState {
        WriteState {
            offset: self.offset,
            total: self.total,
            digest: self.digest(),
            started_at: self.started_at,
            updated_at: self.updated_at,
        }
    }

    fn digest(&self) -> Digest {
        match (&self.final_digest, &self.io) {
            (Some(d), _) => d.clone(),
            (None, Some((_, h))) => h.digest.digest(),
            (None, None) => Digest::of_empty(),
        }
    }

    /// Applies one Write message with containerd's semantics. Progress is reported even
    /// when the message fails (a refused commit still appended its data).
    pub async fn handle(&mut self, req: WriteRequest) -> Result<WriteState, StoreError> {
        let applied = self.apply(req).await;
        self.report();
        applied.map(|()| self.state())
    }

    async fn apply(&mut self, req: WriteRequest) -> Result<(), StoreError> {
        if self.committed {
            return Err(StoreError::FailedPrecondition(format!(
                "ref {} was already committed",
                self.ingest_ref
            )));
        }
        if let Some(exp) = req.expected {
            if self.inner.exists(&exp).await? {
                let inner = self.inner.clone();
                let r = self.ingest_ref.clone();
                blocking(move || remove_ingest(&inner, &r)).await?;
                self.committed = true;
                return Err(StoreError::AlreadyExists(format!(
                    "blob with expected digest {exp}"
                )));
            }
            self.expected = Some(exp);
        }
        if req.total < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "negative total {}",
                req.total
            )));
        }
        if req.total > 0 {
            self.total = req.total as u64;
        }
        if req.action != WriteAction::Stat {
            if req.offset < 0 {
                return Err(StoreError::InvalidArgument(format!(
                    "negative offset {}",
                    req.offset
                )));
            }
            let offset = req.offset as u64;
            if offset > 0 && offset != self.offset {
                return Err(StoreError::OutOfRange(format!(
                    "write @{offset} must occur at current offset {}",
                    self.offset
                )));
            }
            if offset == 0 && self.offset > 0 {
                self.truncate().await?;
            }
            if !req.data.is_empty() {
                self.append(req.data).await?;
            }
            if req.action == WriteAction::Commit {
                self.commit(req.labels).await?;
            }
        }
        Ok(())
    }

    async fn with_io<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut File, &mut IngestHash) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (mut file, mut hash) = self.io.take().ok_or_else(|| {
            StoreError::FailedPrecondition(format!("ingest {} is closed", self.ingest_ref))
        })?;
        let (file, hash, out) = blocking(move || {
            let out = f(&mut file, &mut hash)?;
            Ok((file, hash, out))
        })
        .await?;
        self.io = Some((file, hash));
        Ok(out)
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let n = data.len() as u64;
        let r = self.ingest_ref.clone();
        self.updated_at = self
            .with_io(move |file, hash| {
                file.write_all(&data)
                    .map_err(StoreError::io(format!("writing ingest {r}")))?;
                hash.update(&data);
                stamp(file, &r)
            })
            .await?;
        self.inner.metrics.ingested(n);
        self.offset += n;
        match &self.follower {
            Some(f) => f.advance(self.offset),
            // Kept once, only checked bytes are imported, at commit (see `kept_once`).
            None if self.inner.backend.by_reference().is_some() => {}
            None => {
                let path = self.inner.paths.ingest_data(&self.ingest_ref);
                let f = FollowingAdd::start(self.inner.backend.as_ref(), path, self.offset);
                self.follower = Some(f);
            }
        }
        Ok(())
    }

    async fn truncate(&mut self) -> Result<(), StoreError> {
        self.follower = None;
        let r = self.ingest_ref.clone();
        self.updated_at = self
            .with_io(move |file, hash| {
                file.set_len(0)
                    .and_then(|_| file.seek(SeekFrom::Start(0)))
                    .map_err(StoreError::io(format!("truncating ingest {r}")))?;
                hash.reset();
                stamp(file, &r)
            })
            .await?;
        self.offset = 0;
        Ok(())
    }

    async fn commit(&mut self, labels: BTreeMap<String, String>) -> Result<(), StoreError> {
        validate_labels(&labels)?;
        validate_total(&labels, self.inner.max_label_bytes)?;
        let r = self.ingest_ref.clone();
        self.with_io(move |file, _| {
            file.sync_all()
                .map_err(StoreError::io(format!("syncing ingest {r}")))
        })
        .await?;
        if self.total > 0 && self.total != self.offset {
            return Err(StoreError::FailedPrecondition(format!(
                "unexpected commit size {}, expected {}",
                self.offset, self.total
            )));
        }
        let actual = self.digest();
        if let Some(exp) = &self.expected {
            if *exp != actual {
                return Err(StoreError::FailedPrecondition(format!(
                    "unexpected commit digest {actual}, expected {exp}"
                )));
            }
        }
        if self.inner.exists(&actual).await? {
            self.drop_ingest().await?;
            return Err(StoreError::AlreadyExists(format!("content {actual}")));
        }
        let inner = self.inner.clone();
        let keeper = self.inner.clone();
        // Taken only now that the checks passed: a refused commit keeps its ingest going.
        let computed = self.io.as_mut().and_then(|(_, h)| h.take_cid());
        // Kept once: the digest's turn, held until the blob is recorded (see `Kept`).
        let mut turn = None;
        let mut pending = false;
        let (cid, leans_on) = match (keeper.backend.by_reference(), computed) {
            // Recorded with the computed CID now, imported after the answer.
            (Some(_), Some(cid)) => {
                let file = inner.paths.ingest_data(&self.ingest_ref);
                let (t, _) = keeper.link_stored(&actual, file).await?;
                turn = Some(t);
                pending = true;
                (cid, Some(Vec::new()))
            }
            (Some(by_ref), None) => {
                let file = inner.paths.ingest_data(&self.ingest_ref);
                let kept = keeper.keep_once(by_ref, &actual, file, self.offset).await?;
                turn = Some(kept.turn);
                (kept.cid, Some(kept.leans_on))
            }
            (None, _) => {
                let cid = self
                    .publish()
                    .await
                    .map_err(StoreError::ipfs(format!("publishing {actual} to ipfs")))?;
                (cid, None)
            }
        };
        let t = now();
        let record = BlobRecord {
            digest: actual.clone(),
            cid,
            size: self.offset,
            labels,
            created_at: t,
            updated_at: t,
        };
        let r = self.ingest_ref.clone();
        let size = self.offset;
        let d = actual.clone();
        let announced = record.clone();
        // The file handle is closed before the rename below moves the file into the cache.
        self.final_digest = Some(actual.clone());
        self.io = None;
        let outcome = blocking(move || {
            let outcome = match pending {
                true => inner.index.commit_blob_pending(&record, &r)?,
                false => inner.index.commit_blob(&record, Some(&r))?,
            };
            match (&outcome, leans_on) {
                // Kept once: the stored name linked before the import is the blob's file.
                (Committed::Inserted, Some(owners)) => {
                    inner.index.add_leans(&d.to_string(), &owners)?;
                    inner.cache.register_stored(&d, size);
                }
                // Still in this blocking step: the ingest file becomes the cached blob.
                (Committed::Inserted, None) => {
                    if let Err(e) = inner.cache.adopt(&d, inner.paths.ingest_data(&r), size) {
                        tracing::warn!(digest = %d, error = %e, "committed blob not cached; reads will use ipfs");
                    }
                }
                // Another commit of the same bytes recorded first; a stored name holds the
                // same bytes whoever linked it.
                (Committed::AlreadyExists, _) => {}
            }
            remove_ingest(&inner, &r)?;
            Ok(outcome)
        })
        .await?;
        drop(turn);
        self.committed = true;
        self.updated_at = t;
        if outcome == Committed::AlreadyExists {
            return Err(StoreError::AlreadyExists(format!("content {actual}")));
        }
        tracing::info!(digest = %actual, size, pending_import = pending, "committed");
        if pending {
            if let Some(later) = &self.inner.later {
                later.push(actual.clone());
            }
        }
        self.inner.announce(&announced).await;
        Ok(())
    }

    /// The CID of the whole file, imported and pinned under the store's name in one Kubo
    /// call: the following import's, or a fresh import of the file when none ran or it
    /// failed (Kubo restarted meanwhile, say). A stalled Kubo is not retried: the deadline
    /// has already been spent once. Once this returns, the pin exists but the record not
    /// yet: a kill before the index write leaves the pin and the complete ingest, which
    /// the ingest's next commit reuses (same bytes, same CID, same name) and `ipcs fsck`
    /// finishes (an interrupted commit).
    async fn publish(&mut self) -> Result<Cid, crate::backend::BackendError> {
        let backend = &self.inner.backend;
        let deadline = backend.transfer_timeout(self.offset);
        if let Some(f) = self.follower.take() {
            match f.finish(self.offset, deadline).await {
                Ok(cid) => return Ok(cid),
                Err(e @ crate::backend::BackendError::Timeout { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(ingest = %self.ingest_ref, error = %e, "import while writing failed; importing the file again");
                }
            }
        }
        let path = self.inner.paths.ingest_data(&self.ingest_ref);
        backend.add_file(&path, self.offset).await
    }

    async fn drop_ingest(&mut self) -> Result<(), StoreError> {
        self.follower = None;
        self.io = None;
        self.committed = true;
        let inner = self.inner.clone();
        let r = self.ingest_ref.clone();
        blocking(move || remove_ingest(&inner, &r)).await?;
        Ok(())
    }
}
