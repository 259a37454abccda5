//! The import into Kubo runs while WRITE messages arrive. Whatever the stream does before
//! its commit (rewind to offset 0, end half-way and resume later), the committed CID is
//! that of exactly the committed bytes, and no partial import is left pinned.
mod common;

use common::*;
use std::time::Duration;

async fn read_all(ipcs: &Ipcs, d: &str) -> Vec<u8> {
    let mut c = ipcs.content().await;
    read_range(&mut c, d, 0, 0).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewinding_to_zero_imports_only_the_new_bytes() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let first = random_bytes(3 << 20, 501);
    let second = random_bytes((2 << 20) + 17, 502);
    let d = sha256_digest(&second);
    let (mut s, _) = WriteSession::open(&mut c, stat("rewind", 0, ""))
        .await
        .unwrap();
    s.send(write(0, &first[..2 << 20])).await.unwrap();
    s.send(write(2 << 20, &first[2 << 20..])).await.unwrap();
    // containerd rewinds a writer by writing at offset 0 again.
    s.send(write(0, &second[..1 << 20])).await.unwrap();
    s.send(write(1 << 20, &second[1 << 20..])).await.unwrap();
    let resp = s
        .send(commit(second.len() as i64, second.len() as i64, &d))
        .await
        .unwrap();
    assert_eq!(resp.digest, d);
    s.close();

    let cid = ipcs.cids().await.remove(&d).unwrap();
    assert_eq!(cid, expected_cid(&second));
    assert!(is_pinned(&cid));
    assert!(read_all(&ipcs, &d).await == second);
    for stale in [expected_cid(&first), expected_cid(&first[..2 << 20])] {
        assert!(!is_pinned(&stale), "the rewound import {stale} was pinned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_ended_half_way_pins_nothing_and_resumes() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes((5 << 20) + 4321, 503);
    let d = sha256_digest(&data);
    let half = 3 << 20;
    let (mut s, _) = WriteSession::open(&mut c, stat("half", data.len() as i64, &d))
        .await
        .unwrap();
    s.send(write(0, &data[..half])).await.unwrap();
    s.close();
    // Let the aborted import reach Kubo, if it were going to.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!is_pinned(&expected_cid(&data[..half])));

    let (mut s, resp) = WriteSession::open(&mut c, stat("half", data.len() as i64, &d))
        .await
        .unwrap();
    assert_eq!(resp.offset as usize, half);
    s.send(write(half as i64, &data[half..])).await.unwrap();
    s.send(commit(data.len() as i64, data.len() as i64, &d))
        .await
        .unwrap();
    s.close();
    let cid = ipcs.cids().await.remove(&d).unwrap();
    assert_eq!(cid, expected_cid(&data));
    assert!(read_all(&ipcs, &d).await == data);
    assert_eq!(ipfs(&["cat", &cid], None).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_check_keeps_the_ingest_going() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes((1 << 20) + 99, 504);
    let d = sha256_digest(&data);
    let (mut s, _) = WriteSession::open(&mut c, stat("short", data.len() as i64, &d))
        .await
        .unwrap();
    s.send(write(0, &data[..1 << 20])).await.unwrap();
    let err = s
        .send(commit(1 << 20, data.len() as i64, &d))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    s.close();
    let (mut s, resp) = WriteSession::open(&mut c, stat("short", data.len() as i64, &d))
        .await
        .unwrap();
    assert_eq!(resp.offset as usize, 1 << 20);
    s.send(write(1 << 20, &data[1 << 20..])).await.unwrap();
    s.send(commit(data.len() as i64, data.len() as i64, &d))
        .await
        .unwrap();
    let cid = ipcs.cids().await.remove(&d).unwrap();
    assert_eq!(cid, expected_cid(&data));
}
