//! IPFS Cluster's REST API, as ipcs uses it: publish a blob's root CID in the shared
//! pinset with its OCI digest and size as metadata, publish tag → manifest records and
//! swarm member records (`members`), and read the whole pinset into a `ClusterView` for
//! the background mirror. The API is a unix socket (`unix:///run/ipfs-cluster/api.sock`:
//! only accounts that may open it can pin or unpin cluster-wide) or an http:// URL.
use crate::endpoint::Endpoint;
use crate::peer::members;
use crate::peer::resolve::{Candidate, ClusterView, Origin, TagRecord};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

pub const KIND: &str = "ipcs-kind";
pub const DIGEST: &str = "ipcs-digest";
pub const SIZE: &str = "ipcs-size";
pub const REF: &str = "ipcs-ref";
pub const MEDIA_TYPE: &str = "ipcs-media-type";
pub const MIRROR: &str = "ipcs-mirror";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("ipfs cluster at {addr}: {op}: {reason}")]
    Failed {
        addr: String,
        op: &'static str,
        reason: String,
    },
}

#[derive(Clone)]
pub struct ClusterClient {
    /// The address as configured, for messages; `url` prefixes request URLs.
    base: String,
    url: String,
    http: reqwest::Client,
    timeout: Duration,
    replication: i32,
    /// This node's cluster peer ID, learned once: with a finite replication factor the
    /// publishing node is always one of the holders.
    self_id: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

#[derive(Deserialize)]
struct RestId {
    id: String,
}

/// A pin as the REST API returns it (v1: `cid` is a string; older: `{"/": cid}`).
#[derive(Deserialize)]
struct RestPin {
    cid: serde_json::Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    timestamp: String,
    /// RFC 3339; Go's zero time when unset. Kept as any JSON value so that an odd one
    /// costs only this pin, never the whole pinset.
    #[serde(default)]
    expire_at: serde_json::Value,
}

impl RestPin {
    fn cid(&self) -> Option<String> {
        match &self.cid {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("/").and_then(|v| v.as_str()).map(String::from),
            _ => None,
        }
    }
}

impl ClusterClient {
    /// Fails if `base` is not a unix:// or http(s):// address (`Config::validate` checks
    /// it first) or no HTTP client can be built (TLS backend setup), which `serve`
    /// reports instead of panicking.
    pub fn new(
        base: &str,
        timeout: Duration,
        replication: i32,
    ) -> Result<ClusterClient, ClusterError> {
        let setup = |reason: String| ClusterError::Failed {
            addr: base.to_string(),
            op: "client setup",
            reason,
        };
        let endpoint = Endpoint::parse(base).map_err(setup)?;
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60));
        let http = endpoint
            .configure(builder)
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(ClusterClient {
            base: endpoint.display,
            url: endpoint.url,
            http,
            timeout,
            replication,
            self_id: Default::default(),
        })
    }

    async fn self_id(&self) -> Result<String, ClusterError> {
        let op = "id";
        self.self_id
            .get_or_try_init(|| async {
                let resp = self
                    .http
                    .get(format!("{}/id", self.url))
                    .timeout(self.timeout)
                    .send()
                    .await
                    .map_err(|e| self.fail(op, e))?;
                let id: RestId = resp.json().await.map_err(|e| self.fail(op, e))?;
                Ok(id.id)
            })
            .await
            .cloned()
    }

    pub fn address(&self) -> &str {
        &self.base
    }

    fn fail(&self, op: &'static str, reason: impl ToString) -> ClusterError {
        ClusterError::Failed {
            addr: self.base.clone(),
            op,
            reason: reason.to_string(),
        }
    }

    async fn pin(
        &self,
        cid: &str,
        name: &str,
        meta: &[(&str, String)],
        expire_at: Option<SystemTime>,
    ) -> Result<(), ClusterError> {
        let op = "pin add";
        let mut query: Vec<(String, String)> = vec![
            ("name".into(), name.to_string()),
            ("replication-min".into(), self.replication.to_string()),
            ("replication-max".into(), self.replication.to_string()),
        ];
        if let Some(t) = expire_at {
            query.push(("expire-at".into(), crate::peer::rfc3339::format(t)));
        }
        if self.replication > 0 {
            query.push(("user-allocations".into(), self.self_id().await?));
        }
        for (k, v) in meta {
            query.push((format!("meta-{k}"), v.clone()));
        }
        let req = self
            .http
            .post(format!("{}/pins/{cid}", self.url))
            .query(&query);
        self.send(op, req).await
    }

    /// Sends a pinset change with the control timeout; an answer other than 2xx is an
    /// error naming its status and body.
    async fn send(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<(), ClusterError> {
        let resp = req
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.fail(op, e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(self.fail(op, format!("HTTP {status}: {}", body.trim())));
        }
        Ok(())
    }

    /// Publishes `cid` as the DAG of blob `digest`.
    pub async fn pin_blob(&self, cid: &str, digest: &str, size: u64) -> Result<(), ClusterError> {
        let meta = [
            (KIND, "blob".to_string()),
            (DIGEST, digest.to_string()),
            (SIZE, size.to_string()),
        ];
        self.pin(cid, digest, &meta, None).await
    }

    /// Publishes that image `reference` resolved to the manifest `digest`; `cid` is a
    /// small IPFS object describing that mapping (unique per mapping).
    pub async fn pin_tag(
        &self,
        cid: &str,
        reference: &str,
        tag: &TagRecord,
    ) -> Result<(), ClusterError> {
        let meta = [
            (KIND, "tag".to_string()),
            (REF, reference.to_string()),
            (DIGEST, tag.digest.clone()),
            (SIZE, tag.size.to_string()),
            (MEDIA_TYPE, tag.media_type.clone()),
        ];
        self.pin(cid, &format!("ipcs-tag:{reference}"), &meta, None)
            .await
    }

    /// Announces that a swarm member's mirror is `url` until `expires`; `cid` is the
    /// member record (`members::record`). Pinning it again moves the expiry.
    pub async fn pin_member(
        &self,
        cid: &str,
        url: &str,
        expires: SystemTime,
    ) -> Result<(), ClusterError> {
        let meta = [(KIND, "member".to_string()), (MIRROR, url.to_string())];
        self.pin(cid, &format!("ipcs-member:{url}"), &meta, Some(expires))
            .await
    }

    /// Removes `cid` from the shared pinset.
    pub async fn unpin(&self, cid: &str) -> Result<(), ClusterError> {
        let req = self.http.delete(format!("{}/pins/{cid}", self.url));
        self.send("pin rm", req).await
    }

    /// Reads the whole shared pinset.
    pub async fn view(&self) -> Result<ClusterView, ClusterError> {
        let op = "list pins";
        let resp = self
            .http
            .get(format!("{}/allocations", self.url))
            .query(&[("filter", "pin")])
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.fail(op, e))?;
        if !resp.status().is_success() {
            return Err(self.fail(op, format!("HTTP {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| self.fail(op, e))?;
        let pins = parse_pins(&body).map_err(|e| self.fail(op, e))?;
        Ok(build_view(pins))
    }
}

/// The pinset arrives as a stream of JSON objects (or, from older versions, an array).
fn parse_pins(body: &[u8]) -> Result<Vec<RestPin>, serde_json::Error> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>() {
        match v? {
            serde_json::Value::Array(items) => {
                for i in items {
                    out.push(serde_json::from_value(i)?);
                }
            }
            other => out.push(serde_json::from_value(other)?),
        }
    }
    Ok(out)
}

fn build_view(pins: Vec<RestPin>) -> ClusterView {
    let mut view = ClusterView {
        refreshed: Some(Instant::now()),
        ..Default::default()
    };
    for p in pins {
        let Some(cid) = p.cid() else { continue };
        view.cids.insert(cid.clone());
        let meta = p.metadata.unwrap_or_default();
        if meta.get(KIND).map(String::as_str) == Some("member") {
            let expire_at = match &p.expire_at {
                serde_json::Value::Null => None,
                serde_json::Value::String(t) => Some(t.as_str()),
                _ => continue,
            };
            if let Some(m) = members::from_pin(&meta, expire_at) {
                view.members.push(m);
            }
            continue;
        }
        let size = meta.get(SIZE).and_then(|s| s.parse::<u64>().ok());
        let (Some(digest), Some(size)) = (meta.get(DIGEST), size) else {
            continue;
        };
        match meta.get(KIND).map(String::as_str) {
            Some("blob") => {
                view.blobs.insert(
                    digest.clone(),
                    Candidate {
                        cid,
                        size,
                        origin: Origin::Cluster,
                    },
                );
            }
            Some("tag") => {
                let Some(reference) = meta.get(REF) else {
                    continue;
                };
                let rec = TagRecord {
                    digest: digest.clone(),
                    media_type: meta.get(MEDIA_TYPE).cloned().unwrap_or_default(),
                    size,
                    published: p.timestamp.clone(),
                };
                // Several records for one tag: the most recently pinned wins (RFC 3339
                // timestamps of one cluster compare correctly as strings).
                let newer = view
                    .tags
                    .get(reference)
                    .map(|old| rec.published > old.published)
                    .unwrap_or(true);
                if newer {
                    view.tags.insert(reference.clone(), rec);
                }
            }
            _ => {}
        }
        let _ = p.name;
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streamed_and_array_pinsets() {
        let streamed = br#"{"cid":"bafyA","name":"sha256:a","metadata":{"ipcs-kind":"blob","ipcs-digest":"sha256:a","ipcs-size":"3"},"timestamp":"2026-01-01T00:00:00Z"}
{"cid":{"/":"bafyB"},"name":"other","metadata":null}
{"cid":"bafyT1","metadata":{"ipcs-kind":"tag","ipcs-ref":"r/x:1","ipcs-digest":"sha256:m1","ipcs-size":"9","ipcs-media-type":"application/vnd.oci.image.manifest.v1+json"},"timestamp":"2026-01-01T00:00:00Z"}
{"cid":"bafyT2","metadata":{"ipcs-kind":"tag","ipcs-ref":"r/x:1","ipcs-digest":"sha256:m2","ipcs-size":"9"},"timestamp":"2026-02-01T00:00:00Z"}
"#;
        let view = build_view(parse_pins(streamed).unwrap());
        assert_eq!(view.blobs["sha256:a"].cid, "bafyA");
        assert_eq!(view.blobs["sha256:a"].size, 3);
        assert!(view.cids.contains("bafyB"));
        assert_eq!(view.tags["r/x:1"].digest, "sha256:m2");
        let array = br#"[{"cid":"bafyA","metadata":{"ipcs-kind":"blob","ipcs-digest":"sha256:a","ipcs-size":"3"}}]"#;
        assert_eq!(build_view(parse_pins(array).unwrap()).blobs.len(), 1);
    }

    #[test]
    fn member_records_alive_expired_and_hostile() {
        let body = br#"{"cid":"bafyM1","name":"ipcs-member:http://127.0.0.1:1","metadata":{"ipcs-kind":"member","ipcs-mirror":"http://127.0.0.1:1"},"expire_at":"2030-01-01T01:00:00+01:00"}
{"cid":"bafyM2","metadata":{"ipcs-kind":"member","ipcs-mirror":"http://127.0.0.1:2"},"expire_at":"2020-01-01T00:00:00Z"}
{"cid":"bafyM3","metadata":{"ipcs-kind":"member","ipcs-mirror":"http://127.0.0.1:3/"},"expire_at":"0001-01-01T00:00:00Z"}
{"cid":"bafyM4","metadata":{"ipcs-kind":"member","ipcs-mirror":"http://evil/../x"},"expire_at":"2030-01-01T00:00:00Z"}
{"cid":"bafyM5","metadata":{"ipcs-kind":"member","ipcs-mirror":"http://127.0.0.1:5"},"expire_at":12}
{"cid":"bafyM6","metadata":{"ipcs-kind":"member"}}
{"cid":"bafyA","metadata":{"ipcs-kind":"blob","ipcs-digest":"sha256:a","ipcs-size":"3"}}
"#;
        let view = build_view(parse_pins(body).unwrap());
        assert_eq!(
            view.blobs.len(),
            1,
            "member records do not disturb the rest"
        );
        assert!(view.cids.contains("bafyM2"), "every CID is in the pinset");
        let r = crate::peer::Resolver::default();
        r.set_cluster_view(view);
        // At 2027: 1 alive; 2 expired though still listed; 3 no expiry; the rest malformed.
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            r.swarm_members(now),
            vec![
                "http://127.0.0.1:1".to_string(),
                "http://127.0.0.1:3".into()
            ]
        );
        let later = std::time::UNIX_EPOCH + Duration::from_secs(1_893_456_000); // 2030
        assert_eq!(
            r.swarm_members(later),
            vec!["http://127.0.0.1:3".to_string()]
        );
    }

    #[test]
    fn malformed_pins_are_skipped_not_fatal() {
        let body = br#"{"cid":"bafyA","metadata":{"ipcs-kind":"blob","ipcs-digest":"sha256:a","ipcs-size":"x"}}"#;
        let view = build_view(parse_pins(body).unwrap());
        assert!(view.blobs.is_empty());
        assert!(parse_pins(b"{oops").is_err());
    }
}
