//! The core's behaviour over the in-memory backend: commit ordering, resume, locks,
//! delete, reads that fetch, read misses, and the defects a review found. No Kubo.
use crate::backend::memory::MemoryBackend;
use crate::digest::Digest;
use crate::store::testkit::{digest_of, msg, open, open_with, put, read_all};
use crate::store::{ContentStore, Distribution, Info, StoreError, WriteAction};
use futures::future::BoxFuture;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn commit_imports_pins_records_and_caches() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let d = put(&store, "r", b"hello").await.unwrap();
    let info = store.info(&d).await.unwrap();
    assert_eq!(info.cid, MemoryBackend::cid_of(b"hello"));
    assert_eq!(info.size, 5);
    assert!(backend.is_pinned(&info.cid));
    assert!(store.is_cached(&d));
    assert_eq!(read_all(&store, &d).await.unwrap(), b"hello");
    assert_eq!(
        backend.cats.load(Ordering::SeqCst),
        0,
        "cached reads never cat"
    );
    assert!(matches!(
        store.status("r").await,
        Err(StoreError::NotFound(_))
    ));
}

/// containerd's order: size check, digest check (ingest kept), then already there
/// (ingest dropped), and only then the backend.
#[tokio::test]
async fn commit_checks_come_in_containerds_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let mut w = store.writer("r", 10, None).await.unwrap();
    let err = w
        .handle(msg(WriteAction::Commit, 0, b"abc"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FailedPrecondition(_)), "{err}");
    assert_eq!(store.status("r").await.unwrap().offset, 3);
    drop(w);

    let wrong = digest_of(b"xyz");
    let mut w = store.writer("r", 3, Some(wrong)).await.unwrap();
    let err = w
        .handle(msg(WriteAction::Commit, 3, b""))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unexpected commit digest"),
        "{err}"
    );
    drop(w);
    assert_eq!(
        backend.adds.load(Ordering::SeqCst),
        0,
        "nothing imported before checks"
    );

    put(&store, "other", b"abc").await.unwrap();
    let mut w = store.writer("r2", 0, None).await.unwrap();
    let err = w
        .handle(msg(WriteAction::Commit, 0, b"abc"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    assert!(matches!(
        store.status("r2").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_backend_that_is_down_fails_the_commit_and_keeps_the_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    backend.set_down(true);
    let mut w = store.writer("r", 0, None).await.unwrap();
    let err = w
        .handle(msg(WriteAction::Commit, 0, b"data"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Ipfs { .. }), "{err}");
    drop(w);
    assert_eq!(store.status("r").await.unwrap().offset, 4);
    backend.set_down(false);
    let mut w = store.writer("r", 0, None).await.unwrap();
    w.handle(msg(WriteAction::Commit, 4, b"")).await.unwrap();
    assert_eq!(
        read_all(&store, &digest_of(b"data")).await.unwrap(),
        b"data"
    );
}

#[tokio::test]
async fn an_ingest_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let started = {
        let (store, _) = open(dir.path()).await;
        let mut w = store.writer("r", 6, None).await.unwrap();
        w.handle(msg(WriteAction::Write, 0, b"abc")).await.unwrap();
        w.state().started_at
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (store, _) = open(dir.path()).await;
    let st = store.status("r").await.unwrap();
    assert_eq!((st.offset, st.total, st.started_at), (3, 6, started));
    let mut w = store.writer("r", 6, None).await.unwrap();
    assert_eq!(w.state().digest, digest_of(b"abc"));
    w.handle(msg(WriteAction::Commit, 3, b"def")).await.unwrap();
    assert_eq!(
        read_all(&store, &digest_of(b"abcdef")).await.unwrap(),
        b"abcdef"
    );
}

#[tokio::test]
async fn a_held_ref_is_locked_and_abort_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let mut w = store.writer("r", 0, None).await.unwrap();
    w.handle(msg(WriteAction::Write, 0, b"x")).await.unwrap();
    let err = store.writer("r", 0, None).await.err().unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(matches!(
        store.abort("r").await,
        Err(StoreError::Locked { .. })
    ));
    drop(w);
    store.abort("r").await.unwrap();
    assert!(matches!(
        store.abort("r").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn delete_unpins_first_and_changes_nothing_if_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let d = put(&store, "r", b"gone soon").await.unwrap();
    let cid = store.info(&d).await.unwrap().cid;
    backend.set_down(true);
    assert!(store.delete(&d).await.is_err());
    assert!(store.info(&d).await.is_ok());
    backend.set_down(false);
    store.delete(&d).await.unwrap();
    assert!(!backend.is_pinned(&cid));
    assert!(matches!(store.info(&d).await, Err(StoreError::NotFound(_))));
    assert!(!store.is_cached(&d));
}

/// A pin under another name was taken over by someone else (`nerdctl push ipfs://`
/// re-pins every blob): Delete forgets the blob but leaves that pin alone.
#[tokio::test]
async fn delete_leaves_a_pin_someone_else_took_over() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let d = put(&store, "r", b"pushed by nerdctl too").await.unwrap();
    let cid = store.info(&d).await.unwrap().cid;
    backend.pin_as(&cid, "");
    store.delete(&d).await.unwrap();
    assert!(backend.is_pinned(&cid), "someone else's pin is kept");
    assert!(matches!(store.info(&d).await, Err(StoreError::NotFound(_))));
    assert!(!backend.calls.lock().unwrap().iter().any(|c| c == "unpin"));
}

/// Blobs not in the cache are read back from the backend once, verified, and shared
/// by concurrent readers (the Kubo test of this never checked Kubo was read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_reads_fetch_once_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let data = vec![7u8; 100_000];
    let d = put(&store, "r", &data).await.unwrap();
    let info = store.info(&d).await.unwrap();
    store.inner.cache.remove(&d).unwrap();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (s, d) = (store.clone(), d.clone());
            tokio::spawn(async move { read_all(&s, &d).await.unwrap() })
        })
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), data);
    }
    assert_eq!(
        backend.cats.load(Ordering::SeqCst),
        1,
        "one fetch for all readers"
    );
    assert!(store.is_cached(&d));

    // Bytes that do not hash to the digest are never served, nor kept.
    store.inner.cache.remove(&d).unwrap();
    backend.corrupt(&info.cid, &vec![8u8; 100_000]);
    let err = read_all(&store, &d).await.unwrap_err();
    assert!(matches!(err, StoreError::DataLoss(_)), "{err}");
    assert!(!store.is_cached(&d));
    let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "a failed fetch leaves no temp file");
}

/// A hook that claims every missing digest is `claimed`, to check what adoption keeps.
struct Claims(Vec<u8>);

impl Distribution for Claims {
    fn committed(self: Arc<Self>, _core: ContentStore, _rec: Info) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn read_miss(
        self: Arc<Self>,
        core: ContentStore,
        digest: Digest,
    ) -> BoxFuture<'static, Option<Info>> {
        Box::pin(async move {
            let cid = MemoryBackend::cid_of(&self.0);
            core.adopt(&digest, &cid, self.0.len() as u64).await.ok()
        })
    }
}

#[tokio::test]
async fn a_read_miss_adopts_only_verified_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Claims(b"peer bytes".to_vec()));
    let (store, backend) = open_with(dir.path(), hook).await;
    let cid = backend.put_unpinned(b"peer bytes");
    let right = digest_of(b"peer bytes");
    assert_eq!(store.info(&right).await.unwrap().cid, cid);
    assert!(backend.is_pinned(&cid), "adopted blobs are pinned by name");
    let wrong = digest_of(b"something else");
    assert!(matches!(
        store.info(&wrong).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!store.contains(&wrong).await.unwrap());
    assert!(!store.is_cached(&wrong));
}

/// Status reads the writer's progress once (it used to read offset and total from two
/// snapshots, so a write in between paired one write's offset with another's total).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_one_snapshot_of_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).await;
    let mut w = store.writer("r", 0, None).await.unwrap();
    let writer = tokio::spawn(async move {
        for off in 0..3000i64 {
            // Each message announces a total equal to the offset it reaches.
            let mut m = msg(WriteAction::Write, off, b"x");
            m.total = off + 1;
            w.handle(m).await.unwrap();
        }
        w
    });
    let mut checks = 0;
    while !writer.is_finished() {
        let st = store.status("r").await.unwrap();
        assert!(
            st.offset == st.total || st.offset == 0,
            "{} vs {}",
            st.offset,
            st.total
        );
        checks += 1;
    }
    drop(writer.await.unwrap());
    assert!(checks > 0);
}

/// A List whose client stops reading must not hold a blocking thread: it used to park
/// one in `blocking_send`, so enough idle Lists starved every file and index call.
#[test]
fn idle_lists_do_not_hold_the_blocking_pool() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path()).await;
        let index = store.inner.index.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..3000u32 {
                let data = i.to_le_bytes();
                let rec = crate::index::BlobRecord {
                    digest: digest_of(&data),
                    cid: MemoryBackend::cid_of(&data),
                    size: 4,
                    labels: Default::default(),
                    created_at: crate::index::UnixNanos(0),
                    updated_at: crate::index::UnixNanos(0),
                };
                index.commit_blob(&rec, None).unwrap();
            }
        })
        .await
        .unwrap();
        let idle: Vec<_> = (0..4).map(|_| store.list(&[]).unwrap()).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let probe = tokio::time::timeout(Duration::from_secs(5), store.stats()).await;
        assert!(
            probe.is_ok(),
            "the blocking pool is exhausted by idle Lists"
        );
        assert_eq!(probe.unwrap().unwrap().blobs, 3000);
        drop(idle);
    });
}
