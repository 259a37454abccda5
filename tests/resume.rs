//! An ingest interrupted by killing ipcs resumes after restart at the same offset, with
//! the same digest-so-far and start time, and then commits.
mod common;

use common::*;
use ipcs::server::proto::StatusRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_after_restart_keeps_offset() {
    let mut ipcs = Ipcs::start().await;
    let data = random_bytes(5 << 20, 42);
    let d = sha256_digest(&data);
    let r = "default/1/layer-sha256:resume-test";
    let half = 3 << 20;

    let mut c = ipcs.content().await;
    let (mut s, first) = WriteSession::open(&mut c, stat(r, data.len() as i64, ""))
        .await
        .unwrap();
    assert_eq!(first.offset, 0);
    assert_eq!(first.digest, sha256_digest(b""));
    let started_at = first.started_at.unwrap();
    let mut last_write = None;
    for (i, chunk) in data[..half].chunks(1 << 20).enumerate() {
        last_write = s
            .send(write((i << 20) as i64, chunk))
            .await
            .unwrap()
            .updated_at;
    }
    // Crash mid-stream: the stream is still open when ipcs dies.
    ipcs.kill9();
    drop(s);
    ipcs.restart().await;

    let mut c = ipcs.content().await;
    let st = c
        .status(StatusRequest { r#ref: r.into() })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.offset, half as i64);
    assert_eq!(st.total, data.len() as i64);
    assert_eq!(st.started_at.unwrap(), started_at);
    // The time of the last write survives the crash to the nanosecond.
    assert_eq!(st.updated_at, last_write);

    let (mut s, resumed) = WriteSession::open(&mut c, stat(r, 0, "")).await.unwrap();
    assert_eq!(resumed.offset, half as i64);
    assert_eq!(resumed.total, data.len() as i64);
    assert_eq!(resumed.digest, sha256_digest(&data[..half]));
    assert_eq!(resumed.started_at.unwrap(), started_at);
    let mut off = half;
    for chunk in data[half..].chunks(1 << 20) {
        off += chunk.len();
        assert_eq!(
            s.send(write((off - chunk.len()) as i64, chunk))
                .await
                .unwrap()
                .offset,
            off as i64
        );
    }
    let done = s
        .send(commit(off as i64, data.len() as i64, &d))
        .await
        .unwrap();
    assert_eq!(done.digest, d);
    s.close();

    let cid = ipcs
        .cids()
        .await
        .remove(&d)
        .expect("committed blob has a CID");
    assert!(ipfs(&["cat", &cid], None).unwrap() == data);
    assert_eq!(read_range(&mut c, &d, 0, 0).await.unwrap(), data);
    // The ingest is gone once committed.
    assert_eq!(
        c.status(StatusRequest { r#ref: r.into() })
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_blobs_survive_restart() {
    let mut ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes(700_000, 3);
    let d = put_blob(&mut c, "survive", &data).await.unwrap();
    ipcs.restart().await;
    let mut c = ipcs.content().await;
    assert_eq!(read_range(&mut c, &d, 0, 0).await.unwrap(), data);
}
