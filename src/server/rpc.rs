//! Around every gRPC request on the socket: a `tracing` span (`rpc`, with the method,
//! and the digest or ref once the handler has parsed them, see `record_digest` and
//! `record_ref`) and its count and duration in the metrics, by gRPC status code. A tower
//! layer under tonic, so every service (content, diff, admin) is covered without a line
//! in each handler; a streaming response is timed until its last message, and one the
//! client abandons is counted as `Cancelled`.
use crate::metrics::Metrics;
use futures::future::BoxFuture;
use hyper::body::{Body, Frame, SizeHint};
use hyper::http::{HeaderMap, Request, Response};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

/// Names the blob the current RPC is about (its span's `digest` field).
pub fn record_digest(digest: &str) {
    tracing::Span::current().record("digest", digest);
}

/// Names the ingest ref the current RPC is about (its span's `ref` field).
pub fn record_ref(r: &str) {
    tracing::Span::current().record("ref", r);
}

#[derive(Clone)]
pub struct RpcLayer {
    metrics: Metrics,
}

impl RpcLayer {
    pub fn new(metrics: Metrics) -> RpcLayer {
        RpcLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Rpc<S> {
    inner: S,
    metrics: Metrics,
}

/// Every method served on the socket, by its gRPC path.
const METHODS: &[(&str, &[&str])] = &[
    (
        "/containerd.services.content.v1.Content/",
        &[
            "Info",
            "Update",
            "List",
            "Delete",
            "Read",
            "Status",
            "ListStatuses",
            "Write",
            "Abort",
        ],
    ),
    ("/containerd.services.diff.v1.Diff/", &["Apply", "Diff"]),
    ("/ipcs.admin.v1.Admin/", &["Blobs", "Stats"]),
];

/// The method's short name from the gRPC path (`/containerd.services.content.v1.Content/Read`
/// → `Read`); any other path is `unknown`, so a client cannot grow the label set.
fn method_of(path: &str) -> &'static str {
    METHODS
        .iter()
        .filter_map(|(prefix, names)| Some((path.strip_prefix(prefix)?, *names)))
        .find_map(|(name, names)| names.iter().find(|n| **n == name).copied())
        .unwrap_or("unknown")
}

/// The status code a response or its trailers carry, by name ("OK", "NotFound", …).
fn code_in(headers: &HeaderMap) -> Option<String> {
    let n: i32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(format!("{:?}", tonic::Code::from_i32(n)))
}

impl<S, B, R> tower::Service<Request<B>> for Rpc<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Send,
    S::Future: Send + 'static,
    R: Body + Send + 'static,
{
    type Response = Response<Counted<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = method_of(req.uri().path());
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            digest = tracing::field::Empty,
            r#ref = tracing::field::Empty
        );
        let started = Instant::now();
        let fut = self.inner.call(req).instrument(span.clone());
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(e) => {
                    metrics.rpc(method, "Internal", started.elapsed());
                    return Err(e);
                }
            };
            // An error before any message is "trailers only": the code is in the headers.
            let early = code_in(resp.headers());
            let done = Done {
                metrics,
                method,
                started,
            };
            Ok(resp.map(|body| Counted {
                body: Box::pin(body),
                done: Some(done),
                code: early,
                span,
            }))
        })
    }
}

struct Done {
    metrics: Metrics,
    method: &'static str,
    started: Instant,
}

/// A response body that records its RPC when it ends (or is dropped unfinished).
pub struct Counted<B> {
    body: Pin<Box<B>>,
    done: Option<Done>,
    code: Option<String>,
    span: tracing::Span,
}

impl<B> Counted<B> {
    fn finish(&mut self, fallback: &str) {
        if let Some(d) = self.done.take() {
            let code = self.code.as_deref().unwrap_or(fallback);
            let took = d.started.elapsed();
            d.metrics.rpc(d.method, code, took);
            // A per-RPC access log, off at the default level (IPCS_LOG=ipcs::server::rpc=debug).
            tracing::debug!(parent: &self.span, code, ms = took.as_millis() as u64, "rpc finished");
        }
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        self.finish("Cancelled");
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let span = self.span.clone();
        let _in = span.enter();
        let polled = self.body.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(code_in) {
                    self.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish("Unknown"),
            // tonic always ends with trailers; a body without them ended normally.
            Poll::Ready(None) => self.finish("Ok"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::proto::content_client::ContentClient;
    use crate::server::proto::{InfoRequest, ReadContentRequest};
    use crate::store::testkit;

    fn value(m: &Metrics, series: &str) -> f64 {
        m.encode()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Every RPC through the real tonic server is counted by method and code, and a Read
    /// stream only once it has ended.
    #[tokio::test]
    async fn rpcs_are_counted_by_method_and_code_when_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _backend) = testkit::open(&dir.path().join("data")).await;
        let data = vec![7u8; 3 << 20];
        let d = testkit::put(&store, "r", &data).await.unwrap();
        let m = store.metrics().clone();
        let sock = dir.path().join("ipcs.sock");
        let listener = crate::server::bind_socket(&sock).unwrap();
        let differ = crate::differ::Differ::new(store.clone(), dir.path().join("mounts"));
        // The archive (CAR export/import) is not exercised here: its Kubo is never called.
        let kubo = crate::ipfs::KuboClient::new(
            &format!("unix://{}", dir.path().join("no-kubo.sock").display()),
            std::time::Duration::from_secs(1),
            1 << 20,
        )
        .unwrap();
        let archive = std::sync::Arc::new(crate::car::Archive::new(store.clone(), kubo));
        tokio::spawn(crate::server::serve(
            store,
            differ,
            archive,
            listener,
            32 << 20,
            std::future::pending(),
        ));
        let mut c = ContentClient::new(crate::server::client::connect(&sock).await.unwrap());
        c.info(InfoRequest {
            digest: d.to_string(),
        })
        .await
        .unwrap();
        let missing = format!("sha256:{}", "1".repeat(64));
        assert_eq!(
            c.info(InfoRequest { digest: missing })
                .await
                .unwrap_err()
                .code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            value(&m, r#"ipcs_rpc_requests_total{method="Info",code="Ok"}"#),
            1.0
        );
        assert_eq!(
            value(
                &m,
                r#"ipcs_rpc_requests_total{method="Info",code="NotFound"}"#
            ),
            1.0
        );
        let mut s = c
            .read(ReadContentRequest {
                digest: d.to_string(),
                offset: 0,
                size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let first = s.message().await.unwrap().unwrap();
        assert!(first.data.len() < data.len());
        assert_eq!(
            value(&m, r#"ipcs_rpc_duration_seconds_count{method="Read"}"#),
            0.0
        );
        while s.message().await.unwrap().is_some() {}
        // The server records when the body ends, just after the client saw the trailers.
        for _ in 0..100 {
            if value(&m, r#"ipcs_rpc_requests_total{method="Read",code="Ok"}"#) == 1.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            value(&m, r#"ipcs_rpc_requests_total{method="Read",code="Ok"}"#),
            1.0
        );
        assert_eq!(
            value(&m, r#"ipcs_served_bytes_total{source="cache"}"#),
            data.len() as f64
        );
    }

    #[test]
    fn method_names_and_codes() {
        assert_eq!(
            method_of("/containerd.services.content.v1.Content/Read"),
            "Read"
        );
        assert_eq!(
            method_of("/containerd.services.diff.v1.Diff/Apply"),
            "Apply"
        );
        assert_eq!(method_of("/ipcs.admin.v1.Admin/Stats"), "Stats");
        assert_eq!(
            method_of("/containerd.services.content.v1.Content/Nope"),
            "unknown"
        );
        assert_eq!(method_of("/x.Y/Read"), "unknown");
        assert_eq!(
            method_of("/containerd.services.diff.v1.Diff/Read"),
            "unknown"
        );
        let mut h = HeaderMap::new();
        assert_eq!(code_in(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(code_in(&h).as_deref(), Some("NotFound"));
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(code_in(&h).as_deref(), Some("Ok"));
    }
}
