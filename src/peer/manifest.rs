//! `ipfs://<cid>` URLs on OCI descriptors (the convention of nerdctl's IPFS support):
//! a manifest or index that carries them says where each referenced blob lives in IPFS.
use serde::Deserialize;

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
struct ManifestOrIndex {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn is_cid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// (digest, cid, size) for every descriptor with an `ipfs://` URL. Anything that is not a
/// JSON manifest or index yields nothing.
pub fn ipfs_urls(json: &[u8]) -> Vec<(String, String, u64)> {
    if json.first() != Some(&b'{') {
        return Vec::new();
    }
    let Ok(m) = serde_json::from_slice::<ManifestOrIndex>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in m.config.iter().chain(&m.layers).chain(&m.manifests) {
        if d.size < 0 || d.digest.parse::<crate::digest::Digest>().is_err() {
            continue;
        }
        for url in &d.urls {
            if let Some(rest) = url.strip_prefix("ipfs://") {
                let cid = rest.split(['/', '?', '#']).next().unwrap_or("");
                if is_cid(cid) {
                    out.push((d.digest.clone(), cid.to_string(), d.size as u64));
                    break;
                }
            }
        }
    }
    out
}

/// The config and layer digests of an image manifest, in order. An index (whose entries
/// are per-platform manifests, most of which a pull never needs) or anything else yields
/// nothing.
pub fn image_blobs(json: &[u8]) -> Vec<String> {
    if json.first() != Some(&b'{') {
        return Vec::new();
    }
    let Ok(m) = serde_json::from_slice::<ManifestOrIndex>(json) else {
        return Vec::new();
    };
    if !m.manifests.is_empty() {
        return Vec::new();
    }
    m.config
        .iter()
        .chain(&m.layers)
        .filter(|d| d.digest.parse::<crate::digest::Digest>().is_ok())
        .map(|d| d.digest.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn finds_ipfs_urls_in_manifests() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":10,"urls":["ipfs://bafkreiaaa"]}},
               "layers":[{{"digest":"{D2}","size":20,"urls":["https://x/y","ipfs://bafybeibbb/"]}},
                         {{"digest":"{D2}","size":20}}]}}"#
        );
        assert_eq!(
            ipfs_urls(m.as_bytes()),
            vec![
                (D1.to_string(), "bafkreiaaa".to_string(), 10),
                (D2.to_string(), "bafybeibbb".to_string(), 20)
            ]
        );
    }

    #[test]
    fn image_blobs_lists_config_and_layers_of_manifests_only() {
        let m = format!(
            r#"{{"config":{{"digest":"{D1}","size":10}},
               "layers":[{{"digest":"{D2}","size":20}},{{"digest":"sha256:nothex","size":1}}]}}"#
        );
        assert_eq!(
            image_blobs(m.as_bytes()),
            vec![D1.to_string(), D2.to_string()]
        );
        let index = format!(r#"{{"manifests":[{{"digest":"{D1}","size":10}}]}}"#);
        assert!(image_blobs(index.as_bytes()).is_empty());
        assert!(image_blobs(b"\x1f\x8b layer").is_empty());
    }

    #[test]
    fn ignores_non_manifests_and_bad_entries() {
        assert!(ipfs_urls(b"\x1f\x8b binary layer").is_empty());
        assert!(ipfs_urls(b"{not json").is_empty());
        let bad = r#"{"layers":[{"digest":"nope","size":1,"urls":["ipfs://bafy"]},
                                {"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"urls":["ipfs://../x"]}]}"#;
        assert!(ipfs_urls(bad.as_bytes()).is_empty());
    }
}
