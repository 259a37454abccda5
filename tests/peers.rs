//! Blobs a node never stored are adopted from IPFS only after their bytes hash to the
//! digest; a wrong digest → CID mapping is caught, logged and ignored (NOT_FOUND, so
//! containerd falls back to the registry).
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
    drop(a);

    // Node B (same IPFS network, empty store) learns locations from a manifest: one right,
    // one pointing a digest at the wrong content.
    let b = Ipcs::start().await;
    let mut cb = b.content().await;
    let wrong_digest = sha256_digest(b"content nobody has");
    let manifest = manifest_with_urls(&[
        (&dg, good.len(), &cids[&dg]),
        (&wrong_digest, other.len(), &cids[&dother]),
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
    let log = b.log_text();
    assert!(log.contains("does not match its digest"), "{log}");
    assert!(!b.cids().await.contains_key(&wrong_digest));
}
