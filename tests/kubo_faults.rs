//! ipcs with a Kubo node of its own that the test stops, restarts, stalls (SIGSTOP) and
//! continues: commits that wait for Kubo's import (`import_after_commit = false`) fail
//! within their deadline with an error naming Kubo, the ingest
//! stays resumable, cached blobs keep being served, and ipcs recovers by itself.
mod common;

use common::kubo_node::KuboNode;
use common::*;
use ipcs::server::proto::{DeleteContentRequest, InfoRequest, StatusRequest};
use std::time::{Duration, Instant};
use tonic::Code;

/// Deadline of Kubo control calls in this test; transfers get `+ size / 8 MiB/s`.
const KUBO_TIMEOUT_SECS: u64 = 3;

async fn write_all(
    c: &mut ipcs::server::proto::content_client::ContentClient<tonic::transport::Channel>,
    r: &str,
    data: &[u8],
) -> WriteSession {
    let (mut s, resp) = WriteSession::open(c, stat(r, data.len() as i64, ""))
        .await
        .unwrap();
    let mut off = resp.offset as usize;
    for chunk in data[off..].chunks(1 << 20) {
        s.send(write(off as i64, chunk)).await.unwrap();
        off += chunk.len();
    }
    s
}

async fn status_offset(
    c: &mut ipcs::server::proto::content_client::ContentClient<tonic::transport::Channel>,
    r: &str,
) -> i64 {
    c.status(StatusRequest { r#ref: r.into() })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_survives_kubo_stopped_and_stalled() {
    let mut kubo = KuboNode::start();
    // Commits that wait for Kubo's import (tests/later_import.rs has the default, where
    // the import follows the commit).
    let ipcs = Ipcs::start_with(
        kubo.api.clone(),
        vec![
            (
                "IPCS_KUBO_TIMEOUT_SECS".into(),
                KUBO_TIMEOUT_SECS.to_string(),
            ),
            ("IPCS_IMPORT_AFTER_COMMIT".into(), "false".into()),
        ],
    )
    .await;
    let mut c = ipcs.content().await;
    let cached = random_bytes(3 << 20, 1);
    let cached_d = put_blob(&mut c, "cached", &cached).await.unwrap();
    // Errors name the API as configured (here unix:///…/api.sock).
    let host_port = kubo.api.clone();

    // --- Kubo stopped between the last Write and the Commit.
    let b = random_bytes(2 << 20, 2);
    let bd = sha256_digest(&b);
    let mut s = write_all(&mut c, "during-stop", &b).await;
    kubo.stop();
    let t0 = Instant::now();
    let err = s
        .send(commit(b.len() as i64, b.len() as i64, &bd))
        .await
        .unwrap_err();
    let stopped_fail = t0.elapsed();
    eprintln!("kubo stopped: commit failed after {stopped_fail:?}: {err}");
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(
        err.message().contains("kubo") && err.message().contains(&host_port),
        "the error names Kubo and its address: {err}"
    );
    assert!(stopped_fail < Duration::from_secs(KUBO_TIMEOUT_SECS + 5));
    assert_eq!(status_offset(&mut c, "during-stop").await, b.len() as i64);
    // Cached blobs are served, and Info answers, without Kubo.
    let t0 = Instant::now();
    let got = read_range(&mut c, &cached_d, 0, 0).await.unwrap();
    assert_eq!(sha256_digest(&got), cached_d);
    eprintln!("kubo stopped: cached read of 3 MiB in {:?}", t0.elapsed());
    c.info(InfoRequest {
        digest: cached_d.clone(),
    })
    .await
    .unwrap();
    // Delete cannot unpin: it fails naming Kubo and changes nothing.
    let err = c
        .delete(DeleteContentRequest {
            digest: cached_d.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.message().contains(&host_port), "{err}");

    // Kubo back on the same port: the same ref commits, ipcs was never restarted.
    kubo.restart();
    let t0 = Instant::now();
    let mut s = write_all(&mut c, "during-stop", &b).await;
    let resp = s
        .send(commit(b.len() as i64, b.len() as i64, &bd))
        .await
        .unwrap();
    eprintln!("kubo restarted: resumed commit took {:?}", t0.elapsed());
    assert_eq!(resp.digest, bd);
    let cid = ipcs.cids().await[&bd].clone();
    let pins = kubo.recursive_pins();
    assert!(pins.contains(&cid), "{cid} pinned after recovery: {pins}");

    // --- Kubo stalled (SIGSTOP) during the commit: the commit must not hang.
    let d = random_bytes(2 << 20, 3);
    let dd = sha256_digest(&d);
    let mut s = write_all(&mut c, "during-stall", &d).await;
    kubo.signal("STOP");
    let t0 = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        s.send(commit(d.len() as i64, d.len() as i64, &dd)),
    )
    .await
    .expect("commit hung on a stalled kubo")
    .unwrap_err();
    let stalled_fail = t0.elapsed();
    eprintln!("kubo stalled: commit failed after {stalled_fail:?}: {err}");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(err.message().contains(&host_port), "{err}");
    // transfer deadline = timeout + 2 MiB / 8 MiB/s (rounded down to 0 s) + slack.
    assert!(stalled_fail >= Duration::from_secs(KUBO_TIMEOUT_SECS));
    assert!(stalled_fail < Duration::from_secs(KUBO_TIMEOUT_SECS + 5));
    assert_eq!(status_offset(&mut c, "during-stall").await, d.len() as i64);
    let t0 = Instant::now();
    let got = read_range(&mut c, &cached_d, 0, 0).await.unwrap();
    assert_eq!(sha256_digest(&got), cached_d);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "cached read waited on kubo"
    );

    // Continued: ipcs works again by itself.
    kubo.signal("CONT");
    let t0 = Instant::now();
    let mut s = write_all(&mut c, "during-stall", &d).await;
    s.send(commit(d.len() as i64, d.len() as i64, &dd))
        .await
        .unwrap();
    eprintln!("kubo continued: resumed commit took {:?}", t0.elapsed());
    let e = random_bytes(100_000, 4);
    put_blob(&mut c, "after-cont", &e).await.unwrap();
    c.delete(DeleteContentRequest { digest: cached_d })
        .await
        .unwrap();
}

/// Kubo reports an error that happens after `add` has printed the CID (a pin that fails,
/// say) only in the `X-Stream-Error` trailer; the client must fail the add instead of
/// taking the CID for success. `to-files` into a missing MFS directory is a real Kubo
/// failure of that kind; into `/` the same add succeeds.
#[tokio::test]
async fn an_add_that_fails_after_printing_its_cid_fails() {
    let kubo = KuboNode::start();
    let k = ipcs::ipfs::KuboClient::new(&kubo.api, Duration::from_secs(30), 1 << 20).unwrap();
    let opts = ipcs::config::ImportOptions::default();
    let err = k
        .add_bytes_to_files(b"x".to_vec(), &opts, "/no/such/dir/")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ipcs::ipfs::KuboError::Api { .. })
            && err.to_string().contains("/no/such/dir"),
        "{err}"
    );
    let cid = k
        .add_bytes_to_files(b"x".to_vec(), &opts, "/")
        .await
        .unwrap();
    assert!(cid.starts_with("bafk"), "{cid}");
}
