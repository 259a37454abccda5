//! The mirror's HTTP routes: `/v2/`, manifests by tag or digest, blobs by digest.
use crate::digest::Digest;
use crate::metrics::Fallback;
use crate::mirror::inflight::{self, Source};
use crate::mirror::Mirror;
use crate::share_policy::Verdict;
use crate::store::{StoreError, MAX_MANIFEST_BYTES};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

pub(super) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

const DEFAULT_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

pub(super) fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::new())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

/// A response from `builder`, or a 502 if a header came out invalid: header values can
/// come from stored content (a manifest's `mediaType`), which is hostile input.
fn build(builder: hyper::http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "mirror: response not representable");
        empty(StatusCode::BAD_GATEWAY)
    })
}

fn full(body: Bytes) -> Body {
    Full::new(body).map_err(|e| match e {}).boxed_unsync()
}

/// The answer to a request without the mirror's secret header: no body, no hint.
pub fn unauthorized() -> Response<Body> {
    empty(StatusCode::UNAUTHORIZED)
}

fn bytes_response(head: bool, media_type: &str, digest: &str, body: Bytes) -> Response<Body> {
    let len = body.len();
    let body = if head { Bytes::new() } else { body };
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", media_type)
        .header("Docker-Content-Digest", digest)
        .header("Content-Length", len);
    build(builder, full(body))
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%3A", ":").replace("%3a", ":"))
    })
}

/// Splits `/v2/<name>/<kind>/<reference>`.
fn parse_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["manifests", "blobs"] {
        if let Some(i) = rest.rfind(&format!("/{kind}/")) {
            let name = &rest[..i];
            let reference = &rest[i + kind.len() + 2..];
            if !name.is_empty() && !reference.is_empty() && !reference.contains('/') {
                return Some((name, kind, reference));
            }
        }
    }
    None
}

pub async fn handle(m: &Mirror, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let head = req.method() == Method::HEAD;
    let path = req.uri().path().to_string();
    if path == "/v2/" || path == "/v2" {
        return bytes_response(head, "application/json", "", Bytes::from_static(b"{}"));
    }
    // nerdctl's ipfs://<CID> images (src/mirror/ipfs_routes.rs).
    if let Some(r) = crate::mirror::ipfs_routes::handle(m, head, &path).await {
        return r;
    }
    let Some((name, kind, reference)) = parse_path(&path) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let ns = query_param(&req, "ns").unwrap_or_default();
    match (kind, reference.parse::<Digest>()) {
        ("blobs", Ok(d)) => {
            let Some(offset) = range_start(&req) else {
                return empty(StatusCode::RANGE_NOT_SATISFIABLE);
            };
            let r = BlobRequest {
                ns,
                name: name.to_string(),
                offset,
                from_peer: req.headers().contains_key(inflight::PEER_HEADER),
            };
            blob(m, head, &d, &r).await
        }
        ("manifests", Ok(d)) => manifest_by_digest(m, head, &d, None).await,
        ("manifests", Err(_)) => manifest_by_tag(m, head, &ns, name, reference).await,
        _ => empty(StatusCode::NOT_FOUND),
    }
}

/// A 404: containerd then asks the next host in hosts.toml, the registry.
fn not_found(m: &Mirror) -> Response<Body> {
    m.store.metrics().fallback(Fallback::MirrorNotFound);
    empty(StatusCode::NOT_FOUND)
}

fn not_found_or_error(m: &Mirror, what: &str, e: StoreError) -> Response<Body> {
    if !matches!(e, StoreError::NotFound(_)) {
        tracing::warn!(error = %e, "mirror: {what}");
    }
    not_found(m)
}

/// What a blob request asked for, beyond the digest.
#[derive(Default)]
pub(super) struct BlobRequest {
    /// containerd's `ns` (the registry host) and the repository name.
    pub ns: String,
    pub name: String,
    /// From a `Range: bytes=N-` header (containerd resuming, a peer taking over).
    pub offset: u64,
    /// Sent by another node's mirror (`x-ipcs-peer`).
    pub from_peer: bool,
}

/// `Range: bytes=N-` → Some(N); no header → Some(0); any other form → None (416).
fn range_start(req: &Request<Incoming>) -> Option<u64> {
    let Some(v) = req.headers().get("range") else {
        return Some(0);
    };
    v.to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Headers of a blob answer: 200 for the whole blob, 206 from `offset` on.
fn blob_head(d: &Digest, size: u64, offset: u64) -> hyper::http::response::Builder {
    let b = Response::builder()
        .header("Content-Type", "application/octet-stream")
        .header("Docker-Content-Digest", d.to_string())
        .header("Accept-Ranges", "bytes")
        .header("Content-Length", size - offset);
    if offset == 0 {
        b.status(StatusCode::OK)
    } else {
        b.status(StatusCode::PARTIAL_CONTENT).header(
            "Content-Range",
            format!("bytes {offset}-{}/{size}", size.saturating_sub(1)),
        )
    }
}

/// A blob from the store; on a miss, with in-flight sharing on, from the entry this
/// node keeps for it (started from its ranking of the swarm, docs/inflight.md); else 404,
/// and containerd asks the registry itself.
pub(super) async fn blob(m: &Mirror, head: bool, d: &Digest, r: &BlobRequest) -> Response<Body> {
    let repository = format!("{}/{}", r.ns, r.name);
    if r.from_peer && !m.policy.shares(&repository) {
        tracing::info!(digest = %d, %repository, "peer asked for a repository this node does not share");
        return empty(StatusCode::NOT_FOUND);
    }
    match m.store.info(d).await {
        Ok(info) => {
            if r.from_peer && m.policy.verdict(&info.labels) == Verdict::Keep {
                return empty(StatusCode::NOT_FOUND);
            }
            if r.offset >= info.size.max(1) {
                return empty(StatusCode::RANGE_NOT_SATISFIABLE);
            }
            let builder = blob_head(d, info.size, r.offset);
            if head {
                return build(builder, full(Bytes::new()));
            }
            match m.store.read(d, r.offset as i64, 0).await {
                Ok(stream) => {
                    let frames = stream.map(|c| {
                        c.map(|(_, data)| Frame::data(data))
                            .map_err(|e| std::io::Error::other(e.to_string()))
                    });
                    build(builder, BodyExt::boxed_unsync(StreamBody::new(frames)))
                }
                Err(e) => not_found_or_error(m, "blob read", e),
            }
        }
        Err(StoreError::NotFound(_)) if m.swarm.is_some() && !r.ns.is_empty() => {
            inflight_blob(m, head, d, r).await
        }
        Err(e) => not_found_or_error(m, "blob", e),
    }
}

async fn inflight_blob(m: &Mirror, head: bool, d: &Digest, r: &BlobRequest) -> Response<Body> {
    let Some((swarm, inflight)) = &m.swarm else {
        return empty(StatusCode::NOT_FOUND);
    };
    // A peer's request is answered from here or the registry, never passed on: that
    // keeps every chain one hop long and the ranking the same on every node.
    let sources: Vec<Source> = if r.from_peer {
        vec![Source::Registry]
    } else {
        let d = d.to_string();
        crate::mirror::swarm::rank(&d, &swarm.members())
            .into_iter()
            .map(|u| {
                if u == swarm.me() {
                    Source::Registry
                } else {
                    Source::Peer(u)
                }
            })
            .collect()
    };
    let tries = sources.len() as u32 + 1;
    let entry = match inflight.get_or_start(d, &r.ns, &r.name, sources).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(digest = %d, error = %e, "in-flight: cannot start");
            return empty(StatusCode::NOT_FOUND);
        }
    };
    if r.from_peer && !m.policy.shares(&entry.repository) {
        return empty(StatusCode::NOT_FOUND);
    }
    let stall = inflight.tuning.stall;
    let size = match entry.size(stall * tries).await {
        Ok(s) => s,
        Err(why) => {
            tracing::info!(digest = %d, %why, peer = r.from_peer, "in-flight: no source; 404 (the client falls back to the registry)");
            return not_found(m);
        }
    };
    if r.offset >= size.max(1) {
        return empty(StatusCode::RANGE_NOT_SATISFIABLE);
    }
    let builder = blob_head(d, size, r.offset);
    if head {
        return build(builder, full(Bytes::new()));
    }
    let frames = entry
        .read_from(r.offset, stall * tries)
        .map(|c| c.map(Frame::data));
    build(builder, BodyExt::boxed_unsync(StreamBody::new(frames)))
}

pub(super) async fn manifest_by_digest(
    m: &Mirror,
    head: bool,
    d: &Digest,
    media_type: Option<&str>,
) -> Response<Body> {
    let body = match m.store.read_small(d, MAX_MANIFEST_BYTES).await {
        Ok(Some(b)) => b,
        Ok(None) => return not_found(m),
        Err(e) => return not_found_or_error(m, "manifest", e),
    };
    let declared = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|t| t.as_str())
                .map(String::from)
        });
    // A type that cannot be a header value is ignored, not echoed.
    let valid = |t: &String| hyper::header::HeaderValue::from_str(t).is_ok();
    let media_type = declared
        .filter(valid)
        .or(media_type.map(String::from).filter(valid))
        .unwrap_or_else(|| DEFAULT_MANIFEST_TYPE.to_string());
    bytes_response(head, &media_type, &d.to_string(), Bytes::from(body))
}

async fn manifest_by_tag(
    m: &Mirror,
    head: bool,
    ns: &str,
    name: &str,
    tag: &str,
) -> Response<Body> {
    let reference = format!("{ns}/{name}:{tag}");
    m.store.metrics().fallback(Fallback::MirrorTag);
    match m.upstream.resolve(ns, name, tag).await {
        Ok(ans) => {
            let (store, peers) = (m.store.clone(), m.peers.clone());
            let (r, digest, media_type, body) = (
                reference.clone(),
                ans.digest.clone(),
                ans.media_type.clone(),
                ans.body.clone(),
            );
            if m.policy.shares(&format!("{ns}/{name}")) {
                tokio::spawn(async move {
                    peers
                        .publish_tag(&store, &r, &digest, &media_type, body)
                        .await
                });
            }
            bytes_response(head, &ans.media_type, &ans.digest, ans.body)
        }
        Err(why) => match m.peers.resolver().tag(&reference) {
            Some(rec) => {
                m.store.metrics().mirror_tag_from_cluster();
                tracing::info!(%reference, digest = %rec.digest, registry = %why, "registry unreachable; tag answered from the cluster");
                match rec.digest.parse::<Digest>() {
                    Ok(d) => manifest_by_digest(m, head, &d, Some(&rec.media_type)).await,
                    Err(_) => empty(StatusCode::NOT_FOUND),
                }
            }
            None => {
                tracing::info!(%reference, registry = %why, "tag unknown to the cluster and the registry is not answering");
                not_found(m)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored manifest's `mediaType` with a newline used to panic the response builder.
    #[test]
    fn an_unrepresentable_media_type_is_an_error_response_not_a_panic() {
        let r = bytes_response(
            false,
            "application/json\nX-Evil: 1",
            "sha256:x",
            Bytes::new(),
        );
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn splits_registry_paths() {
        assert_eq!(
            parse_path("/v2/ipcs/big/manifests/v1"),
            Some(("ipcs/big", "manifests", "v1"))
        );
        assert_eq!(
            parse_path("/v2/a/blobs/sha256:abc"),
            Some(("a", "blobs", "sha256:abc"))
        );
        assert_eq!(parse_path("/v2/manifests/v1"), None);
        assert_eq!(parse_path("/v2/a/manifests/"), None);
        assert_eq!(parse_path("/other"), None);
    }
}
