//! The conversion over a store on the in-memory backend (CIDs are `mem<sha256>`): what is
//! rewritten, in which bytes, and what is refused. That the CIDs equal nerdctl's is shown
//! against the real nerdctl in integration/nerdctl-ipfs.sh.
use super::{push, PlatformMatch};
use crate::backend::memory::MemoryBackend;
use crate::store::testkit;
use crate::store::StoreError;

fn sha(data: &[u8]) -> String {
    testkit::digest_of(data).to_string()
}

fn cid(data: &[u8]) -> String {
    MemoryBackend::cid_of(data).to_string()
}

async fn put(store: &crate::store::ContentStore, data: &[u8]) -> String {
    testkit::put(store, &format!("t-{}", sha(data)), data)
        .await
        .unwrap();
    sha(data)
}

fn desc(mt: &str, data: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#,
        sha(data),
        data.len()
    )
}

async fn listed(store: &crate::store::ContentStore) -> Vec<String> {
    let mut rx = store.list(&[]).unwrap();
    let mut out = Vec::new();
    while let Some(batch) = rx.recv().await {
        out.extend(batch.unwrap().into_iter().map(|i| i.digest.to_string()));
    }
    out.sort();
    out
}

async fn read(store: &crate::store::ContentStore, digest: &str) -> Vec<u8> {
    testkit::read_all(store, &digest.parse().unwrap())
        .await
        .unwrap()
}

const LAYER: &[u8] = b"layer bytes";
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;

/// A one-layer image with Docker media types (`LAYER`, `CONFIG`) put into `store`; returns
/// the descriptor of its manifest, the root a push starts from.
async fn docker_image(store: &crate::store::ContentStore) -> String {
    put(store, LAYER).await;
    put(store, CONFIG).await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[{}]}}"#,
        desc("application/vnd.docker.container.image.v1+json", CONFIG),
        desc("application/vnd.docker.image.rootfs.diff.tar.gzip", LAYER)
    );
    put(store, manifest.as_bytes()).await;
    desc(
        "application/vnd.docker.distribution.manifest.v2+json",
        manifest.as_bytes(),
    )
}

#[tokio::test]
async fn a_docker_manifest_becomes_oci_with_ipfs_urls_in_gos_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = testkit::open(dir.path()).await;
    let (layer, config) = (LAYER, CONFIG);
    let root = docker_image(&store).await;

    let out = push(&store, root.as_bytes(), &PlatformMatch::All)
        .await
        .unwrap();

    let want_manifest = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{},"urls":["ipfs://{}"]}},"#,
            r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{},"urls":["ipfs://{}"]}}]}}"#
        ),
        sha(config),
        config.len(),
        cid(config),
        sha(layer),
        layer.len(),
        cid(layer)
    );
    let want_root = format!(
        r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"urls":["ipfs://{}"]}}"#,
        sha(want_manifest.as_bytes()),
        want_manifest.len(),
        cid(want_manifest.as_bytes())
    );
    assert_eq!(String::from_utf8(out.root_json.clone()).unwrap(), want_root);
    assert_eq!(out.cid, cid(want_root.as_bytes()));
    assert_eq!(out.written, 2, "the new manifest and the root descriptor");
    // both new blobs are in the store, so the mirror and peers can serve them
    assert_eq!(
        read(&store, &sha(want_manifest.as_bytes())).await,
        want_manifest.as_bytes()
    );
    assert_eq!(
        read(&store, &sha(want_root.as_bytes())).await,
        want_root.as_bytes()
    );

    // the same push again writes nothing new and prints the same CID
    let again = push(&store, root.as_bytes(), &PlatformMatch::All)
        .await
        .unwrap();
    assert_eq!((again.cid, again.written), (out.cid, 0));
}

#[tokio::test]
async fn an_index_keeps_the_chosen_platforms_and_none_left_is_null() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = testkit::open(dir.path()).await;
    let config = br#"{"os":"linux"}"#;
    put(&store, config).await;
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}}"#,
        desc("application/vnd.oci.image.config.v1+json", config)
    );
    put(&store, m.as_bytes()).await;
    let with_platform = |arch: &str| {
        let d = desc("application/vnd.oci.image.manifest.v1+json", m.as_bytes());
        format!(
            r#"{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            &d[..d.len() - 1]
        )
    };
    // arm64's manifest is not in the store: it must not be needed when arm64 is not kept
    let arm = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":5,"platform":{"architecture":"arm64","os":"linux"}}"#;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{arm}],"annotations":{{"k":"v"}}}}"#,
        with_platform("amd64")
    );
    put(&store, index.as_bytes()).await;
    let root = desc("application/vnd.oci.image.index.v1+json", index.as_bytes());

    // all platforms: the missing arm64 manifest is an error naming it, and the amd64
    // manifest rewritten before it failed (first: nothing of it is stored yet) is not left behind
    let before = listed(&store).await;
    let err = push(&store, root.as_bytes(), &PlatformMatch::All)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("sha256:1111"), "{err}");
    assert_eq!(
        listed(&store).await,
        before,
        "a failed export leaves nothing"
    );

    let amd = PlatformMatch::new(false, &["linux/amd64".into()]).unwrap();
    let out = push(&store, root.as_bytes(), &amd).await.unwrap();
    let root_out: serde_json::Value = serde_json::from_slice(&out.root_json).unwrap();
    let new_index = read(&store, root_out["digest"].as_str().unwrap()).await;
    let v: serde_json::Value = serde_json::from_slice(&new_index).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["platform"]["architecture"], "amd64");
    assert_eq!(v["annotations"]["k"], "v");
    let new_manifest = read(&store, v["manifests"][0]["digest"].as_str().unwrap()).await;
    assert!(String::from_utf8(new_manifest)
        .unwrap()
        .contains(r#""layers":[]"#));

    // nothing kept: Go writes `"manifests":null`
    let s390 = PlatformMatch::new(false, &["linux/s390x".into()]).unwrap();
    let out = push(&store, root.as_bytes(), &s390).await.unwrap();
    let root_out: serde_json::Value = serde_json::from_slice(&out.root_json).unwrap();
    let new_index = read(&store, root_out["digest"].as_str().unwrap()).await;
    assert!(String::from_utf8(new_index)
        .unwrap()
        .contains(r#""manifests":null"#));
}

#[tokio::test]
async fn hostile_roots_and_manifests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = testkit::open(dir.path()).await;
    let all = PlatformMatch::All;
    for bad in [
        &b"not json"[..],
        br#"{"mediaType":"x","digest":"nope","size":1}"#,
    ] {
        let err = push(&store, bad, &all).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidArgument(_)), "{err:?}");
    }
    // a "manifest" that is not JSON
    let junk = b"\x00\x01 not a manifest";
    put(&store, junk).await;
    let root = desc("application/vnd.oci.image.manifest.v1+json", junk);
    let err = push(&store, root.as_bytes(), &all).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err:?}");
    // an index that names itself cannot recurse forever: its own digest is its child, so
    // a self-referencing index is impossible; a chain deeper than the limit is refused
    let mut child = desc("application/vnd.oci.image.manifest.v1+json", junk);
    for _ in 0..10 {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{child}]}}"#
        );
        put(&store, idx.as_bytes()).await;
        child = desc("application/vnd.oci.image.index.v1+json", idx.as_bytes());
    }
    let err = push(&store, child.as_bytes(), &all).await.unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
}

/// The exported JSON is referenced by no image in containerd, whose garbage collection
/// deletes every blob its metadata does not name, right after the push or even during it.
/// The CIDs the export printed stay pinned through that, under a pin that is not this
/// store's (so Delete leaves it).
#[tokio::test]
async fn the_export_stays_pinned_when_containerds_gc_deletes_its_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = testkit::open(dir.path()).await;
    let root = docker_image(&store).await;
    let before = listed(&store).await;
    let pushed = push(&store, root.as_bytes(), &PlatformMatch::All)
        .await
        .unwrap();
    let new: Vec<String> = listed(&store)
        .await
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(
        new.len(),
        2,
        "the converted manifest and the root descriptor"
    );
    for d in &new {
        store.delete(&d.parse().unwrap()).await.unwrap();
    }
    let root_cid: crate::cid::Cid = pushed.cid.parse().unwrap();
    assert!(backend.is_pinned(&root_cid), "the printed CID lost its pin");
    assert_eq!(root_cid.to_string(), cid(&pushed.root_json));
    let converted: serde_json::Value = serde_json::from_slice(&pushed.root_json).unwrap();
    let manifest_cid: crate::cid::Cid = converted["urls"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("ipfs://")
        .parse()
        .unwrap();
    assert!(
        backend.is_pinned(&manifest_cid),
        "the manifest {manifest_cid} lost its pin ({})",
        String::from_utf8_lossy(&pushed.root_json)
    );
}
