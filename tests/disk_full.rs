//! A full data dir: the Write that cannot be stored fails with an error that says so, the
//! index and the blobs already committed are unharmed, ipcs restarts on the full disk, and
//! once space is freed (Abort of the ingest that filled it) commits work again.
//! The data dir is a small tmpfs mounted for the test (needs root, as `make test` has).
mod common;

use common::*;
use ipcs::server::proto::{AbortRequest, InfoRequest, ListStatusesRequest};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Unmounts the tmpfs when the test ends, passing or not.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn used_bytes(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Moves `data` onto a fresh tmpfs with `spare` bytes free beyond what it holds now.
fn remount_small(data: &Path, spare: u64) -> Mount {
    let aside = data.with_extension("aside");
    std::fs::rename(data, &aside).unwrap();
    std::fs::create_dir(data).unwrap();
    let size = used_bytes(&aside) + spare;
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0750"),
            "tmpfs",
        ])
        .arg(data)
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "mounting a {size}-byte tmpfs on {} failed (the test needs root)",
        data.display()
    );
    let mount = Mount(data.to_path_buf());
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", aside.display()))
        .arg(data)
        .status()
        .unwrap()
        .success();
    assert!(ok, "copying the data dir onto the tmpfs failed");
    mount
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_data_dir_fails_clearly_and_loses_nothing() {
    let mut ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let kept = random_bytes(300_000, 601);
    let kept_digest = put_blob(&mut c, "before-full", &kept).await.unwrap();
    ipcs.kill9();
    let _mount = remount_small(&ipcs.data, 4 << 20);
    ipcs.restart().await;
    let mut c = ipcs.content().await;

    // 16 MiB cannot fit in the 4 MiB left.
    let big = random_bytes(16 << 20, 602);
    let err = put_blob(&mut c, "too-big", &big).await.unwrap_err();
    assert!(
        err.message().contains("No space left on device"),
        "the error should say the disk is full: {err:?}"
    );
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    // Restart on the full disk: the index opens and the committed blob reads back.
    ipcs.restart().await;
    let mut c = ipcs.content().await;
    assert!(read_range(&mut c, &kept_digest, 0, 0).await.unwrap() == kept);
    let statuses = c
        .list_statuses(ListStatusesRequest { filters: vec![] })
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert_eq!(
        statuses.len(),
        1,
        "the partial ingest is listed: {statuses:?}"
    );
    assert_eq!(statuses[0].r#ref, "too-big");

    // Aborting the ingest that filled the disk frees it: commits work again.
    c.abort(AbortRequest {
        r#ref: "too-big".into(),
    })
    .await
    .unwrap();
    let small = random_bytes(500_000, 603);
    let small_digest = put_blob(&mut c, "after-abort", &small).await.unwrap();
    assert!(read_range(&mut c, &small_digest, 0, 0).await.unwrap() == small);
    let info = c
        .info(InfoRequest {
            digest: kept_digest.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.size, kept.len() as i64);
    assert!(is_pinned(&ipcs.cids().await[&kept_digest]));
    assert!(!ipcs.log_text().contains("panicked"));
    ipcs.kill9();
}
