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

/// The method's short name from the gRPC path (`/containerd.services.content.v1.Content/Read`).
fn method_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
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
                    metrics.rpc(&method, "Internal", started.elapsed());
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
    method: String,
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
            d.metrics.rpc(&d.method, code, took);
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

    #[test]
    fn method_names_and_codes() {
        assert_eq!(
            method_of("/containerd.services.content.v1.Content/Read"),
            "Read"
        );
        let mut h = HeaderMap::new();
        assert_eq!(code_in(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(code_in(&h).as_deref(), Some("NotFound"));
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(code_in(&h).as_deref(), Some("Ok"));
    }
}
