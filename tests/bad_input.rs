//! Bad input gets containerd's error codes, no panic, and leaves no stray files.
mod common;

use common::*;
use ipcs::server::proto::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tonic::Code;

const UNKNOWN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
const MALFORMED: [&str; 5] = [
    "",
    "sha256:xyz",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:../../../../etc/passwd",
    "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_digests_are_invalid_argument_and_unknown_is_not_found() {
    let mut ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    for bad in MALFORMED {
        let d = bad.to_string();
        assert_eq!(
            c.info(InfoRequest { digest: d.clone() })
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument,
            "{bad}"
        );
        assert_eq!(
            c.delete(DeleteContentRequest { digest: d.clone() })
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert_eq!(
            read_range(&mut c, bad, 0, 0).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        let upd = UpdateRequest {
            info: Some(Info {
                digest: d.clone(),
                ..Default::default()
            }),
            update_mask: None,
        };
        assert_eq!(
            c.update(upd).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        // An empty `expected` is containerd's "no expectation", so the Write opens;
        // every other malformed one is refused.
        let opened = WriteSession::open(&mut c, stat("bad-expected", 0, bad)).await;
        match (bad.is_empty(), opened) {
            (true, Ok(_)) => {}
            (true, Err(e)) => panic!("an empty expected digest was refused: {e}"),
            (false, Ok(_)) => panic!("expected={bad:?} was accepted"),
            (false, Err(e)) => assert_eq!(e.code(), Code::InvalidArgument, "expected={bad}"),
        }
    }
    assert_eq!(
        c.info(InfoRequest {
            digest: UNKNOWN.into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        c.delete(DeleteContentRequest {
            digest: UNKNOWN.into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        read_range(&mut c, UNKNOWN, 0, 0).await.unwrap_err().code(),
        Code::NotFound
    );
    let nope = || "nope".to_string();
    let status = c.status(StatusRequest { r#ref: nope() }).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    let abort = c.abort(AbortRequest { r#ref: nope() }).await;
    assert_eq!(abort.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        c.abort(AbortRequest { r#ref: "".into() })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert!(ipcs.is_running());
    assert!(!ipcs.log_text().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_offsets_follow_the_contract() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let data = random_bytes(1000, 5);
    let d = put_blob(&mut c, "offsets", &data).await.unwrap();
    assert_eq!(
        read_range(&mut c, &d, 1001, 0).await.unwrap_err().code(),
        Code::OutOfRange
    );
    assert_eq!(
        read_range(&mut c, &d, i64::MAX, 1)
            .await
            .unwrap_err()
            .code(),
        Code::OutOfRange
    );
    assert_eq!(
        read_range(&mut c, &d, -1, 0).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert!(read_range(&mut c, &d, 1000, 0).await.unwrap().is_empty());
    assert_eq!(
        read_range(&mut c, &d, 990, i64::MAX).await.unwrap(),
        data[990..]
    );
    assert_eq!(read_range(&mut c, &d, 10, -5).await.unwrap(), data[10..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_stream_errors_follow_the_contract() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;

    // First message without a ref.
    let e = WriteSession::open(&mut c, write(0, b"abc"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Offset other than the current one.
    let (mut s, _) = WriteSession::open(&mut c, stat("wrong-offset", 0, ""))
        .await
        .unwrap();
    s.send(write(0, b"hello")).await.unwrap();
    assert_eq!(
        s.send(write(3, b"x")).await.unwrap_err().code(),
        Code::OutOfRange
    );
    let (mut s, _) = WriteSession::open(&mut c, stat("wrong-offset-2", 0, ""))
        .await
        .unwrap();
    assert_eq!(
        s.send(write(i64::MAX, b"x")).await.unwrap_err().code(),
        Code::OutOfRange
    );
    let (mut s, _) = WriteSession::open(&mut c, stat("negative-offset", 0, ""))
        .await
        .unwrap();
    assert_eq!(
        s.send(write(-7, b"x")).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Wrong size at commit: FAILED_PRECONDITION, and the ingest stays resumable.
    let data = b"some bytes to commit".to_vec();
    let d = sha256_digest(&data);
    let (mut s, _) = WriteSession::open(&mut c, stat("wrong-size", 0, ""))
        .await
        .unwrap();
    s.send(write(0, &data)).await.unwrap();
    let e = s
        .send(commit(data.len() as i64, data.len() as i64 + 1, &d))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let st = c
        .status(StatusRequest {
            r#ref: "wrong-size".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status.unwrap().offset, data.len() as i64);

    // Wrong digest at commit: FAILED_PRECONDITION, ingest stays, then a right commit works.
    let (mut s, resumed) = WriteSession::open(&mut c, stat("wrong-size", 0, ""))
        .await
        .unwrap();
    assert_eq!(resumed.offset, data.len() as i64);
    let e = s
        .send(commit(data.len() as i64, 0, UNKNOWN))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let (mut s, _) = WriteSession::open(&mut c, stat("wrong-size", 0, ""))
        .await
        .unwrap();
    assert_eq!(
        s.send(commit(data.len() as i64, data.len() as i64, &d))
            .await
            .unwrap()
            .digest,
        d
    );
    s.close();

    // Committing existing content: ALREADY_EXISTS and the ingest is dropped.
    let (mut s, _) = WriteSession::open(&mut c, stat("dup", 0, ""))
        .await
        .unwrap();
    s.send(write(0, &data)).await.unwrap();
    assert_eq!(
        s.send(commit(data.len() as i64, 0, ""))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    assert_eq!(
        c.status(StatusRequest {
            r#ref: "dup".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    // Announcing an existing digest up front: ALREADY_EXISTS at once.
    let e = WriteSession::open(&mut c, stat("dup2", 0, &d))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::AlreadyExists);

    // Unknown write action.
    let bad_action = WriteContentRequest {
        action: 7,
        r#ref: "bad-action".into(),
        ..Default::default()
    };
    assert_eq!(
        WriteSession::open(&mut c, bad_action)
            .await
            .err()
            .unwrap()
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_writer_on_a_held_ref_is_unavailable_after_waiting() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let (mut s, _) = WriteSession::open(&mut c, stat("held", 0, ""))
        .await
        .unwrap();
    s.send(write(0, b"x")).await.unwrap();
    let started = Instant::now();
    let e = WriteSession::open(&mut c, stat("held", 0, ""))
        .await
        .err()
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("locked"), "{}", e.message());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // Released with the stream: a new writer resumes it.
    s.close();
    let (_, resumed) = WriteSession::open(&mut c, stat("held", 0, ""))
        .await
        .unwrap();
    assert_eq!(resumed.offset, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_and_filters_reject_what_containerd_rejects() {
    let ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let d = put_blob(&mut c, "labels", b"labelled").await.unwrap();
    let upd = |paths: Vec<&str>, labels: HashMap<String, String>, digest: &str| UpdateRequest {
        info: Some(Info {
            digest: digest.into(),
            labels,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(String::from).collect(),
        }),
    };
    for p in ["size", "digest", "created_at", "labelz"] {
        assert_eq!(
            c.update(upd(vec![p], HashMap::new(), &d))
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument,
            "{p}"
        );
    }
    assert_eq!(
        c.update(upd(vec!["labels"], HashMap::new(), UNKNOWN))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let huge = HashMap::from([("k".to_string(), "v".repeat(5000))]);
    assert_eq!(
        c.update(upd(vec!["labels.k"], huge, &d))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let no_info = UpdateRequest {
        info: None,
        update_mask: None,
    };
    assert_eq!(
        c.update(no_info).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let ok = c
        .update(upd(
            vec!["labels.a"],
            HashMap::from([("a".into(), "1".into())]),
            &d,
        ))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().info.unwrap().labels["a"], "1");

    for bad in [
        "labels.a==",
        "==1",
        "labels.a<>1",
        "labels.a~=(",
        "labels.\"a",
    ] {
        let l = c
            .list(ListContentRequest {
                filters: vec![bad.into()],
            })
            .await;
        let code = match l {
            Err(e) => e.code(),
            Ok(s) => s.into_inner().message().await.unwrap_err().code(),
        };
        assert_eq!(code, Code::InvalidArgument, "{bad}");
        let e = c
            .list_statuses(ListStatusesRequest {
                filters: vec![bad.into()],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
    assert_eq!(listed(&mut c, "labels.a==1").await, 1);
    assert_eq!(listed(&mut c, "labels.a==2").await, 0);
}

/// How many blobs a List with `filter` returns over its whole stream.
async fn listed(
    c: &mut ipcs::server::proto::content_client::ContentClient<tonic::transport::Channel>,
    filter: &str,
) -> usize {
    let mut s = c
        .list(ListContentRequest {
            filters: vec![filter.into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(m) = s.message().await.unwrap() {
        n += m.info.len();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_like_refs_touch_nothing_outside_the_data_dir() {
    let mut ipcs = Ipcs::start().await;
    let mut c = ipcs.content().await;
    let before: Vec<_> = files_under(&ipcs.dir)
        .into_iter()
        .filter(|f| !f.starts_with("data/"))
        .collect();
    let refs = [
        "../../x",
        "/etc/ipcs-evil",
        "../data/index.redb",
        "a/../../../b",
        "..",
        ".",
    ];
    for r in refs {
        let (mut s, _) = WriteSession::open(&mut c, stat(r, 0, "")).await.unwrap();
        s.send(write(0, b"payload")).await.unwrap();
        s.close();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!std::path::Path::new("/etc/ipcs-evil").exists());
    assert!(!ipcs.dir.parent().unwrap().join("x").exists());
    let after: Vec<_> = files_under(&ipcs.dir)
        .into_iter()
        .filter(|f| !f.starts_with("data/"))
        .collect();
    assert_eq!(before, after, "files appeared outside the data dir");
    let ingests = files_under(&ipcs.data.join("ingest"));
    assert_eq!(ingests.len(), refs.len());
    assert!(ingests
        .iter()
        .all(|f| f.ends_with("/data") && !f.contains("..")));
    let statuses = c
        .list_statuses(ListStatusesRequest { filters: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses.statuses.len(), refs.len());
    for r in refs {
        c.abort(AbortRequest { r#ref: r.into() }).await.unwrap();
    }
    assert!(files_under(&ipcs.data.join("ingest")).is_empty());
    assert!(ipcs.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_kubo_is_a_clear_error_not_unavailable() {
    // Nothing listens on port 9 of loopback. A commit that waits for Kubo's import
    // (by default the import follows the commit: tests/later_import.rs).
    let ipcs = Ipcs::start_with(
        "http://127.0.0.1:9".into(),
        vec![("IPCS_IMPORT_AFTER_COMMIT".into(), "false".into())],
    )
    .await;
    let mut c = ipcs.content().await;
    let data = b"cannot be published".to_vec();
    let started = Instant::now();
    let e = put_blob(&mut c, "no-kubo", &data).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_ne!(e.code(), Code::Unavailable);
    assert!(e.message().contains("127.0.0.1:9"), "{}", e.message());
    // Nothing is lost: the ingest is still there to commit later.
    let st = c
        .status(StatusRequest {
            r#ref: "no-kubo".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status.unwrap().offset, data.len() as i64);
}
