//! Configured limits (max_open_ingests, max_label_bytes, max_ref_bytes, max_message_bytes)
//! reach containerd as the contract's codes, with messages naming the config key, and
//! the store keeps working once the pressure is gone.
mod common;

use common::*;
use ipcs::server::proto::*;
use std::collections::HashMap;
use tonic::Code;

fn env(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_ingests_beyond_the_limit_are_resource_exhausted() {
    let ipcs = Ipcs::start_with(kubo_api(), env(&[("IPCS_MAX_OPEN_INGESTS", "16")])).await;
    let mut c = ipcs.content().await;
    let mut open = Vec::new();
    for i in 0..16 {
        let (s, _) = WriteSession::open(&mut c, stat(&format!("held-{i}"), 0, ""))
            .await
            .unwrap();
        open.push(s);
    }
    let e = WriteSession::open(&mut c, stat("one-too-many", 0, ""))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_open_ingests = 16"), "{e:?}");
    // GC must still work at the limit: Abort is not counted.
    let e = c
        .abort(AbortRequest {
            r#ref: "never-opened".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // A released slot is usable again at once.
    open.pop().unwrap().close();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match put_blob(&mut c, "after-release", b"fits again").await {
            Ok(_) => break,
            Err(e)
                if e.code() == Code::ResourceExhausted && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    drop(open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn labels_and_refs_beyond_the_limits_are_invalid_argument() {
    let ipcs = Ipcs::start_with(
        kubo_api(),
        env(&[
            ("IPCS_MAX_LABEL_BYTES", "8192"),
            ("IPCS_MAX_REF_BYTES", "300"),
        ]),
    )
    .await;
    let mut c = ipcs.content().await;
    // Commit with labels over the total: refused, the ingest stays resumable.
    let data = b"labelled blob";
    let d = sha256_digest(data);
    let (mut s, _) = WriteSession::open(&mut c, stat("lbl", data.len() as i64, ""))
        .await
        .unwrap();
    s.send(write(0, data)).await.unwrap();
    let mut big = commit(data.len() as i64, data.len() as i64, &d);
    for k in ["a", "b", "c"] {
        big.labels.insert(k.into(), "v".repeat(3000));
    }
    let e = s.send(big).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_label_bytes = 8192"), "{e:?}");
    s.close();
    let st = c
        .status(StatusRequest {
            r#ref: "lbl".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.offset, data.len() as i64);
    // Within the limit it commits and the labels are stored.
    let (mut s, _) = WriteSession::open(&mut c, stat("lbl", 0, ""))
        .await
        .unwrap();
    let mut ok = commit(data.len() as i64, data.len() as i64, &d);
    ok.labels.insert("a".into(), "v".repeat(4000));
    ok.labels.insert("b".into(), "v".repeat(4000));
    s.send(ok).await.unwrap();
    s.close();
    // Update that would push the merged labels over the total.
    let upd = UpdateRequest {
        info: Some(Info {
            digest: d.clone(),
            labels: HashMap::from([("c".to_string(), "v".repeat(4000))]),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["labels.c".into()],
        }),
    };
    let e = c.update(upd).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_label_bytes"), "{e:?}");
    let info = c
        .info(InfoRequest { digest: d.clone() })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.labels.len(), 2);
    // Refs: 300 bytes pass, 301 do not (Write and Abort alike).
    put_blob(&mut c, &"r".repeat(300), b"ref at the limit")
        .await
        .unwrap();
    let e = WriteSession::open(&mut c, stat(&"r".repeat(301), 0, ""))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_ref_bytes = 300"), "{e:?}");
    let e = c
        .abort(AbortRequest {
            r#ref: "r".repeat(301),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_over_max_message_bytes_are_refused_not_fatal() {
    let ipcs = Ipcs::start_with(
        kubo_api(),
        env(&[("IPCS_MAX_MESSAGE_BYTES", &(16u32 << 20).to_string())]),
    )
    .await;
    let mut c = ipcs.content().await;
    let big = vec![7u8; (16 << 20) + 1024];
    let e = match WriteSession::open(&mut c, stat("huge-msg", 0, "")).await {
        Ok((mut s, _)) => s.send(write(0, &big)).await.unwrap_err(),
        Err(e) => e,
    };
    // tonic refuses the frame before ipcs sees it: OUT_OF_RANGE (or RESOURCE_EXHAUSTED in
    // other tonic versions); never UNAVAILABLE, which containerd would retry forever.
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    let mut c = ipcs.content().await;
    put_blob(&mut c, "after-huge", b"still works")
        .await
        .unwrap();
    let _ = ipcs;
}
