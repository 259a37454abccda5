//! fsck's rules over the in-memory backend: each inconsistency made, found and repaired.
use crate::backend::memory::{MemoryBackend, PIN_NAME};
use crate::fsck::{check, FindingKind, FsckOptions, FsckReport, Outcome};
use crate::store::testkit::{config, digest_of, msg, open, put, read_all, uncache};
use crate::store::WriteAction;
use std::sync::Arc;

async fn fsck(dir: &std::path::Path, backend: &Arc<MemoryBackend>, repair: bool) -> FsckReport {
    let opts = FsckOptions {
        repair,
        verify: true,
    };
    check(&config(dir), Some(backend.clone()), opts)
        .await
        .unwrap()
}

fn kinds(r: &FsckReport) -> Vec<FindingKind> {
    let mut k: Vec<_> = r.findings.iter().map(|f| f.kind).collect();
    k.sort();
    k
}

#[tokio::test]
async fn each_inconsistency_is_found_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let repin = put(&store, "a", b"loses its pin").await.unwrap();
    let reimport = put(&store, "b", b"loses its blocks, cached").await.unwrap();
    let lost = put(&store, "c", b"loses everything").await.unwrap();
    let (repin_cid, reimport_cid, lost_cid) = (
        store.info(&repin).await.unwrap().cid,
        store.info(&reimport).await.unwrap().cid,
        store.info(&lost).await.unwrap().cid,
    );
    uncache(&store, &lost);
    drop(store);

    backend.pins_remove(&repin_cid);
    backend.lose(&reimport_cid);
    backend.lose(&lost_cid);
    let orphan = backend.put_unpinned(b"orphan");
    backend.pin_as(&orphan, PIN_NAME);
    let foreign = backend.put_unpinned(b"someone else's");
    backend.pin_as(&foreign, "not-ipcs");

    let found = fsck(dir.path(), &backend, false).await;
    assert_eq!(
        kinds(&found),
        vec![
            FindingKind::MissingPin,
            FindingKind::MissingPin,
            FindingKind::MissingPin,
            FindingKind::OrphanPin
        ]
    );
    assert!(found
        .findings
        .iter()
        .all(|f| f.outcome == Outcome::Reported));

    let fixed = fsck(dir.path(), &backend, true).await;
    assert_eq!(fixed.remaining(), 0, "{:?}", fixed.findings);
    assert!(backend.is_pinned(&repin_cid), "re-pinned from local blocks");
    assert!(
        backend.is_pinned(&reimport_cid),
        "re-imported from the cache"
    );
    assert!(!backend.is_pinned(&orphan), "own orphan unpinned");
    assert!(
        backend.is_pinned(&foreign),
        "someone else's pin is never touched"
    );

    let clean = fsck(dir.path(), &backend, false).await;
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    let (store, _) = open(dir.path()).await;
    assert!(store.info(&repin).await.is_ok());
    assert!(store.info(&reimport).await.is_ok());
    assert!(
        store.info(&lost).await.is_err(),
        "the unrecoverable record is dropped"
    );
}

#[tokio::test]
async fn a_dag_that_reads_back_wrong_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let d = put(&store, "a", b"right bytes").await.unwrap();
    let cid = store.info(&d).await.unwrap().cid;
    drop(store);
    backend.corrupt(&cid, b"wrong bytes");
    let found = fsck(dir.path(), &backend, false).await;
    assert_eq!(kinds(&found), vec![FindingKind::UnreadableDag]);
    let fixed = fsck(dir.path(), &backend, true).await;
    assert_eq!(fixed.remaining(), 0, "{:?}", fixed.findings);
}

/// A commit killed after the backend's pinned add answered and before the index write:
/// the own pin is the import of a complete ingest, so fsck finishes the commit instead
/// of unpinning it as an orphan.
#[tokio::test]
async fn an_interrupted_commit_is_finished_not_unpinned() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let data = b"every byte written, commit cut short";
    let partial = b"half of it";
    let mut w = store.writer("cut", data.len() as i64, None).await.unwrap();
    w.handle(msg(WriteAction::Write, 0, data)).await.unwrap();
    drop(w);
    let mut p = store.writer("partial", 100, None).await.unwrap();
    p.handle(msg(WriteAction::Write, 0, partial)).await.unwrap();
    drop(p);
    drop(store);
    // What the pinned add left behind.
    let cid = backend.put_unpinned(data);
    backend.pin_as(&cid, PIN_NAME);

    let found = fsck(dir.path(), &backend, false).await;
    assert_eq!(kinds(&found), vec![FindingKind::InterruptedCommit]);
    let fixed = fsck(dir.path(), &backend, true).await;
    assert_eq!(fixed.remaining(), 0, "{:?}", fixed.findings);
    assert!(backend.is_pinned(&cid), "the commit's pin is kept");
    let clean = fsck(dir.path(), &backend, false).await;
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);

    let (store, _) = open(dir.path()).await;
    let d = digest_of(data);
    let info = store.info(&d).await.unwrap();
    assert_eq!(info.cid, cid);
    assert!(store.is_cached(&d), "the ingest file is the cached copy");
    assert_eq!(read_all(&store, &d).await.unwrap(), data);
    assert!(store.status("cut").await.is_err(), "the ingest is gone");
    assert!(
        store.status("partial").await.is_ok(),
        "a partial ingest stays"
    );
}

/// `--verify`'s bar is told the total before the first blob (which may be a large layer
/// to read back) and after each blob, ending at the total.
#[tokio::test]
async fn verify_progress_starts_at_zero_and_ends_at_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    put(&store, "a", b"eleven byte").await.unwrap();
    put(&store, "b", b"twenty-two bytes, this").await.unwrap();
    drop(store);
    let told = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = told.clone();
    let progress: crate::fsck::Progress =
        Arc::new(move |done, total| seen.lock().unwrap().push((done, total)));
    let opts = FsckOptions {
        repair: false,
        verify: true,
    };
    let r = crate::fsck::check_with(&config(dir.path()), Some(backend), opts, Some(progress))
        .await
        .unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 3, "{told:?}");
    assert_eq!(told[0], (0, 33));
    assert!(told[1] == (11, 33) || told[1] == (22, 33), "{told:?}");
    assert_eq!(told[2], (33, 33));
}

#[tokio::test]
async fn stored_files_no_record_or_lean_explains_are_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let kept = put(&store, "a", b"recorded").await.unwrap();
    drop(store);
    let paths = crate::data::DataPaths::new(&dir.path().canonicalize().unwrap());
    let write = |d: &crate::digest::Digest, bytes: &[u8]| {
        let p = paths.stored_blob(d);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let recorded = write(&kept, b"recorded");
    let wrong_size = b"recorded but longer".to_vec();
    let stale = write(&digest_of(b"no record"), b"no record");
    let leaned = write(&digest_of(b"leaned on"), b"leaned on");
    let index = crate::index::Index::open(&paths.index()).unwrap();
    index
        .add_leans(&kept.to_string(), &[digest_of(b"leaned on").to_string()])
        .unwrap();
    drop(index);

    let found = fsck(dir.path(), &backend, false).await;
    assert_eq!(kinds(&found), vec![FindingKind::StoredStale], "{found:?}");
    assert_eq!(found.stored_files, 3);
    let fixed = fsck(dir.path(), &backend, true).await;
    assert_eq!(fixed.remaining(), 0);
    assert!(!stale.exists(), "stale stored file removed");
    assert!(leaned.exists() && recorded.exists());

    // A recorded blob's stored file that is not its bytes is corrupt, not stale.
    std::fs::write(&recorded, &wrong_size).unwrap();
    let found = fsck(dir.path(), &backend, false).await;
    assert_eq!(kinds(&found), vec![FindingKind::StoredCorrupt], "{found:?}");
}
