//! An image's blobs, found from its target descriptor in the store: an index names
//! manifests, a manifest names a config and layers. Each blob comes with its DAG's CID and
//! the labels containerd's garbage collector follows to its children
//! (`containerd.io/gc.ref.content.*`, as a pull sets them), so an imported image keeps
//! its blobs alive in containerd.
//!
//! A platform an index names but the store lacks, wholly or in part, is skipped (a pull
//! fetches one platform of a multi-platform image, sometimes with the other platforms'
//! manifests); a missing config or layer of any other manifest makes the image
//! incomplete, which is an error.
use crate::cid::Cid;
use crate::digest::Digest;
use crate::store::{ContentStore, StoreError, MAX_MANIFEST_BYTES};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet, VecDeque};

/// Most blobs one walk may visit (real images have a few dozen).
pub const MAX_BLOBS: usize = 100_000;

/// An OCI descriptor, reduced to what ipcs uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// An image record: a name and its target (an index or a manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub target: Descriptor,
}

/// One blob of an image as stored here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub desc: Descriptor,
    pub cid: Cid,
    /// Whether it is a manifest's layer (the dedup report's "layers").
    pub is_layer: bool,
    /// containerd GC labels naming its children; empty for configs and layers.
    pub gc_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
}

enum Kind {
    Index,
    Manifest,
    Leaf { layer: bool },
}

fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        "application/vnd.oci.image.index.v1+json"
        | "application/vnd.docker.distribution.manifest.list.v2+json" => Some(Kind::Index),
        "application/vnd.oci.image.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v2+json" => Some(Kind::Manifest),
        _ => None,
    }
}

fn descriptor(raw: &RawDescriptor, parent: &Digest) -> Result<Descriptor, StoreError> {
    let digest = raw.digest.parse::<Digest>().map_err(|e| {
        StoreError::InvalidArgument(format!("{parent} names an invalid digest: {e}"))
    })?;
    if raw.size < 0 {
        return Err(StoreError::InvalidArgument(format!(
            "{parent} gives {digest} a negative size"
        )));
    }
    Ok(Descriptor {
        media_type: raw.media_type.clone(),
        digest,
        size: raw.size as u64,
    })
}

/// A child descriptor, what it is, and the GC label its parent gets for it.
type Child = (Descriptor, Kind, String);

/// The children of a manifest or index, with the GC label of each.
fn children(bytes: &[u8], parent: &Descriptor) -> Result<(Vec<Child>, bool), StoreError> {
    let m: RawManifest = serde_json::from_slice(bytes).map_err(|e| {
        StoreError::InvalidArgument(format!("{} is not a manifest or index: {e}", parent.digest))
    })?;
    let is_index = match kind_of(&parent.media_type) {
        Some(Kind::Index) => true,
        Some(_) => false,
        None => m.manifests.is_some(),
    };
    let mut out = Vec::new();
    if is_index {
        for (i, raw) in m.manifests.iter().flatten().enumerate() {
            let d = descriptor(raw, &parent.digest)?;
            let kind = kind_of(&d.media_type).unwrap_or(Kind::Manifest);
            out.push((d, kind, format!("containerd.io/gc.ref.content.m.{i}")));
        }
    } else {
        if let Some(raw) = &m.config {
            let d = descriptor(raw, &parent.digest)?;
            out.push((
                d,
                Kind::Leaf { layer: false },
                "containerd.io/gc.ref.content.config".into(),
            ));
        }
        for (i, raw) in m.layers.iter().flatten().enumerate() {
            let d = descriptor(raw, &parent.digest)?;
            out.push((
                d,
                Kind::Leaf { layer: true },
                format!("containerd.io/gc.ref.content.l.{i}"),
            ));
        }
    }
    Ok((out, is_index))
}

/// The size and CID the index records for `d`, None when the store lacks it (the
/// read-miss hook is not asked: a walk describes what is here).
async fn stored(store: &ContentStore, d: &Descriptor) -> Result<Option<Cid>, StoreError> {
    // Its DAG is what gets walked: a blob whose import is pending is waited for.
    let Some(info) = store.imported_info(&d.digest).await? else {
        return Ok(None);
    };
    if info.size != d.size {
        return Err(StoreError::FailedPrecondition(format!(
            "{} is {} bytes here, but its descriptor says {}",
            d.digest, info.size, d.size
        )));
    }
    Ok(Some(info.cid))
}

/// Whether the store holds `d` and, for a manifest, its config and every layer.
async fn platform_complete(
    store: &ContentStore,
    d: &Descriptor,
    kind: &Kind,
) -> Result<bool, StoreError> {
    if !store.contains(&d.digest).await? {
        return Ok(false);
    }
    if !matches!(kind, Kind::Manifest) || d.size > MAX_MANIFEST_BYTES {
        return Ok(true);
    }
    let bytes = store
        .read_small(&d.digest, MAX_MANIFEST_BYTES)
        .await?
        .unwrap_or_default();
    for (child, _, _) in children(&bytes, d)?.0 {
        if !store.contains(&child.digest).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every blob the images reach, each once, parents before children.
pub async fn walk(store: &ContentStore, images: &[ImageRef]) -> Result<Vec<Blob>, StoreError> {
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut out: Vec<Blob> = Vec::new();
    let mut queue: VecDeque<Child> = VecDeque::new();
    for img in images {
        let kind = kind_of(&img.target.media_type).unwrap_or(Kind::Manifest);
        queue.push_back((img.target.clone(), kind, format!("image {}", img.name)));
    }
    while let Some((desc, kind, why)) = queue.pop_front() {
        if seen.contains(&desc.digest) {
            continue;
        }
        if out.len() >= MAX_BLOBS {
            return Err(StoreError::LimitExceeded(format!(
                "the images name more than {MAX_BLOBS} blobs"
            )));
        }
        let Some(cid) = stored(store, &desc).await? else {
            if why.starts_with("platform") {
                continue;
            }
            return Err(StoreError::NotFound(format!(
                "{} ({why}) is not in this store; the image is incomplete",
                desc.digest
            )));
        };
        seen.insert(desc.digest.clone());
        let mut blob = Blob {
            desc: desc.clone(),
            cid,
            is_layer: matches!(kind, Kind::Leaf { layer: true }),
            gc_labels: BTreeMap::new(),
        };
        if matches!(kind, Kind::Index | Kind::Manifest) {
            if desc.size > MAX_MANIFEST_BYTES {
                return Err(StoreError::InvalidArgument(format!(
                    "{} ({why}) is {} bytes, more than a manifest may be",
                    desc.digest, desc.size
                )));
            }
            let bytes = store
                .read_small(&desc.digest, MAX_MANIFEST_BYTES)
                .await?
                .unwrap_or_default();
            let (kids, is_index) = children(&bytes, &desc)?;
            for (child, kind, label) in kids {
                // A platform this store lacks (or holds only the manifest of) is no part
                // of what was pulled.
                if is_index && !platform_complete(store, &child, &kind).await? {
                    continue;
                }
                blob.gc_labels.insert(label, child.digest.to_string());
                let why = if is_index {
                    format!("platform manifest of {}", desc.digest)
                } else {
                    format!("named by {}", desc.digest)
                };
                queue.push_back((child, kind, why));
            }
        }
        out.push(blob);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::of_empty(),
            size: 0,
        }
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn manifest_children_carry_containerd_gc_labels() {
        let m = format!(
            r#"{{"config":{{"mediaType":"c","digest":"{D1}","size":3}},
                 "layers":[{{"mediaType":"l","digest":"{D2}","size":5}}]}}"#
        );
        let (kids, is_index) = children(
            m.as_bytes(),
            &parent("application/vnd.oci.image.manifest.v1+json"),
        )
        .unwrap();
        assert!(!is_index);
        let labels: Vec<(String, String, u64)> = kids
            .iter()
            .map(|(d, _, l)| (l.clone(), d.digest.to_string(), d.size))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("containerd.io/gc.ref.content.config".into(), D1.into(), 3),
                ("containerd.io/gc.ref.content.l.0".into(), D2.into(), 5),
            ]
        );
    }

    #[test]
    fn index_children_are_manifests() {
        let m = format!(r#"{{"manifests":[{{"digest":"{D1}","size":3}}]}}"#);
        let (kids, is_index) = children(m.as_bytes(), &parent("")).unwrap();
        assert!(is_index);
        assert_eq!(kids[0].2, "containerd.io/gc.ref.content.m.0");
    }

    #[test]
    fn hostile_manifests_are_errors() {
        let p = parent("application/vnd.oci.image.manifest.v1+json");
        assert!(children(b"[1,2]", &p).is_err());
        let neg = format!(r#"{{"layers":[{{"digest":"{D1}","size":-1}}]}}"#);
        assert!(children(neg.as_bytes(), &p).is_err());
        let bad = r#"{"layers":[{"digest":"sha256:../../etc","size":1}]}"#;
        assert!(children(bad.as_bytes(), &p).is_err());
    }
}
