//! The index DAG at the root of an ipcs CAR: one dag-cbor block (written as dag-json)
//! naming each image (name → target descriptor) and each blob (digest, size, media type,
//! and an IPLD link to its UnixFS DAG). The links are what make `dag export` of this one
//! root carry every blob's blocks; the digests are what import verifies against.
//!
//! ```json
//! {"ipcs-car": 1,
//!  "images": [{"name": "docker.io/library/x:1", "digest": "sha256:…",
//!              "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1234}],
//!  "blobs":  [{"digest": "sha256:…", "size": 1234, "mediaType": "…",
//!              "dag": {"/": "bafy…"}}]}
//! ```
use crate::car::walk::{Blob, Descriptor, ImageRef, MAX_BLOBS};
use crate::cid::Cid;
use crate::digest::Digest;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const FORMAT_VERSION: u32 = 1;
/// Longest index document accepted on import.
pub const MAX_INDEX_BYTES: usize = 32 << 20;
/// Longest image name (containerd's references are far shorter).
const MAX_NAME_BYTES: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct Link {
    #[serde(rename = "/")]
    cid: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DocImage {
    name: String,
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct DocBlob {
    digest: String,
    size: u64,
    #[serde(rename = "mediaType")]
    media_type: String,
    dag: Link,
}

#[derive(Debug, Serialize, Deserialize)]
struct Doc {
    #[serde(rename = "ipcs-car")]
    version: u32,
    images: Vec<DocImage>,
    blobs: Vec<DocBlob>,
}

/// A CAR's index: its images, and every blob with the CID of its DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarIndex {
    pub images: Vec<ImageRef>,
    pub blobs: Vec<(Descriptor, Cid)>,
}

impl CarIndex {
    pub fn new(images: &[ImageRef], blobs: &[Blob]) -> CarIndex {
        CarIndex {
            images: images.to_vec(),
            blobs: blobs
                .iter()
                .map(|b| (b.desc.clone(), b.cid.clone()))
                .collect(),
        }
    }

    /// The dag-json document for `dag put`.
    pub fn to_dag_json(&self) -> Vec<u8> {
        let doc = Doc {
            version: FORMAT_VERSION,
            images: self
                .images
                .iter()
                .map(|i| DocImage {
                    name: i.name.clone(),
                    digest: i.target.digest.to_string(),
                    media_type: i.target.media_type.clone(),
                    size: i.target.size,
                })
                .collect(),
            blobs: self
                .blobs
                .iter()
                .map(|(d, cid)| DocBlob {
                    digest: d.digest.to_string(),
                    size: d.size,
                    media_type: d.media_type.clone(),
                    dag: Link {
                        cid: cid.to_string(),
                    },
                })
                .collect(),
        };
        serde_json::to_vec(&doc).expect("plain structs serialize")
    }

    /// Parses and checks an index read back from a CAR: it is hostile input until each
    /// blob has been verified, so every field is checked here and any doubt is an error.
    pub fn from_dag_json(bytes: &[u8]) -> Result<CarIndex, StoreError> {
        let bad = |m: String| StoreError::InvalidArgument(format!("not an ipcs CAR index: {m}"));
        let doc: Doc = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if doc.version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} (this ipcs reads {FORMAT_VERSION})",
                doc.version
            )));
        }
        if doc.images.is_empty() {
            return Err(bad("it names no image".into()));
        }
        if doc.blobs.len() > MAX_BLOBS {
            return Err(bad(format!("more than {MAX_BLOBS} blobs")));
        }
        let mut blobs = Vec::with_capacity(doc.blobs.len());
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for b in doc.blobs {
            let digest: Digest = b.digest.parse().map_err(|e| bad(format!("{e}")))?;
            let cid: Cid = b.dag.cid.parse().map_err(|e| bad(format!("{e}")))?;
            if sizes.insert(digest.clone(), b.size).is_some() {
                return Err(bad(format!("{digest} is listed twice")));
            }
            blobs.push((
                Descriptor {
                    media_type: b.media_type,
                    digest,
                    size: b.size,
                },
                cid,
            ));
        }
        let mut images = Vec::with_capacity(doc.images.len());
        for i in doc.images {
            let digest: Digest = i.digest.parse().map_err(|e| bad(format!("{e}")))?;
            if i.name.is_empty()
                || i.name.len() > MAX_NAME_BYTES
                || i.name.chars().any(char::is_control)
            {
                return Err(bad(format!(
                    "image name {:?}",
                    i.name.chars().take(80).collect::<String>()
                )));
            }
            if sizes.get(&digest) != Some(&i.size) {
                return Err(bad(format!(
                    "image {} targets {digest}, which is not among its blobs at {} bytes",
                    i.name, i.size
                )));
            }
            images.push(ImageRef {
                name: i.name,
                target: Descriptor {
                    media_type: i.media_type,
                    digest,
                    size: i.size,
                },
            });
        }
        Ok(CarIndex { images, blobs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CarIndex {
        let d: Digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
            .parse()
            .unwrap();
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: d,
            size: 42,
        };
        CarIndex {
            images: vec![ImageRef {
                name: "example.com/a:1".into(),
                target: desc.clone(),
            }],
            blobs: vec![(desc, "bafkreiabc".parse().unwrap())],
        }
    }

    #[test]
    fn round_trips_and_links_each_dag() {
        let idx = sample();
        let json = idx.to_dag_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""dag":{"/":"bafkreiabc"}"#), "{text}");
        assert_eq!(CarIndex::from_dag_json(&json).unwrap(), idx);
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        let good = String::from_utf8(sample().to_dag_json()).unwrap();
        for bad in [
            good.replace(r#""ipcs-car":1"#, r#""ipcs-car":2"#),
            good.replace(r#""size":42,"mediaType""#, r#""size":41,"mediaType""#),
            good.replace("bafkreiabc", "baf/../x"),
            good.replace("example.com/a:1", "a\\nb"),
            good.replace("sha256:1111", "sha256:zz11"),
            "[]".to_string(),
        ] {
            assert!(CarIndex::from_dag_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
