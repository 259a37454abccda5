//! `ipcs fsck` against a real Kubo of the test's own (it is garbage-collected here): every
//! inconsistency is made for real, fsck must report it without changing anything, then
//! repair it, then report clean, and the restarted store must serve what it kept.
mod common;

use common::kubo_node::KuboNode;
use common::*;
use ipcs::index::Index;
use std::path::Path;
use std::process::Command;
use tonic::Code;

fn fsck(ipcs: &Ipcs, api: &str, args: &[&str]) -> (i32, String) {
    fsck_with(ipcs, api, args, true)
}

/// fsck of a store that keeps two copies (`filestore = false`).
fn fsck_copy(ipcs: &Ipcs, api: &str, args: &[&str]) -> (i32, String) {
    fsck_with(ipcs, api, args, false)
}

fn fsck_with(ipcs: &Ipcs, api: &str, args: &[&str], filestore: bool) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipcs"))
        .arg("fsck")
        .arg("--data-dir")
        .arg(&ipcs.data)
        .arg("--kubo-api")
        .arg(api)
        .args(args)
        .env_remove("IPCS_CONFIG")
        .env("IPCS_FILESTORE", filestore.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn summary(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("fsck: "))
        .unwrap_or_else(|| panic!("no summary in {out}"))
}

fn cache_file(data: &Path, d: &str) -> std::path::PathBuf {
    data.join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_finds_and_repairs_each_inconsistency() {
    let kubo = KuboNode::start();
    // Copy semantics: this scenario loses blocks from Kubo (unpin + gc) and re-imports
    // them from cache files; kept-once stores are covered by tests/kept_once.rs and
    // src/fsck/tests.rs.
    let mut ipcs = Ipcs::start_with(
        kubo.api.clone(),
        vec![("IPCS_FILESTORE".into(), "false".into())],
    )
    .await;
    let mut c = ipcs.content().await;
    let blobs: Vec<Vec<u8>> = (0..6)
        .map(|i| random_bytes(300_000 + i * 1000, 700 + i as u64))
        .collect();
    let mut ds = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        ds.push(put_blob(&mut c, &format!("fsck-{i}"), b).await.unwrap());
    }
    let cids = ipcs.cids().await;
    let cid = |i: usize| cids[&ds[i]].clone();
    // Two partial ingests.
    for r in ["partial-1", "partial-2"] {
        let (mut s, _) = WriteSession::open(&mut c, stat(r, 100_000, ""))
            .await
            .unwrap();
        s.send(write(0, &random_bytes(50_000, 1))).await.unwrap();
        s.close();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // The running server holds the index: fsck refuses, clearly.
    let (code, out) = fsck_copy(&ipcs, &kubo.api, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("ipcs serve") && out.contains("running"),
        "{out}"
    );

    drop(c);
    ipcs.kill9();
    let (code, out) = fsck_copy(&ipcs, &kubo.api, &["--verify"]);
    assert_eq!(code, 0, "a fresh store is clean: {out}");
    assert!(summary(&out).contains("found=0"), "{out}");
    assert!(summary(&out).contains("verified=6"), "{out}");
    let pin_name = std::fs::read_to_string(ipcs.data.join("store-id")).unwrap();
    let pin_name = format!("ipcs:{}", pin_name.trim());
    assert!(
        kubo.recursive_pins().contains(&pin_name),
        "pins carry the store's name"
    );

    // 1 and 2: unpinned and garbage-collected; 1 is still cached, 2 is not.
    kubo.ipfs(&["pin", "rm", &cid(1)]).unwrap();
    kubo.ipfs(&["pin", "rm", &cid(2)]).unwrap();
    std::fs::remove_file(cache_file(&ipcs.data, &ds[2])).unwrap();
    kubo.ipfs(&["repo", "gc"]).unwrap();
    // 0: unpinned, blocks still there (a Delete killed after its unpin).
    kubo.ipfs(&["pin", "rm", &cid(0)]).unwrap();
    // 3: record deleted behind ipcs's back: its pin is an orphan, its cache file stale.
    // 4: record points at another blob's DAG: unreadable as itself.
    {
        let index = Index::open(&ipcs.data.join("index.redb")).unwrap();
        index.remove_blob(&ds[3]).unwrap().unwrap();
        let other = cid(5);
        index
            .update_blob(&ds[4], |r| r.cid = other.parse().unwrap())
            .unwrap()
            .unwrap();
    }
    // 5: cache file corrupted, same size.
    let f5 = cache_file(&ipcs.data, &ds[5]);
    let mut bytes = std::fs::read(&f5).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&f5, &bytes).unwrap();
    // Orphan named as ours; pins of others (unnamed, another store's name) are not ours.
    let tmpd = tempfile::tempdir().unwrap();
    let mk = |name: &str, seed: u64| {
        let p = tmpd.path().join(name);
        std::fs::write(&p, random_bytes(10_000, seed)).unwrap();
        p
    };
    let orphan = kubo.add(&mk("orphan", 41), false);
    kubo.ipfs(&["pin", "add", "--name", &pin_name, &orphan])
        .unwrap();
    let foreign = kubo.add(&mk("foreign", 42), true);
    let other_store = kubo.add(&mk("other", 43), false);
    kubo.ipfs(&[
        "pin",
        "add",
        "--name",
        "ipcs:0123456789abcdef",
        &other_store,
    ])
    .unwrap();
    // Ingest debris: a record without its file, a directory without a record, a temp file.
    let dir1 = ipcs.data.join("ingest");
    let partial1 = std::fs::read_dir(&dir1)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    std::fs::remove_file(partial1.join("data")).unwrap();
    std::fs::create_dir_all(dir1.join("00000000000000000000000000000000000000ff")).unwrap();
    std::fs::write(ipcs.data.join("tmp/fetch-abc"), b"x").unwrap();

    // Check only: everything reported, nothing changed.
    let (code, out) = fsck_copy(&ipcs, &kubo.api, &["--verify"]);
    assert_eq!(code, 1, "{out}");
    let s = summary(&out);
    for kind in [
        "missing-pin=3",
        // The orphan, blob 3's pin, and blob 4's own DAG that its record no longer names.
        "orphan-pin=3",
        "unreadable-dag=1",
        "cache-stale=1",
        "cache-corrupt=1",
        "ingest-without-file=1",
        "ingest-dir-without-record=1",
        "temp-debris=1",
    ] {
        assert!(s.contains(kind), "{kind} missing in {out}");
    }
    assert!(
        !out.contains(&foreign) && !out.contains(&other_store),
        "{out}"
    );
    assert!(
        !kubo.recursive_pins().contains(&cid(0)),
        "check-only must not re-pin"
    );

    // Repair: the lost DAG with a cache copy is re-imported, without one it is dropped.
    let (code, out) = fsck_copy(&ipcs, &kubo.api, &["--repair", "--verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(summary(&out).contains("remaining=0"), "{out}");
    assert!(out.contains("re-pinned from local blocks"), "{out}");
    assert!(
        out.contains("lost-dag") && out.contains("re-imported from the cache"),
        "{out}"
    );
    assert!(
        out.contains("record dropped, containerd will fetch it again"),
        "{out}"
    );
    let pins = kubo.recursive_pins();
    assert!(
        pins.contains(&foreign) && pins.contains(&other_store),
        "others' pins kept"
    );
    assert!(
        !pins.contains(&orphan) && !pins.contains(&cid(3)),
        "orphans unpinned"
    );
    let (code, out) = fsck_copy(&ipcs, &kubo.api, &["--verify"]);
    assert_eq!(code, 0, "clean after repair: {out}");
    assert!(summary(&out).contains("found=0"), "{out}");

    // The store serves what it kept, from Kubo where the cache copy went.
    ipcs.restart().await;
    let mut c = ipcs.content().await;
    for i in [0, 1, 4, 5] {
        let got = read_range(&mut c, &ds[i], 0, 0).await.unwrap();
        assert_eq!(sha256_digest(&got), ds[i], "blob {i}");
    }
    for i in [2, 3] {
        let e = read_range(&mut c, &ds[i], 0, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "blob {i}");
    }
    assert_eq!(
        ipcs.cids().await[&ds[4]],
        cid(4),
        "record follows its real DAG again"
    );
}

/// The state a commit killed after Kubo's pinned `add` answered and before the index write
/// leaves, made for real: a complete ingest written through ipcs and left uncommitted, the
/// server killed, then the very `add` ipcs sends (pinned under the store's name) run on
/// its file. The pin is no orphan: the ingest's next commit reuses it, and fsck finishes
/// the commit. A partial ingest and a pin no ingest explains are told apart from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_cut_after_the_pinned_add_is_reused_or_finished() {
    let kubo = KuboNode::start();
    let mut ipcs = Ipcs::start_with(kubo.api.clone(), vec![]).await;
    let pin_name = std::fs::read_to_string(ipcs.data.join("store-id")).unwrap();
    let pin_name = format!("ipcs:{}", pin_name.trim());
    let data_dir = ipcs.data.clone();
    let ingest_file = |r: &str| {
        let id = sha256_digest(r.as_bytes());
        data_dir
            .join("ingest")
            .join(&id.trim_start_matches("sha256:")[..40])
            .join("data")
    };
    // Kubo finishing the pinned add of a whole ingest, as ipcs asks for it.
    let pinned_add = |path: &Path| {
        let name = format!("--pin-name={pin_name}");
        kubo.ipfs(&[
            "add",
            "-Q",
            "--cid-version=1",
            "--raw-leaves",
            "--chunker=size-262144",
            "--max-file-links=174",
            "--pin=true",
            &name,
            path.to_str().unwrap(),
        ])
        .unwrap()
        .trim()
        .to_string()
    };
    let blobs: Vec<Vec<u8>> = (0..2).map(|i| random_bytes(700_000, 90 + i)).collect();
    let ds: Vec<String> = blobs.iter().map(|b| sha256_digest(b)).collect();
    let cut =
        |c: &mut ipcs::server::proto::content_client::ContentClient<tonic::transport::Channel>,
         i: usize| {
            let mut c = c.clone();
            let (b, d) = (blobs[i].clone(), ds[i].clone());
            async move {
                let r = format!("cut-{i}");
                let (mut s, _) = WriteSession::open(&mut c, stat(&r, b.len() as i64, &d))
                    .await
                    .unwrap();
                s.send(write(0, &b)).await.unwrap();
                s.close_and_drain().await;
            }
        };

    // 1: without fsck, the retried commit records the CID Kubo already pinned.
    let mut c = ipcs.content().await;
    cut(&mut c, 0).await;
    drop(c);
    ipcs.kill9();
    let cid0 = pinned_add(&ingest_file("cut-0"));
    ipcs.restart().await;
    let mut c = ipcs.content().await;
    let (mut s, st) = WriteSession::open(&mut c, stat("cut-0", 0, &ds[0]))
        .await
        .unwrap();
    assert_eq!(st.offset, blobs[0].len() as i64, "the whole ingest is kept");
    s.send(commit(st.offset, blobs[0].len() as i64, &ds[0]))
        .await
        .unwrap();
    s.close_and_drain().await;
    assert_eq!(
        ipcs.cids().await[&ds[0]],
        cid0,
        "the retry recorded Kubo's CID"
    );

    // 2: fsck finishes the commit; a partial ingest and a foreign-born orphan stay apart.
    cut(&mut c, 1).await;
    let (mut s, _) = WriteSession::open(&mut c, stat("partial", 500_000, ""))
        .await
        .unwrap();
    s.send(write(0, &blobs[1][..200_000])).await.unwrap();
    s.close_and_drain().await;
    drop(c);
    ipcs.kill9();
    let cid1 = pinned_add(&ingest_file("cut-1"));
    let tmpd = tempfile::tempdir().unwrap();
    let lone = tmpd.path().join("lone");
    std::fs::write(&lone, random_bytes(10_000, 99)).unwrap();
    let orphan = pinned_add(&lone);

    let (code, out) = fsck(&ipcs, &kubo.api, &[]);
    assert_eq!(code, 1, "{out}");
    let s = summary(&out);
    assert!(s.contains("interrupted-commit=1"), "{out}");
    assert!(s.contains("orphan-pin=1"), "{out}");
    assert!(
        s.contains("found=2"),
        "the retried cut-0 left nothing: {out}"
    );
    assert!(out.contains(&cid1) && out.contains(&orphan), "{out}");
    let (code, out) = fsck(&ipcs, &kubo.api, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("commit finished"), "{out}");
    let (code, out) = fsck(&ipcs, &kubo.api, &["--verify"]);
    assert_eq!(code, 0, "clean after repair: {out}");
    assert!(summary(&out).contains("found=0"), "{out}");
    let pins = kubo.recursive_pins();
    assert!(pins.contains(&cid1) && !pins.contains(&orphan), "{pins}");

    ipcs.restart().await;
    let mut c = ipcs.content().await;
    assert_eq!(ipcs.cids().await[&ds[1]], cid1);
    assert_eq!(read_range(&mut c, &ds[1], 0, 0).await.unwrap(), blobs[1]);
    let gone = c
        .status(ipcs::server::proto::StatusRequest {
            r#ref: "cut-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        Code::NotFound,
        "the finished ingest is dropped"
    );
    let kept = c
        .status(ipcs::server::proto::StatusRequest {
            r#ref: "partial".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kept.status.unwrap().offset,
        200_000,
        "the partial ingest is untouched"
    );
}
