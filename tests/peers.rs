//! Blobs a node never stored are adopted from IPFS only after their bytes hash to the
//! digest; a wrong digest → CID mapping is caught, logged and ignored (NOT_FOUND, so
//! containerd falls back to the registry). A mapping whose size disagrees with the DAG's
//! root is refused before the DAG is fetched.
mod common;

use common::*;
use ipcs::server::proto::InfoRequest;
use tonic::Code;

fn manifest_with_urls(entries: &[(&str, usize, &str)]) -> Vec<u8> {
    let layers: Vec<_> = entries
        .iter()
        .map(|(d, size, cid)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d, "size": size, "urls": [format!("ipfs://{cid}")]
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": layers,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ipfs_urls_in_manifests_let_a_node_adopt_verified_blobs() {
    // Node A publishes two blobs to IPFS.
    let a = Ipcs::start().await;
    let mut ca = a.content().await;
    let good = random_bytes(900_000, 21);
    let other = random_bytes(1000, 22);
    let dg = put_blob(&mut ca, "a/good", &good).await.unwrap();
    let dother = put_blob(&mut ca, "a/other", &other).await.unwrap();
    let cids = a.cids().await;
    // A stays up: kept once, its stored files are the bytes Kubo serves to B.
    let _a = a;

    // Node B (same IPFS network, empty store) learns locations from a manifest: one right,
    // one pointing a digest at the wrong content. Its metrics count each adoption's outcome.
    let metrics_dir = tempfile::tempdir().unwrap();
    let metrics_sock = metrics_dir.path().join("metrics.sock");
    let b = Ipcs::start_with(
        kubo_api(),
        vec![(
            "IPCS_METRICS_LISTEN".into(),
            format!("unix://{}", metrics_sock.display()),
        )],
    )
    .await;
    let mut cb = b.content().await;
    let wrong_digest = sha256_digest(b"content nobody has");
    let wrong_size = sha256_digest(b"a size nobody has");
    let manifest = manifest_with_urls(&[
        (&dg, good.len(), &cids[&dg]),
        (&wrong_digest, other.len(), &cids[&dother]),
        (&wrong_size, other.len() + 4000, &cids[&dother]),
    ]);
    put_blob(&mut cb, "b/manifest", &manifest).await.unwrap();

    let info = cb
        .info(InfoRequest { digest: dg.clone() })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.size as usize, good.len());
    assert_eq!(read_range(&mut cb, &dg, 0, 0).await.unwrap(), good);
    assert_eq!(b.cids().await.get(&dg), Some(&cids[&dg]));

    let e = cb
        .info(InfoRequest {
            digest: wrong_digest.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        read_range(&mut cb, &wrong_digest, 0, 0)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(!b.cids().await.contains_key(&wrong_digest));

    let e = cb
        .info(InfoRequest {
            digest: wrong_size.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(!b.cids().await.contains_key(&wrong_size));

    // One adoption each way, whether the Info or the manifest's prefetch tried it first; no
    // byte of the adopted blob counted as Kubo's.
    let (code, text) = metrics_get(&metrics_sock, "/metrics").await;
    assert_eq!(code, 200);
    let outcome = |o: &str| {
        metric(
            &text,
            &format!("ipcs_peer_adoptions_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("ok"), 1.0, "{text}");
    assert_eq!(outcome("refused_digest"), 1.0, "{text}");
    assert_eq!(outcome("refused_size"), 1.0, "{text}");
    assert_eq!(outcome("failed"), 0.0, "{text}");
    let served = |s: &str| metric(&text, &format!("ipcs_served_bytes_total{{source=\"{s}\"}}"));
    assert!(served("peers") >= good.len() as f64, "{text}");
    assert_eq!(served("kubo"), 0.0, "{text}");
    let fallbacks: f64 = text
        .lines()
        .filter(|l| l.starts_with("ipcs_registry_fallbacks_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        fallbacks >= 2.0,
        "the two refused digests left containerd to the registry: {text}"
    );
    assert!(
        metric(
            &text,
            r#"ipcs_rpc_requests_total{method="Info",code="NotFound"}"#
        ) >= 2.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            r#"ipcs_kubo_call_duration_seconds_count{call="stat"}"#
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_from_peers_brings_its_layers_without_being_asked() {
    let a = Ipcs::start().await;
    let mut ca = a.content().await;
    let l1 = random_bytes(700_000, 31);
    let l2 = random_bytes(300_000, 32);
    let d1 = put_blob(&mut ca, "a/l1", &l1).await.unwrap();
    let d2 = put_blob(&mut ca, "a/l2", &l2).await.unwrap();
    let cids = a.cids().await;
    let image = manifest_with_urls(&[(&d1, l1.len(), &cids[&d1]), (&d2, l2.len(), &cids[&d2])]);
    let dimage = put_blob(&mut ca, "a/image", &image).await.unwrap();
    let cimage = a.cids().await[&dimage].clone();
    // A stays up: kept once, its stored files are the bytes Kubo serves to B.
    let _a = a;

    // B only learns where the image manifest is; the manifest then names its layers.
    let b = Ipcs::start().await;
    let mut cb = b.content().await;
    let pointer = manifest_with_urls(&[(&dimage, image.len(), &cimage)]);
    put_blob(&mut cb, "b/pointer", &pointer).await.unwrap();
    let info = cb
        .info(InfoRequest {
            digest: dimage.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.size as usize, image.len());

    // Nobody asks for the layers: the prefetch adopts them (bounded wait).
    let mut held = b.cids().await;
    for _ in 0..100 {
        if held.contains_key(&d1) && held.contains_key(&d2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        held = b.cids().await;
    }
    assert_eq!(held.get(&d1), Some(&cids[&d1]), "layer 1 not prefetched");
    assert_eq!(held.get(&d2), Some(&cids[&d2]), "layer 2 not prefetched");
    assert_eq!(read_range(&mut cb, &d1, 0, 0).await.unwrap(), l1);
}
