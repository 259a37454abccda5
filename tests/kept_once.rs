//! Each byte stored once (issue 17), against a real Kubo with its filestore enabled
//! (scripts/kubo-node.sh): a committed blob's leaves are references into ipcs's stored
//! file, Kubo serves the blob from that file, a blob sharing a block with another leans on
//! the other's file (which stays while it does), references into files that are gone are
//! repaired at the next import of those bytes, and a data dir Kubo cannot reference is
//! refused at startup with Kubo's reason.
mod common;

use common::*;
use ipcs::server::proto::DeleteContentRequest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CHUNK: usize = 256 << 10;

fn stored_file(data: &Path, digest: &str) -> PathBuf {
    data.canonicalize()
        .unwrap()
        .join("stored/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// How many `ipfs filestore ls` references name `path` (Kubo names files relative to its
/// filestore root, the repo's parent).
fn references_into(path: &Path) -> usize {
    let out = ipfs(&["filestore", "ls"], None).unwrap();
    let p = path.display().to_string();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|f| p.ends_with(&format!("/{f}")) || p == *f)
        .count()
}

/// `ipfs add --nocopy` of `path` (a file under the test Kubo's filestore root), as someone
/// other than ipcs would: Kubo records references to it. Returns the CID.
fn add_by_reference(path: &Path, pin: bool) -> String {
    let out = ipfs(
        &[
            "add",
            "-Q",
            "--nocopy",
            "--raw-leaves",
            "--cid-version=1",
            &format!("--pin={pin}"),
            path.to_str().unwrap(),
        ],
        None,
    )
    .unwrap();
    String::from_utf8_lossy(&out).trim().to_string()
}

fn status_text(ipcs: &Ipcs) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcs"))
        .args(["status", "--socket"])
        .arg(&ipcs.socket)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn delete(
    c: &mut ipcs::server::proto::content_client::ContentClient<tonic::transport::Channel>,
    d: &str,
) {
    c.delete(DeleteContentRequest {
        digest: d.to_string(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_blobs_are_references_into_their_stored_file() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let big = random_bytes((5 << 20) + 333, 1701);
    let small = random_bytes(1000, 1702);
    let db = put_blob(&mut c, "once-a", &big).await.unwrap();
    let ds = put_blob(&mut c, "once-b", &small).await.unwrap();
    let cids = ipcs.cids().await;
    for (d, data) in [(&db, &big), (&ds, &small)] {
        let stored = stored_file(&ipcs.data, d);
        assert_eq!(std::fs::read(&stored).unwrap(), *data, "stored file");
        assert_eq!(
            references_into(&stored),
            data.len().div_ceil(CHUNK),
            "every leaf a reference"
        );
        let hex = d.strip_prefix("sha256:").unwrap();
        assert!(
            !ipcs.data.join("blobs/sha256").join(hex).exists(),
            "no second copy in the cache"
        );
        let cid = &cids[d.as_str()];
        assert_eq!(cid, &expected_cid(data), "same CID as a plain ipfs add");
        // Kubo serves it (to `cat` here, to peers over bitswap) from the stored file.
        assert_eq!(ipfs(&["cat", cid], None).unwrap(), *data);
        assert_eq!(
            read_range(&mut c, d, 0, 0).await.unwrap(),
            *data,
            "read through ipcs"
        );
    }
    let text = status_text(&ipcs);
    assert!(text.contains("blobs kept:  once"), "{text}");
    let total = big.len() + small.len();
    assert!(
        text.contains(&format!("stored:    {total} in 2 files")),
        "{text}"
    );

    // Delete: the pin goes, then the only copy.
    let cid = cids[db.as_str()].clone();
    delete(&mut c, &db).await;
    assert!(!is_pinned(&cid));
    assert!(!stored_file(&ipcs.data, &db).exists());
    assert!(stored_file(&ipcs.data, &ds).exists());
}

/// Two different blobs whose first 256 KiB chunk is the same: Kubo keeps that block once,
/// as a reference into whichever file came first, so the second blob's DAG reads from
/// the first blob's file. Deleting the first must leave its file until the second goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_sharing_a_block_keeps_the_file_it_reads_from() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let shared = random_bytes(CHUNK, 1711);
    let first = [shared.clone(), random_bytes(CHUNK + 17, 1712)].concat();
    let second = [shared, random_bytes(3 * CHUNK, 1713)].concat();
    let d1 = put_blob(&mut c, "share-1", &first).await.unwrap();
    let d2 = put_blob(&mut c, "share-2", &second).await.unwrap();
    // Kubo's imports follow the commits, in commit order.
    ipcs.settled().await;
    let f1 = stored_file(&ipcs.data, &d1);
    let f2 = stored_file(&ipcs.data, &d2);
    // The shared block is one reference, into the first file.
    assert_eq!(references_into(&f1), 3);
    assert_eq!(references_into(&f2), 3);

    let cid2 = ipcs.cids().await[d2.as_str()].clone();
    delete(&mut c, &d1).await;
    assert!(f1.exists(), "the file the second blob reads from stays");
    assert_eq!(ipfs(&["cat", &cid2], None).unwrap(), second);
    assert_eq!(read_range(&mut c, &d2, 0, 0).await.unwrap(), second);

    // Restarted, the store still knows why the file is there.
    let mut ipcs = ipcs;
    ipcs.restart().await;
    let mut c = ipcs.content().await;
    assert!(f1.exists());
    assert_eq!(ipfs(&["cat", &cid2], None).unwrap(), second);

    delete(&mut c, &d2).await;
    assert!(!f2.exists());
    assert!(!f1.exists(), "released once nothing reads from it");
}

/// References into a file that is gone (here: an `ipfs add --nocopy` of a file that was
/// then removed; in ipcs: an import a crash cut short) make Kubo take those blocks for
/// present. The next commit of the same bytes finds them and imports them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn references_into_a_missing_file_are_repaired_at_the_next_import() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes(3 * CHUNK + 99, 1721);
    // Under the test Kubo's filestore root (/tmp), outside ipcs's data dir.
    let dir = tempfile::Builder::new()
        .prefix("ipcs-gone-")
        .tempdir_in("/tmp")
        .unwrap();
    let gone = dir.path().join("gone");
    std::fs::write(&gone, &data).unwrap();
    assert_eq!(add_by_reference(&gone, false), expected_cid(&data));
    std::fs::remove_file(&gone).unwrap();

    let d = put_blob(&mut c, "repair", &data).await.unwrap();
    let cid = ipcs.cids().await[d.as_str()].clone();
    let stored = stored_file(&ipcs.data, &d);
    assert_eq!(
        references_into(&stored),
        4,
        "every leaf now reads from ipcs's file"
    );
    assert_eq!(ipfs(&["cat", &cid], None).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_dir_outside_the_filestore_root_is_refused_with_kubos_reason() {
    // The test Kubo's repo is in /tmp, its filestore root /tmp; /dev/shm is outside.
    let dir = tempfile::Builder::new()
        .prefix("ipcs-outside-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipcs"))
        .arg("serve")
        .arg("--socket")
        .arg(dir.path().join("ipcs.sock"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--kubo-api")
        .arg(kubo_api())
        .env_remove("IPCS_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "ipcs kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("filestore = true"), "{err}");
    assert!(err.contains("outside ipfs root"), "{err}");

    // filestore = false keeps two copies and starts.
    let mut ok =
        Ipcs::start_with(kubo_api(), vec![("IPCS_FILESTORE".into(), "false".into())]).await;
    assert!(ok.is_running());
}

/// The same, but the references into the missing file belong to another DAG someone else
/// pinned (a longer file sharing the first chunks; another store on this Kubo, or a data
/// dir wiped while its pins stayed): Kubo refuses to drop them. The commit still succeeds
/// and ipcs serves the blob from its own file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn references_pinned_by_someone_else_do_not_fail_the_commit() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes(2 * CHUNK, 1731);
    let longer = [data.clone(), random_bytes(CHUNK + 9, 1732)].concat();
    let dir = tempfile::Builder::new()
        .prefix("ipcs-gone-pinned-")
        .tempdir_in("/tmp")
        .unwrap();
    let gone = dir.path().join("gone");
    std::fs::write(&gone, &longer).unwrap();
    let theirs = add_by_reference(&gone, true);
    std::fs::remove_file(&gone).unwrap();

    let d = put_blob(&mut c, "held", &data).await.unwrap();
    assert_eq!(read_range(&mut c, &d, 0, 0).await.unwrap(), data);
    ipcs.settled().await;
    assert!(
        ipcs.log_text().contains("held by another pin"),
        "{}",
        ipcs.log_text()
    );
    assert!(
        is_pinned(&ipcs.cids().await[d.as_str()]),
        "the blob stays pinned"
    );
    ipfs(&["pin", "rm", &theirs], None).ok();
}
