//! containerd's diff service on the ipcs socket, against a real `ipcs serve` and Kubo:
//! Apply of a committed layer into a bind mount and an overlay upperdir (also after the
//! blob left the cache, so it comes from Kubo), the diffID in the response, and the codes
//! containerd acts on (UNIMPLEMENTED moves its diff service to the next differ).
mod common;

use common::*;
use ipcs::server::proto::containerd::services::diff::v1::diff_client::DiffClient;
use ipcs::server::proto::containerd::services::diff::v1::{ApplyRequest, DiffRequest};
use ipcs::server::proto::containerd::types::{Descriptor, Mount};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use tonic::Code;

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn request(media_type: &str, digest: &str, size: usize, mounts: Vec<Mount>) -> ApplyRequest {
    ApplyRequest {
        diff: Some(Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size: size as i64,
            annotations: Default::default(),
        }),
        mounts,
        payloads: Default::default(),
        sync_fs: false,
    }
}

fn bind(dir: &std::path::Path) -> Mount {
    Mount {
        r#type: "bind".into(),
        source: dir.display().to_string(),
        target: String::new(),
        options: vec!["rbind".into(), "rw".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_into_bind_and_overlay_mounts() {
    // A tiny cache: the first layer is evicted by the second and must come from Kubo.
    let ipcs = Ipcs::start_with(
        kubo_api(),
        vec![("IPCS_CACHE_MAX_BYTES".into(), "1".into())],
    )
    .await;
    let mut content = ipcs.content().await;
    let lower_tar = layer(&[("etc/hello", b"hello from the lower layer\n")]);
    let lower = gzip(&lower_tar);
    let upper_tar = layer(&[("etc/.wh.hello", b""), ("etc/new", b"new\n")]);
    let upper = gzip(&upper_tar);
    let lower_d = put_blob(&mut content, "layer-lower", &lower).await.unwrap();
    let upper_d = put_blob(&mut content, "layer-upper", &upper).await.unwrap();

    let mut diff = DiffClient::new(ipcs::server::client::connect(&ipcs.socket).await.unwrap());
    let snaps = tempfile::tempdir().unwrap();
    let (l, u, w) = (
        snaps.path().join("1/fs"),
        snaps.path().join("2/fs"),
        snaps.path().join("2/work"),
    );
    for d in [&l, &u, &w] {
        std::fs::create_dir_all(d).unwrap();
    }
    let resp = diff
        .apply(request(GZIP, &lower_d, lower.len(), vec![bind(&l)]))
        .await
        .unwrap()
        .into_inner();
    let applied = resp.applied.unwrap();
    assert_eq!(applied.media_type, "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(applied.digest, sha256_digest(&lower_tar));
    assert_eq!(applied.size as usize, lower_tar.len());
    let hello = l.join("etc/hello");
    assert_eq!(
        std::fs::read(&hello).unwrap(),
        b"hello from the lower layer\n"
    );
    assert_eq!(std::fs::metadata(&hello).unwrap().uid(), 1234);

    let overlay = Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            "index=off".into(),
            format!("workdir={}", w.display()),
            format!("upperdir={}", u.display()),
            format!("lowerdir={}", l.display()),
        ],
    };
    let resp = diff
        .apply(request(GZIP, &upper_d, upper.len(), vec![overlay]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.applied.unwrap().digest, sha256_digest(&upper_tar));
    let wh = std::fs::symlink_metadata(u.join("etc/hello")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(std::fs::read(u.join("etc/new")).unwrap(), b"new\n");

    // Evicted from the cache again by the upper layer: fetched from Kubo and verified.
    let again = tempfile::tempdir().unwrap();
    let resp = diff
        .apply(request(
            GZIP,
            &lower_d,
            lower.len(),
            vec![bind(again.path())],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.applied.unwrap().digest, sha256_digest(&lower_tar));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codes_containerd_acts_on() {
    let ipcs = Ipcs::start().await;
    let mut content = ipcs.content().await;
    let plain = layer(&[("f", b"x")]);
    let d = put_blob(&mut content, "layer-plain", &plain).await.unwrap();
    let mut diff = DiffClient::new(ipcs::server::client::connect(&ipcs.socket).await.unwrap());
    let dir = tempfile::tempdir().unwrap();

    // Encrypted layers need containerd's stream processors: the next differ's job.
    let e = diff
        .apply(request(
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            &d,
            plain.len(),
            vec![bind(dir.path())],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    let mut with_payload = request(
        "application/vnd.oci.image.layer.v1.tar",
        &d,
        plain.len(),
        vec![bind(dir.path())],
    );
    with_payload.payloads.insert(
        "io.containerd.ocicrypt.decoder.v1".into(),
        prost_types::Any::default(),
    );
    let e = diff.apply(with_payload).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    let e = diff.diff(DiffRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    let missing = sha256_digest(b"not stored");
    let e = diff
        .apply(request(
            "application/vnd.oci.image.layer.v1.tar",
            &missing,
            1,
            vec![bind(dir.path())],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // A layer that is not a tar: a clear error, nothing half-done is reported as applied.
    let junk = vec![0x55u8; 4096];
    let jd = put_blob(&mut content, "layer-junk", &junk).await.unwrap();
    let e = diff
        .apply(request(
            "application/vnd.oci.image.layer.v1.tar",
            &jd,
            junk.len(),
            vec![bind(dir.path())],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("invalid tar header"), "{e:?}");

    // And the plain layer itself applies.
    let resp = diff
        .apply(request(
            "application/vnd.oci.image.layer.v1.tar",
            &d,
            plain.len(),
            vec![bind(dir.path())],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.applied.unwrap().digest, sha256_digest(&plain));
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x");
}
