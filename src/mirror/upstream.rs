//! Asking the real registry what a tag points to. Loopback registries are spoken to over
//! plain HTTP (test and local registries), every other one over HTTPS. Only anonymous
//! access: a registry that wants credentials gets no answer from here, and containerd
//! then talks to it directly.
use crate::store::MAX_MANIFEST_BYTES;
use bytes::Bytes;
use std::time::Duration;

pub struct Upstream {
    http: reqwest::Client,
    plain_http: Vec<String>,
}

pub struct TagAnswer {
    pub digest: String,
    pub media_type: String,
    pub body: Bytes,
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The registry's URL: plain HTTP for loopback hosts and those in `plain_http`
/// (`registry_plain_http`), HTTPS otherwise.
pub(super) fn base_url(host: &str, plain_http: &[String]) -> Option<String> {
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !valid {
        return None;
    }
    let hostname = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let loopback = hostname == "localhost"
        || hostname
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    let plain = loopback || plain_http.iter().any(|p| p == host);
    Some(format!("{}://{host}", if plain { "http" } else { "https" }))
}

impl Upstream {
    /// Fails only if no HTTP client can be built; `serve` reports it.
    pub fn new(plain_http: Vec<String>) -> Result<Upstream, reqwest::Error> {
        Ok(Upstream {
            plain_http,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(15))
                .build()?,
        })
    }

    /// The manifest `name:tag` currently points to at `host`, or why not.
    pub async fn resolve(&self, host: &str, name: &str, tag: &str) -> Result<TagAnswer, String> {
        let base = base_url(host, &self.plain_http)
            .ok_or_else(|| format!("invalid registry host {host:?}"))?;
        let resp = self
            .http
            .get(format!("{base}/v2/{name}/manifests/{tag}"))
            .header("Accept", ACCEPT)
            .send()
            .await
            .map_err(|e| format!("{base}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{base}: HTTP {}", resp.status()));
        }
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.bytes().await.map_err(|e| format!("{base}: {e}"))?;
        if body.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(format!(
                "{base}: manifest larger than {MAX_MANIFEST_BYTES} bytes"
            ));
        }
        let mut h = crate::digest::Digester::new(crate::digest::Algorithm::Sha256);
        h.update(&body);
        Ok(TagAnswer {
            digest: h.digest().to_string(),
            media_type,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_http_and_others_https() {
        let none: &[String] = &[];
        assert_eq!(
            base_url("127.0.0.1:5000", none).unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            base_url("localhost:5000", none).unwrap(),
            "http://localhost:5000"
        );
        assert_eq!(base_url("[::1]:5000", none).unwrap(), "http://[::1]:5000");
        assert_eq!(
            base_url("registry.example:443", none).unwrap(),
            "https://registry.example:443"
        );
        assert!(base_url("evil/host", none).is_none());
        assert!(base_url("", none).is_none());
        let plain = ["10.213.7.2:5000".to_string()];
        assert_eq!(
            base_url("10.213.7.2:5000", &plain).unwrap(),
            "http://10.213.7.2:5000"
        );
        assert_eq!(
            base_url("10.213.7.2:5001", &plain).unwrap(),
            "https://10.213.7.2:5001"
        );
    }
}
