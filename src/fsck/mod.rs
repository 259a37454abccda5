//! `ipcs fsck`: checks a stopped store's data directory against its Kubo node and, when
//! asked, repairs what a crash (or an outside hand) left inconsistent.
//!
//! What is checked, and the repair of each finding (`--repair`):
//! - a blob record whose CID is not pinned → re-pin from local blocks; else re-import the
//!   verified cached copy; else the blob is lost: unpin, drop the record and the cache file
//!   so containerd fetches it again (it still believes the blob exists only until its next
//!   Info/Read, which then answers NOT_FOUND).
//! - `--verify`: a DAG that cannot be read back, or does not hash to its digest → re-import
//!   the verified cached copy, else drop the record as above.
//! - an interrupted commit: a recursive pin named `ipcs:<this store's id>` whose CID no
//!   record references, but which is exactly the import of a complete ingest (same CID
//!   from `add --only-hash` of the ingest file, size = the ingest's total, digest = its
//!   expected one). A commit killed after Kubo's pinned `add` answered and before the index
//!   write leaves this → finish the commit: record digest → CID, drop the ingest, keep the
//!   file as the cached copy (a client that retries then gets ALREADY_EXISTS, as after any
//!   commit whose answer was lost). Only ingests that could be complete are hashed, and only
//!   when such pins exist.
//! - an orphan pin: a recursive pin named `ipcs:<this store's id>` whose CID no record
//!   references and no ingest explains → unpin. Left by a peer adoption killed between its
//!   pin and its record, by a commit that timed out after Kubo had the whole blob and whose
//!   ingest was then aborted, or by an outside hand. Only pins carrying this store's own
//!   name are ever unpinned; pins with any other name, or none, belong to someone else
//!   (another store, IPFS Cluster, a user) and are not even reported.
//! - an ingest record without its data file → drop the record (it held no bytes).
//! - an ingest directory without a record, a temp file → delete.
//! - a cache file without a record, of the wrong size, or (`--verify`) not hashing to its
//!   name → delete (the cache is only a copy; IPFS is the source of truth).
//! - blobs kept once (`stored.rs`): a stored file no record or lean explains → delete; a
//!   recorded blob's stored file of the wrong size or (`--verify`) content → re-import
//!   from a good copy, else drop the record; (`--verify`) a reference Kubo cannot read back
//!   into a recorded blob's stored file → reported.
//!
//! The store must be stopped: the index is opened directly and redb's exclusive lock makes
//! a second opener fail, which is reported as "is `ipcs serve` running?".
use crate::backend::{BackendError, BlobBackend, Reach};
use crate::cid::Cid;
use crate::config::Config;
use crate::data::paths::{blob_files, BlobFile};
use crate::data::DataPaths;
use crate::digest::{Digest, Digester};
use crate::index::{BlobRecord, Index, IndexError};
use crate::store::{blocking, StoreError};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod stored;
#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    pub repair: bool,
    /// Read every DAG back from Kubo and hash every cache file.
    pub verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// Record's CID not pinned (re-pinnable, or not checked yet).
    MissingPin,
    /// Record's CID not pinned and its DAG is not in Kubo any more.
    LostDag,
    UnreadableDag,
    /// Own pin without a record that is the import of a complete ingest.
    InterruptedCommit,
    OrphanPin,
    IngestWithoutFile,
    IngestDirWithoutRecord,
    CacheStale,
    CacheCorrupt,
    TempDebris,
    /// A stored file (a blob kept once) that no record or lean explains.
    StoredStale,
    /// A recorded blob's stored file that is not its bytes (size, or digest with --verify).
    StoredCorrupt,
    /// A backend reference into a recorded blob's stored file that does not read back.
    BrokenReference,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::MissingPin => "missing-pin",
            FindingKind::LostDag => "lost-dag",
            FindingKind::UnreadableDag => "unreadable-dag",
            FindingKind::InterruptedCommit => "interrupted-commit",
            FindingKind::OrphanPin => "orphan-pin",
            FindingKind::IngestWithoutFile => "ingest-without-file",
            FindingKind::IngestDirWithoutRecord => "ingest-dir-without-record",
            FindingKind::CacheStale => "cache-stale",
            FindingKind::CacheCorrupt => "cache-corrupt",
            FindingKind::TempDebris => "temp-debris",
            FindingKind::StoredStale => "stored-stale",
            FindingKind::StoredCorrupt => "stored-corrupt",
            FindingKind::BrokenReference => "broken-reference",
        }
    }

    /// Whether a `kill -9` of `ipcs serve` can leave this behind by itself: each is a
    /// crash between two steps that cannot share one transaction (Kubo, redb, files).
    pub fn expected_after_crash(self) -> bool {
        match self {
            // Commit killed between Kubo's pinned add and the index write.
            FindingKind::InterruptedCommit
            // Peer adoption killed between its named pin and the index write.
            | FindingKind::OrphanPin
            // Delete killed between the unpin and the index write.
            | FindingKind::MissingPin
            // Write killed between the ingest record and its first file.
            | FindingKind::IngestWithoutFile
            // Commit killed between the index write and the ingest dir removal.
            | FindingKind::IngestDirWithoutRecord
            // Delete killed between the index write and the cache removal.
            | FindingKind::CacheStale
            // Commit killed between linking the stored file and the index write, or
            // Delete between the index write and the file's removal.
            | FindingKind::StoredStale
            | FindingKind::TempDebris => true,
            FindingKind::LostDag
            | FindingKind::UnreadableDag
            | FindingKind::CacheCorrupt
            | FindingKind::StoredCorrupt
            | FindingKind::BrokenReference => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Found; not repaired because `--repair` was not given.
    Reported,
    Repaired(String),
    /// `--repair` tried and failed; the finding remains.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: FindingKind,
    pub subject: String,
    pub detail: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub blobs: u64,
    pub pins: u64,
    pub own_pins: u64,
    pub ingests: u64,
    pub cache_files: u64,
    /// Files under `stored/` (blobs kept once).
    pub stored_files: u64,
    /// Blobs committed whose import into Kubo is still to come (ipcs finishes them when it
    /// starts): their pins are not checked.
    pub pending_imports: u64,
    /// DAGs read back and hashed (`--verify`).
    pub verified: u64,
    pub pin_name: String,
    pub findings: Vec<Finding>,
}

impl FsckReport {
    /// Findings that are still there after this run.
    pub fn remaining(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !matches!(f.outcome, Outcome::Repaired(_)))
            .count()
    }

    pub fn repaired(&self) -> usize {
        self.findings.len() - self.remaining()
    }

    /// `kind=count` pairs in a stable order.
    pub fn counts(&self) -> Vec<(FindingKind, usize)> {
        let mut m: std::collections::BTreeMap<FindingKind, usize> = Default::default();
        for f in &self.findings {
            *m.entry(f.kind).or_default() += 1;
        }
        m.into_iter().collect()
    }
}

struct Fsck {
    paths: DataPaths,
    index: Index,
    backend: Arc<dyn BlobBackend>,
    opts: FsckOptions,
    report: FsckReport,
    progress: Option<Progress>,
}

/// Told (bytes of blobs checked, bytes of all blobs) before the first blob and after
/// each, as `--verify` reads DAGs back.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Checks (and with `opts.repair`, repairs) the store in `config.data_dir` against its
/// Kubo node.
pub async fn run(config: &Config, opts: FsckOptions) -> Result<FsckReport, StoreError> {
    check(config, None, opts).await
}

/// `run`, telling `progress` how far the DAG verification has come.
pub async fn run_with_progress(
    config: &Config,
    opts: FsckOptions,
    progress: Progress,
) -> Result<FsckReport, StoreError> {
    check_with(config, None, opts, Some(progress)).await
}

/// `run` over `backend` (the fake, in unit tests), or over Kubo when `None`. The index
/// is opened first, so a running store is refused before anything else happens.
pub async fn check(
    config: &Config,
    backend: Option<Arc<dyn BlobBackend>>,
    opts: FsckOptions,
) -> Result<FsckReport, StoreError> {
    check_with(config, backend, opts, None).await
}

async fn check_with(
    config: &Config,
    backend: Option<Arc<dyn BlobBackend>>,
    opts: FsckOptions,
    progress: Option<Progress>,
) -> Result<FsckReport, StoreError> {
    // Real paths, as a backend that keeps references records them.
    let paths = DataPaths::new(
        &std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone()),
    );
    let p = paths.clone();
    let index = blocking(move || {
        if !p.index().exists() {
            return Err(StoreError::NotFound(format!(
                "ipcs index {}",
                p.index().display()
            )));
        }
        let index = Index::open(&p.index()).map_err(|e| match e {
            IndexError::InUse(path) => StoreError::FailedPrecondition(format!(
                "index {path} is locked by another process: is `ipcs serve` running on \
                 this data dir? fsck needs it stopped"
            )),
            e => e.into(),
        })?;
        Ok(index)
    })
    .await?;
    let backend = match backend {
        Some(b) => b,
        None => crate::node::kubo_backend(config).await?,
    };
    backend
        .version()
        .await
        .map_err(StoreError::ipfs("fsck needs the store's kubo node"))?;
    let mut f = Fsck {
        paths,
        index,
        backend: backend.clone(),
        opts,
        report: FsckReport {
            // The backend names this store's pins (`data::identity` for Kubo).
            pin_name: backend.pin_name().to_string(),
            ..Default::default()
        },
        progress,
    };
    f.run().await?;
    Ok(f.report)
}

fn repaired(what: impl Into<String>) -> Outcome {
    Outcome::Repaired(what.into())
}

/// Hashes a whole file; `None` when it cannot be read.
fn hash_file(path: &Path, alg: crate::digest::Algorithm) -> Option<(Digest, u64)> {
    crate::digest::hash_reader(std::fs::File::open(path).ok()?, alg).ok()
}

/// A file of the cache or the stored files, held against the records (digest → size).
enum FileCheck {
    Good,
    /// Its name spells no digest.
    NotADigest,
    NoRecord(String),
    /// The record's size differs: the digest's key, and what was found.
    WrongSize(String, String),
    /// (`--verify`) The bytes hash to another digest.
    WrongContent(String, String),
}

fn check_blob_file(f: &BlobFile, records: &HashMap<String, u64>, verify: bool) -> FileCheck {
    let Some(d) = &f.digest else {
        return FileCheck::NotADigest;
    };
    let key = d.to_string();
    let len = f.meta.len();
    match records.get(&key) {
        None => FileCheck::NoRecord(key),
        Some(size) if *size != len => {
            FileCheck::WrongSize(key, format!("{len} bytes, record says {size}"))
        }
        Some(_) if verify => match hash_file(&f.path, d.algorithm()) {
            Some((got, _)) if got != *d => {
                FileCheck::WrongContent(key, format!("content hashes to {got}"))
            }
            _ => FileCheck::Good,
        },
        Some(_) => FileCheck::Good,
    }
}

fn remove_path(p: &Path) -> std::io::Result<()> {
    let r = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Fsck {
    fn found(&mut self, kind: FindingKind, subject: impl Into<String>, detail: impl Into<String>) {
        self.report.findings.push(Finding {
            kind,
            subject: subject.into(),
            detail: detail.into(),
            outcome: Outcome::Reported,
        });
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Some(f) = self.report.findings.last_mut() {
            f.outcome = outcome;
        }
    }

    async fn run(&mut self) -> Result<(), StoreError> {
        let pins: HashMap<Cid, String> = self
            .backend
            .pins()
            .await
            .map_err(StoreError::ipfs("listing recursive pins"))?
            .into_iter()
            .map(|p| (p.cid, p.name))
            .collect();
        self.report.pins = pins.len() as u64;
        let ours = self.report.pin_name.clone();
        self.report.own_pins = pins.values().filter(|n| **n == ours).count() as u64;

        let index = self.index.clone();
        let (records, pending) = blocking(move || {
            let mut v = Vec::new();
            index.for_each_blob(|r| {
                v.push(r);
                true
            })?;
            let pending: HashSet<String> = index.pending_imports()?.into_iter().collect();
            Ok((v, pending))
        })
        .await?;
        self.report.pending_imports = pending.len() as u64;
        self.report.blobs = records.len() as u64;
        let (total, mut done) = (records.iter().map(|r| r.size).sum::<u64>(), 0);
        // Told before the first blob too: that one may be a large layer to read back.
        if let Some(p) = &self.progress {
            p(0, total);
        }
        for rec in &records {
            if pending.contains(&rec.digest.to_string()) {
                // Not in Kubo yet by design; its stored file is checked below.
            } else if !pins.contains_key(&rec.cid) {
                self.unpinned(rec).await?;
            } else if self.opts.verify {
                self.verify_dag(rec).await?;
            }
            done += rec.size;
            if let Some(p) = &self.progress {
                p(done, total);
            }
        }
        // Referenced CIDs as they are after the repairs above (a re-import may have moved
        // a record to another CID), so no repair's pin is taken for an orphan.
        let index = self.index.clone();
        let referenced = blocking(move || {
            let mut set = HashSet::new();
            index.for_each_blob(|r| {
                set.insert(r.cid);
                true
            })?;
            Ok(set)
        })
        .await?;
        let mut orphans: Vec<Cid> = pins
            .iter()
            .filter(|(cid, name)| **name == ours && !referenced.contains(*cid))
            .map(|(cid, _)| cid.clone())
            .collect();
        orphans.sort();
        if !orphans.is_empty() {
            let finished = self.interrupted_commits(&orphans).await?;
            orphans.retain(|c| !finished.contains(c));
        }
        for cid in &orphans {
            self.found(
                FindingKind::OrphanPin,
                cid.to_string(),
                format!("pinned as {ours:?} but no blob record references it"),
            );
            if self.opts.repair {
                let o = match self.backend.unpin(cid).await {
                    Ok(()) => repaired("unpinned"),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                self.settle(o);
            }
        }
        // Records as they are after every repair above: a finished interrupted commit
        // has just recorded the cache file it kept, which is no stale copy.
        let index = self.index.clone();
        let by_digest = blocking(move || {
            let mut m: HashMap<String, u64> = HashMap::new();
            index.for_each_blob(|r| {
                m.insert(r.digest.to_string(), r.size);
                true
            })?;
            Ok(m)
        })
        .await?;
        self.check_ingests().await?;
        self.check_stored(&by_digest).await?;
        self.check_cache(by_digest).await?;
        self.check_tmp().await
    }

    /// Finds the pins among `orphans` that are the import of a complete ingest, reports
    /// each as an interrupted commit and (with `--repair`) finishes that commit. Returns
    /// the CIDs so explained.
    async fn interrupted_commits(&mut self, orphans: &[Cid]) -> Result<HashSet<Cid>, StoreError> {
        let wanted: HashSet<&Cid> = orphans.iter().collect();
        let mut explained = HashSet::new();
        let index = self.index.clone();
        let ingests = blocking(move || Ok(index.ingests()?)).await?;
        for ing in ingests {
            let path = self.paths.ingest_data(&ing.ingest_ref);
            let expected = ing.expected.clone();
            let alg = expected
                .as_ref()
                .map(|d| d.algorithm())
                .unwrap_or(crate::digest::Algorithm::Sha256);
            let (p, index, total) = (path.clone(), self.index.clone(), ing.total);
            let hashed = blocking(move || {
                // A commit needs every byte: with a known total, only a file of that size
                // can be one (partial ingests are skipped without reading them).
                match std::fs::metadata(&p).map(|m| m.len()) {
                    Ok(n) if total == 0 || n == total => {}
                    _ => return Ok(None),
                }
                let Some((digest, size)) = hash_file(&p, alg) else {
                    return Ok(None);
                };
                // A digest that has a record already is not this ingest's commit to finish.
                let recorded = index.blob(&digest.to_string())?.is_some();
                Ok((!recorded).then_some((digest, size)))
            })
            .await?;
            let Some((digest, size)) = hashed else {
                continue;
            };
            if expected.as_ref().is_some_and(|e| *e != digest) {
                continue;
            }
            let cid = match self.backend.hash_file(&path, size).await {
                Ok(cid) => cid,
                Err(e) => {
                    tracing::warn!(ingest = %ing.ingest_ref, error = %e, "could not hash ingest");
                    continue;
                }
            };
            if !wanted.contains(&cid) || explained.contains(&cid) {
                continue;
            }
            explained.insert(cid.clone());
            self.found(
                FindingKind::InterruptedCommit,
                cid.to_string(),
                format!(
                    "pinned as {:?}, no record, but it is the import of complete ingest {:?} \
                     ({digest}, {size} bytes)",
                    self.report.pin_name, ing.ingest_ref
                ),
            );
            if !self.opts.repair {
                continue;
            }
            let t = crate::index::UnixNanos::now();
            let record = BlobRecord {
                digest: digest.clone(),
                cid,
                size,
                labels: Default::default(),
                created_at: t,
                updated_at: t,
            };
            let (index, paths, r) = (self.index.clone(), self.paths.clone(), ing.ingest_ref);
            // Kept once, the pin references the stored name: the file must be there.
            let dest = match self.backend.by_reference() {
                Some(_) => paths.stored_blob(&digest),
                None => paths.cached_blob(&digest),
            };
            // The same transaction a live commit uses: record in, ingest record out.
            let kept = blocking(move || {
                index.commit_blob(&record, Some(&r))?;
                let kept = dest
                    .parent()
                    .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
                    && std::fs::rename(paths.ingest_data(&r), &dest).is_ok();
                remove_path(&paths.ingest_dir(&r)).map_err(StoreError::io("removing ingest"))?;
                Ok(kept)
            })
            .await?;
            self.settle(repaired(if kept {
                "commit finished: digest → CID recorded, file kept as the blob's copy"
            } else {
                "commit finished: digest → CID recorded"
            }));
        }
        Ok(explained)
    }

    /// A record whose CID is not pinned: re-pin it from local blocks, else re-import the
    /// cached copy, else the blob is gone and its record is dropped.
    async fn unpinned(&mut self, rec: &BlobRecord) -> Result<(), StoreError> {
        self.found(
            FindingKind::MissingPin,
            rec.digest.to_string(),
            format!("{} is not pinned", rec.cid),
        );
        if !self.opts.repair {
            return Ok(());
        }
        match self.backend.pin(&rec.cid, rec.size, Reach::Local).await {
            Ok(()) => {
                self.settle(repaired("re-pinned from local blocks"));
                return Ok(());
            }
            // Kubo answered: blocks are missing. Anything else (down, slow) is no verdict.
            Err(BackendError::Api { .. }) => {}
            Err(e) => {
                self.settle(Outcome::Failed(e.to_string()));
                return Ok(());
            }
        }
        if let Some(f) = self.report.findings.last_mut() {
            f.kind = FindingKind::LostDag;
            f.detail = format!("{} is not pinned and its DAG is not in kubo", rec.cid);
        }
        let o = self.restore_or_drop(rec).await?;
        self.settle(o);
        Ok(())
    }

    /// Streams the DAG from local blocks and compares size and digest with the record.
    async fn verify_dag(&mut self, rec: &BlobRecord) -> Result<(), StoreError> {
        let digest = rec.digest.clone();
        // One byte more than recorded, so a DAG longer than the blob is caught too.
        let problem = match self
            .backend
            .cat(&rec.cid, 0, rec.size + 1, Reach::Local)
            .await
        {
            Err(e) => Some(e.to_string()),
            Ok(stream) => {
                let mut stream = Box::pin(stream);
                let mut h = Digester::new(digest.algorithm());
                let mut n = 0u64;
                let mut err = None;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(c) => {
                            n += c.len() as u64;
                            h.update(&c);
                        }
                        Err(e) => {
                            err = Some(e.to_string());
                            break;
                        }
                    }
                }
                let got = h.digest();
                match err {
                    Some(e) => Some(e),
                    None if n != rec.size || got != digest => Some(format!(
                        "reads back {n} bytes with digest {got}, recorded {} bytes",
                        rec.size
                    )),
                    None => None,
                }
            }
        };
        self.report.verified += 1;
        let Some(problem) = problem else {
            return Ok(());
        };
        self.found(
            FindingKind::UnreadableDag,
            rec.digest.to_string(),
            format!("{}: {problem}", rec.cid),
        );
        if self.opts.repair {
            let o = self.restore_or_drop(rec).await?;
            self.settle(o);
        }
        Ok(())
    }

    /// Re-imports the blob from a cache file that still hashes to its digest; failing
    /// that, unpins the broken DAG and forgets the blob so containerd fetches it again.
    async fn restore_or_drop(&mut self, rec: &BlobRecord) -> Result<Outcome, StoreError> {
        let digest = rec.digest.clone();
        let stored = self.paths.stored_blob(&digest);
        let cached = self.paths.cached_blob(&digest);
        let (s, c, alg, size) = (stored.clone(), cached.clone(), digest.algorithm(), rec.size);
        let good = blocking(move || {
            let good =
                |p: &Path| matches!(hash_file(p, alg), Some((d, n)) if n == size && d == digest);
            Ok(if good(&s) {
                Some(s)
            } else if good(&c) {
                Some(c)
            } else {
                None
            })
        })
        .await?;
        if let Some(file) = good {
            let imported = match self.backend.by_reference() {
                Some(by_ref) if file == stored => by_ref.keep_file(&file, rec.size).await,
                _ => self.backend.add_file(&file, rec.size).await,
            };
            match imported {
                Ok(cid) if cid == rec.cid => {
                    return Ok(repaired("re-imported from the cache"));
                }
                Ok(cid) => {
                    // Import options changed since the commit: the bytes are right, so the
                    // record follows the new CID.
                    let (index, key, new) =
                        (self.index.clone(), rec.digest.to_string(), cid.clone());
                    blocking(move || Ok(index.update_blob(&key, |r| r.cid = new)?)).await?;
                    return Ok(repaired(format!("re-imported from the cache as {cid}")));
                }
                Err(e) => return Ok(Outcome::Failed(e.to_string())),
            }
        }
        if let Err(e) = self.backend.unpin(&rec.cid).await {
            return Ok(Outcome::Failed(e.to_string()));
        }
        let (index, key) = (self.index.clone(), rec.digest.to_string());
        blocking(move || {
            index.remove_blob(&key)?;
            for path in [cached, stored] {
                remove_path(&path)
                    .map_err(StoreError::io(format!("removing {}", path.display())))?;
            }
            Ok(())
        })
        .await?;
        Ok(repaired(
            "unrecoverable: record dropped, containerd will fetch it again",
        ))
    }

    async fn check_ingests(&mut self) -> Result<(), StoreError> {
        let (index, paths) = (self.index.clone(), self.paths.clone());
        let (records, stray) = blocking(move || {
            let records = index.ingests()?;
            let live: HashSet<PathBuf> = records
                .iter()
                .map(|r| paths.ingest_dir(&r.ingest_ref))
                .collect();
            let mut stray = Vec::new();
            if let Ok(dir) = std::fs::read_dir(paths.ingests()) {
                for e in dir.flatten() {
                    if !live.contains(&e.path()) {
                        stray.push(e.path());
                    }
                }
            }
            let no_file: Vec<String> = records
                .iter()
                .filter(|r| !paths.ingest_data(&r.ingest_ref).is_file())
                .map(|r| r.ingest_ref.clone())
                .collect();
            Ok((records.len() as u64, (no_file, stray)))
        })
        .await?;
        self.report.ingests = records;
        let (no_file, stray) = stray;
        for r in no_file {
            self.found(FindingKind::IngestWithoutFile, r.clone(), "no data file");
            if self.opts.repair {
                let (index, paths) = (self.index.clone(), self.paths.clone());
                blocking(move || {
                    index.remove_ingest(&r)?;
                    remove_path(&paths.ingest_dir(&r)).map_err(StoreError::io("removing ingest"))
                })
                .await?;
                self.settle(repaired("record dropped (it held no bytes)"));
            }
        }
        for p in stray {
            self.found(
                FindingKind::IngestDirWithoutRecord,
                p.display().to_string(),
                "no ingest record",
            );
            self.remove_if_repairing(p).await?;
        }
        Ok(())
    }

    async fn remove_if_repairing(&mut self, p: PathBuf) -> Result<(), StoreError> {
        if self.opts.repair {
            let o = match blocking(move || Ok(remove_path(&p))).await? {
                Ok(()) => repaired("deleted"),
                Err(e) => Outcome::Failed(e.to_string()),
            };
            self.settle(o);
        }
        Ok(())
    }

    async fn check_cache(&mut self, records: HashMap<String, u64>) -> Result<(), StoreError> {
        let root = self.paths.cache();
        let verify = self.opts.verify;
        let (count, bad) = blocking(move || {
            let files = blob_files(&root).unwrap_or_default();
            let bad: Vec<(FindingKind, PathBuf, String)> = files
                .iter()
                .filter_map(|f| {
                    let (kind, detail) = match check_blob_file(f, &records, verify) {
                        FileCheck::Good => return None,
                        FileCheck::NotADigest => (FindingKind::CacheStale, "not a digest".into()),
                        FileCheck::NoRecord(_) => {
                            (FindingKind::CacheStale, "no blob record".into())
                        }
                        FileCheck::WrongSize(_, detail) => (FindingKind::CacheStale, detail),
                        FileCheck::WrongContent(_, detail) => (FindingKind::CacheCorrupt, detail),
                    };
                    Some((kind, f.path.clone(), detail))
                })
                .collect();
            Ok((files.len() as u64, bad))
        })
        .await?;
        self.report.cache_files = count;
        for (kind, path, detail) in bad {
            self.found(kind, path.display().to_string(), detail);
            self.remove_if_repairing(path).await?;
        }
        Ok(())
    }

    async fn check_tmp(&mut self) -> Result<(), StoreError> {
        let tmp = self.paths.tmp();
        let debris = blocking(move || {
            Ok(std::fs::read_dir(&tmp)
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default())
        })
        .await?;
        for p in debris {
            self.found(
                FindingKind::TempDebris,
                p.display().to_string(),
                "temp file left by an interrupted fetch",
            );
            self.remove_if_repairing(p).await?;
        }
        Ok(())
    }
}
