//! Imports after the commit (`store::later_import`), against real Kubo: a commit records
//! the CID ipcs computed while the blob streamed in and answers without Kubo; Kubo's
//! import follows and ends with the same CID pinned. A Kubo that is stalled or down
//! delays only the import; a restart resumes it; a Delete before it leaves nothing behind;
//! resumed and truncated ingests compute the same CID as one straight stream; an import
//! waits while another Write streams; a blob whose import keeps failing holds back no
//! other.
mod common;

use common::kubo_node::KuboNode;
use common::*;
use ipcs::server::proto::{DeleteContentRequest, InfoRequest};
use std::time::{Duration, Instant};

async fn pending_for_a_while(ipcs: &Ipcs) -> u64 {
    // Still pending after a moment: the import really waits for Kubo.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ipcs.pending_imports().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_answers_while_kubo_is_stalled_and_the_import_follows() {
    let kubo = KuboNode::start();
    // The import sent to the stalled Kubo gets no answer even after SIGCONT: it ends at
    // its deadline and the retry imports the blob.
    let ipcs = Ipcs::start_with(
        kubo.api.clone(),
        vec![("IPCS_KUBO_TIMEOUT_SECS".into(), "3".into())],
    )
    .await;
    let mut c = ipcs.content().await;
    // Sizes around the chunk and tree edges of Kubo's layout (256 KiB, 174 links).
    let sizes = [0usize, 1, 262_144, 262_145, 174 * 262_144 + 1];
    let blobs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| random_bytes(*n, 40 + i as u64))
        .collect();

    kubo.signal("STOP");
    let t0 = Instant::now();
    let mut digests = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        digests.push(put_blob(&mut c, &format!("later-{i}"), b).await.unwrap());
    }
    let took = t0.elapsed();
    let pending = pending_for_a_while(&ipcs).await;
    // Served from the stored files meanwhile.
    for (d, b) in digests.iter().zip(&blobs) {
        assert_eq!(&read_range(&mut c, d, 0, 0).await.unwrap(), b);
    }
    kubo.signal("CONT");
    assert!(
        took < Duration::from_secs(20),
        "commits waited for kubo: {took:?}"
    );
    assert_eq!(
        pending,
        blobs.len() as u64,
        "every commit left its import pending"
    );

    let cids = ipcs.cids().await;
    for (d, b) in digests.iter().zip(&blobs) {
        let want = expected_cid(b);
        assert_eq!(cids[d], want, "recorded CID of {} bytes", b.len());
        assert_eq!(
            kubo.ipfs(&["pin", "ls", "--type", "recursive", "-q", &want])
                .map(|s| s.trim().to_string()),
            Ok(want.clone())
        );
    }
    assert!(
        !ipcs.log_text().contains("another CID"),
        "computed and imported CIDs differ: {}",
        ipcs.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_imports_survive_a_kill_and_a_delete_before_the_import_leaves_nothing() {
    let kubo = KuboNode::start();
    let mut ipcs = Ipcs::start_with(kubo.api.clone(), vec![]).await;
    let mut c = ipcs.content().await;
    let kept = random_bytes(3 << 20, 50);
    let dropped = random_bytes(2 << 20, 51);
    kubo.stop();
    let kept_d = put_blob(&mut c, "kept", &kept).await.unwrap();
    let dropped_d = put_blob(&mut c, "dropped", &dropped).await.unwrap();
    assert_eq!(ipcs.pending_imports().await, 2);

    // Deleted before Kubo ever saw it: no unpin is needed, so Kubo being down is no error.
    c.delete(DeleteContentRequest {
        digest: dropped_d.clone(),
    })
    .await
    .unwrap();
    assert_eq!(ipcs.pending_imports().await, 1);
    let hex = dropped_d.strip_prefix("sha256:").unwrap();
    assert!(!ipcs.data.join("stored/sha256").join(hex).exists());
    let err = c
        .info(InfoRequest {
            digest: dropped_d.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Killed with the other import pending; Kubo comes back; the restart finishes it.
    ipcs.kill9();
    let mut kubo = kubo;
    kubo.restart();
    ipcs.restart().await;
    let cids = ipcs.cids().await;
    assert_eq!(cids[&kept_d], expected_cid(&kept));
    assert!(kubo
        .ipfs(&["pin", "ls", "--type", "recursive", "-q"])
        .unwrap()
        .contains(&cids[&kept_d]));
    assert!(!cids.contains_key(&dropped_d));
    // The dropped blob's DAG was never made: nothing of it is pinned.
    let dropped_cid = expected_cid(&dropped);
    assert!(!kubo
        .ipfs(&["pin", "ls", "--type", "recursive", "-q"])
        .unwrap()
        .contains(&dropped_cid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resumed_and_truncated_ingests_record_the_cid_kubo_gives() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes((5 << 20) + 12_345, 60);
    let d = sha256_digest(&data);

    // Half written, stream dropped, ipcs restarted: the ingest resumes from its file.
    let (mut s, _) = WriteSession::open(&mut c, stat("resumed", data.len() as i64, &d))
        .await
        .unwrap();
    let half = 3 << 20;
    s.send(write(0, &data[..half])).await.unwrap();
    s.close_and_drain().await;
    let mut ipcs = ipcs;
    ipcs.kill9();
    ipcs.restart().await;
    let mut c = ipcs.content().await;
    let (mut s, resp) = WriteSession::open(&mut c, stat("resumed", data.len() as i64, &d))
        .await
        .unwrap();
    assert_eq!(resp.offset as usize, half);
    s.send(write(half as i64, &data[half..])).await.unwrap();
    s.send(commit(data.len() as i64, data.len() as i64, &d))
        .await
        .unwrap();
    s.close();

    // Other bytes first, then a write at offset 0 truncates and starts over.
    let other = random_bytes(1 << 20, 61);
    let data2 = random_bytes((2 << 20) + 7, 62);
    let d2 = sha256_digest(&data2);
    let (mut s, _) = WriteSession::open(&mut c, stat("truncated", 0, ""))
        .await
        .unwrap();
    s.send(write(0, &other)).await.unwrap();
    s.send(write(0, &data2)).await.unwrap();
    s.send(commit(data2.len() as i64, 0, &d2)).await.unwrap();
    s.close();

    let cids = ipcs.cids().await;
    assert_eq!(cids[&d], expected_cid(&data), "resumed ingest");
    assert_eq!(cids[&d2], expected_cid(&data2), "truncated ingest");
    assert!(!ipcs.log_text().contains("another CID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_wait_while_another_write_streams() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    // A pull still writing another layer: the import of a committed one waits for it.
    let busy = WriteSession::holding_imports(&mut c).await;
    let data = random_bytes(1 << 20, 70);
    let d = put_blob(&mut c, "done-layer", &data).await.unwrap();
    let pending = pending_for_a_while(&ipcs).await;
    busy.close_and_drain().await;
    let t0 = Instant::now();
    let cids = ipcs.cids().await;
    assert_eq!(pending, 1, "the import ran beside an open Write stream");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the import did not follow the end of the stream: {:?}",
        t0.elapsed()
    );
    assert_eq!(cids[&d], expected_cid(&data));
}

/// A blob whose import keeps failing (its stored file removed by hand) is retried on its
/// own: a blob committed after it is imported at once, not after the growing pauses of the
/// failing one's retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_whose_import_keeps_failing_holds_back_no_other() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let busy = WriteSession::holding_imports(&mut c).await;
    let bad = random_bytes(100_000, 71);
    let d_bad = put_blob(&mut c, "loses-its-file", &bad).await.unwrap();
    let hex = d_bad.strip_prefix("sha256:").unwrap();
    std::fs::remove_file(ipcs.data.join("stored/sha256").join(hex)).unwrap();
    busy.close_and_drain().await;
    // Let the bad import fail a few times: 1 + 2 + 4 s of pauses so far.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30)
        && ipcs
            .log_text()
            .matches("import after commit failed")
            .count()
            < 4
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ipcs.log_text()
            .matches("import after commit failed")
            .count()
            >= 4
    );
    let good = random_bytes(100_000, 72);
    put_blob(&mut c, "fine", &good).await.unwrap();
    let t1 = Instant::now();
    let imported = loop {
        // The failing blob stays pending; the new one must not.
        if ipcs.pending_imports().await <= 1 {
            break t1.elapsed();
        }
        assert!(t1.elapsed() < Duration::from_secs(60), "never imported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // An import waits for nothing else here (no stream open): well under the 4 s pause
    // the failing blob is at.
    assert!(
        imported < Duration::from_secs(2),
        "the import waited for the failing blob's retries: {imported:?}"
    );
    assert!(is_pinned(&expected_cid(&good)));
}
