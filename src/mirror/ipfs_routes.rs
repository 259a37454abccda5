//! nerdctl's read-only registry scheme for images in IPFS, with no registry anywhere:
//! `/v2/ipfs/<CID>/manifests/latest`, `/v2/ipfs/<CID>/manifests/<digest>` and
//! `/v2/ipfs/<CID>/blobs/<digest>`. `<CID>` names a small JSON OCI descriptor of the image's
//! top index or manifest (what `nerdctl push ipfs://` prints); every descriptor below it
//! carries `urls: ["ipfs://<CID>"]`. So `ctr`, `nerdctl` and `crictl` pull
//! `127.0.0.1:<mirror>/ipfs/<CID>:latest` like any image.
//!
//! Nothing is served from IPFS directly: the root descriptor (read through Kubo `cat`,
//! bounded) and the `ipfs://` URLs of the manifests below it become digest → CID hints, and
//! each blob is then adopted by the store like a blob from peers — fetched, hashed, served
//! only if it matches its digest, pinned. A digest that the image named by `<CID>` does not
//! reference is 404, as in nerdctl's own server.
use crate::backend::Reach;
use crate::cid::Cid;
use crate::digest::Digest;
use crate::mirror::routes::{blob, empty, manifest_by_digest, BlobRequest, Body};
use crate::mirror::Mirror;
use crate::store::MAX_MANIFEST_BYTES;
use futures::StreamExt;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use std::collections::VecDeque;
use std::time::Duration;

/// nerdctl's root descriptor is ~200 bytes; anything much larger is not one.
const MAX_ROOT_BYTES: usize = 64 << 10;
/// Manifests read while looking for a digest: an index of many platforms is fine, an index
/// naming thousands cannot keep the mirror busy.
const MAX_WALK: usize = 64;
/// Reading the root descriptor: one or a few blocks, possibly from peers.
const ROOT_DEADLINE: Duration = Duration::from_secs(60);

const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What a request under `/v2/ipfs/` asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IpfsRequest<'a> {
    /// `manifests/latest`: the root's target itself.
    Latest {
        cid: &'a str,
    },
    Manifest {
        cid: &'a str,
        digest: &'a str,
    },
    Blob {
        cid: &'a str,
        digest: &'a str,
    },
}

/// Parses `/v2/ipfs/<cid>/(manifests|blobs)/<ref>`; None for paths outside `/v2/ipfs/`
/// (the ordinary routes see those). Everything under it belongs to this scheme, as in
/// nerdctl: a malformed path, CID or reference is Some(Err) and gets 404.
pub(super) fn parse(path: &str) -> Option<Result<IpfsRequest<'_>, String>> {
    let rest = path.strip_prefix("/v2/ipfs/")?;
    let mut parts = rest.splitn(3, '/');
    let (Some(cid), Some(kind), Some(reference)) = (parts.next(), parts.next(), parts.next())
    else {
        return Some(Err(format!("unknown path {:.200}", path)));
    };
    if kind != "manifests" && kind != "blobs" {
        return Some(Err(format!("unknown path {:.200}", path)));
    }
    if !is_cid(cid) {
        return Some(Err(format!("not a CID: {:.80}", cid)));
    }
    Some(match (kind, reference) {
        ("manifests", "latest") => Ok(IpfsRequest::Latest { cid }),
        (_, r) if r.parse::<Digest>().is_err() => Err(format!(
            "{kind} of ipfs/{cid}: {:.80} is not a digest (the only tag is latest)",
            r
        )),
        ("manifests", digest) => Ok(IpfsRequest::Manifest { cid, digest }),
        (_, digest) => Ok(IpfsRequest::Blob { cid, digest }),
    })
}

/// CIDs are multibase strings: base32 (`bafy…`) or base58btc (`Qm…`), nothing else.
fn is_cid(s: &str) -> bool {
    (2..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

/// The image a root CID names: its top index or manifest, and where that lives in IPFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Root {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub cid: String,
}

/// Validates the bytes behind a root CID: one JSON descriptor of a manifest or index, of
/// a sane size, with an `ipfs://<CID>` URL.
pub(super) fn parse_root(json: &[u8]) -> Result<Root, String> {
    let d: RawDescriptor =
        serde_json::from_slice(json).map_err(|e| format!("not a JSON OCI descriptor: {e}"))?;
    if !MANIFEST_TYPES.contains(&d.media_type.as_str()) {
        return Err(format!(
            "descriptor of {:.80}, not of an image manifest or index",
            d.media_type
        ));
    }
    let digest: Digest = d
        .digest
        .parse()
        .map_err(|e| format!("descriptor digest: {e}"))?;
    if d.size <= 0 || d.size as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "descriptor size {} outside 1..={MAX_MANIFEST_BYTES}",
            d.size
        ));
    }
    let cid = d
        .urls
        .iter()
        .filter_map(|u| u.strip_prefix("ipfs://"))
        .find(|c| is_cid(c))
        .ok_or("descriptor has no ipfs://<CID> URL")?
        .to_string();
    Ok(Root {
        media_type: d.media_type,
        digest,
        size: d.size as u64,
        cid,
    })
}

/// Answers a request under `/v2/ipfs/`, or None if the path is not one.
pub(super) async fn handle(m: &Mirror, head: bool, path: &str) -> Option<Response<Body>> {
    let req = match parse(path)? {
        Ok(r) => r,
        Err(why) => {
            tracing::info!("mirror ipfs: {why}");
            return Some(empty(StatusCode::NOT_FOUND));
        }
    };
    let cid = match &req {
        IpfsRequest::Latest { cid }
        | IpfsRequest::Manifest { cid, .. }
        | IpfsRequest::Blob { cid, .. } => *cid,
    };
    let root = match root(m, cid).await {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(%cid, "mirror ipfs: root descriptor: {why}");
            return Some(empty(StatusCode::NOT_FOUND));
        }
    };
    Some(match req {
        IpfsRequest::Latest { .. } => {
            manifest_by_digest(m, head, &root.digest, Some(&root.media_type)).await
        }
        IpfsRequest::Manifest { digest, .. } => match member(m, &root, digest).await {
            Some(d) => manifest_by_digest(m, head, &d, None).await,
            None => empty(StatusCode::NOT_FOUND),
        },
        IpfsRequest::Blob { digest, .. } => match member(m, &root, digest).await {
            Some(d) => blob(m, head, &d, &BlobRequest::default()).await,
            None => empty(StatusCode::NOT_FOUND),
        },
    })
}

/// The digest, if the image under `root` references it.
async fn member(m: &Mirror, root: &Root, digest: &str) -> Option<Digest> {
    let d = digest.parse::<Digest>().ok()?;
    if references(m, root, &d).await {
        return Some(d);
    }
    tracing::info!(cid = %root.cid, digest = %d, "mirror ipfs: not part of this image");
    None
}

/// Reads and checks the root descriptor, and teaches the peers' resolver where its target
/// lives (the store's read-miss hook then adopts it from there).
async fn root(m: &Mirror, cid: &str) -> Result<Root, String> {
    let cid: Cid = cid.parse().map_err(|e| format!("{e}"))?;
    let backend = m.store.backend();
    let read = async {
        let mut s = backend
            .cat(&cid, 0, MAX_ROOT_BYTES as u64 + 1, Reach::Network)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
            if buf.len() > MAX_ROOT_BYTES {
                return Err(format!("more than {MAX_ROOT_BYTES} bytes"));
            }
        }
        Ok(buf)
    };
    let bytes = tokio::time::timeout(ROOT_DEADLINE, read)
        .await
        .map_err(|_| format!("not read within {ROOT_DEADLINE:?}"))??;
    let root = parse_root(&bytes)?;
    m.peers
        .resolver()
        .learn_hint(&root.digest.to_string(), &root.cid, root.size);
    Ok(root)
}

/// Whether `d` is the root or a blob some manifest under it names. Each manifest read on
/// the way is adopted (verified) by the store and its `ipfs://` URLs learnt, so the blob
/// served next is adopted from its own URL.
async fn references(m: &Mirror, root: &Root, d: &Digest) -> bool {
    if *d == root.digest {
        return true;
    }
    let mut queue = VecDeque::from([root.digest.clone()]);
    let mut walked = 0;
    while let Some(manifest) = queue.pop_front() {
        if walked == MAX_WALK {
            break;
        }
        walked += 1;
        let Some(bytes) = read_manifest(m, &manifest).await else {
            continue;
        };
        m.peers.resolver().learn_from_manifest(&bytes);
        for (child, is_manifest) in children(&bytes) {
            if child == *d {
                return true;
            }
            if is_manifest {
                queue.push_back(child);
            }
        }
    }
    false
}

/// A manifest's bytes through the store (adopting it by its hint if needed).
async fn read_manifest(m: &Mirror, d: &Digest) -> Option<Vec<u8>> {
    let info = m.store.info(d).await.ok()?;
    if info.size > MAX_MANIFEST_BYTES {
        return None;
    }
    let mut s = m.store.read(d, 0, 0).await.ok()?;
    let mut buf = Vec::with_capacity(info.size as usize);
    while let Some(chunk) = s.next().await {
        buf.extend_from_slice(&chunk.ok()?.1);
    }
    Some(buf)
}

#[derive(Deserialize)]
struct Child {
    digest: String,
}

#[derive(Deserialize)]
struct ManifestOrIndex {
    #[serde(default)]
    config: Option<Child>,
    #[serde(default)]
    layers: Vec<Child>,
    #[serde(default)]
    manifests: Vec<Child>,
}

/// Every valid digest a manifest or index names, flagged true for index entries (which
/// are manifests to walk in turn).
fn children(json: &[u8]) -> Vec<(Digest, bool)> {
    let Ok(m) = serde_json::from_slice::<ManifestOrIndex>(json) else {
        return Vec::new();
    };
    let blobs = m.config.iter().chain(&m.layers).map(|c| (c, false));
    let manifests = m.manifests.iter().map(|c| (c, true));
    blobs
        .chain(manifests)
        .filter_map(|(c, idx)| c.digest.parse().ok().map(|d| (d, idx)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const CID: &str = "bafkreia5bbzvpgvy66eagoc4m5cppt5keesn5b3rcmqi3rqwiqo4t6jvxy";

    #[test]
    fn parses_the_registry_scheme() {
        assert_eq!(
            parse(&format!("/v2/ipfs/{CID}/manifests/latest")),
            Some(Ok(IpfsRequest::Latest { cid: CID }))
        );
        assert_eq!(
            parse(&format!("/v2/ipfs/{CID}/blobs/{D}")),
            Some(Ok(IpfsRequest::Blob {
                cid: CID,
                digest: D
            }))
        );
        assert_eq!(
            parse(&format!("/v2/ipfs/{CID}/manifests/{D}")),
            Some(Ok(IpfsRequest::Manifest {
                cid: CID,
                digest: D
            }))
        );
        assert_eq!(parse("/v2/ipcs/small/manifests/v1"), None);
        assert_eq!(parse("/v2/"), None);
    }

    #[test]
    fn refuses_hostile_paths() {
        for p in [
            format!("/v2/ipfs/{CID}/manifests/v1"),
            format!("/v2/ipfs/{CID}/blobs/latest"),
            format!("/v2/ipfs/{CID}/blobs/{D}/x"),
            "/v2/ipfs/../../etc/manifests/latest".to_string(),
            format!("/v2/ipfs/{}/manifests/latest", "a".repeat(129)),
            "/v2/ipfs/b%2Fc/manifests/latest".to_string(),
            "/v2/ipfs//manifests/latest".to_string(),
            format!("/v2/ipfs/{CID}/tags/list"),
            format!("/v2/ipfs/{CID}"),
            "/v2/ipfs/".to_string(),
        ] {
            assert!(matches!(parse(&p), Some(Err(_))), "{p}");
        }
    }

    fn root_json(media_type: &str, size: i64, urls: &str) -> String {
        format!(r#"{{"mediaType":"{media_type}","digest":"{D}","size":{size},"urls":{urls}}}"#)
    }

    #[test]
    fn reads_nerdctls_root_descriptor() {
        let r = parse_root(
            root_json(
                "application/vnd.oci.image.index.v1+json",
                466,
                &format!(r#"["ipfs://{CID}"]"#),
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.digest.to_string(), D);
        assert_eq!((r.size, r.cid.as_str()), (466, CID));
    }

    #[test]
    fn refuses_bad_root_descriptors() {
        let ok_urls = format!(r#"["ipfs://{CID}"]"#);
        for bad in [
            "".to_string(),
            "\u{1f}\u{8b} gzip".to_string(),
            "[]".to_string(),
            root_json("application/vnd.oci.image.layer.v1.tar+gzip", 10, &ok_urls),
            root_json("application/vnd.oci.image.manifest.v1+json", 0, &ok_urls),
            root_json("application/vnd.oci.image.manifest.v1+json", -1, &ok_urls),
            root_json("application/vnd.oci.image.manifest.v1+json", 1 << 40, &ok_urls),
            root_json("application/vnd.oci.image.manifest.v1+json", 10, "[]"),
            root_json(
                "application/vnd.oci.image.manifest.v1+json",
                10,
                r#"["https://example/x","ipfs://../x"]"#,
            ),
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:zz","size":3,"urls":["ipfs://bafy"]}"#.to_string(),
        ] {
            assert!(parse_root(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_children_of_manifests_and_indexes() {
        let m = format!(
            r#"{{"config":{{"digest":"{D}"}},"layers":[{{"digest":"nope"}},{{"digest":"{D}"}}]}}"#
        );
        assert_eq!(children(m.as_bytes()).len(), 2);
        let i = format!(r#"{{"manifests":[{{"digest":"{D}"}}]}}"#);
        assert!(children(i.as_bytes())[0].1);
        assert!(children(b"{not json").is_empty());
    }
}
