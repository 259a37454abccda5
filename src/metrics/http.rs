//! The metrics endpoint: `GET /metrics` (Prometheus text), `/healthz` (the process
//! serves) and `/readyz` (the caller's readiness check passed: for `ipcs serve`, Kubo
//! answers and the index is open). Off unless `metrics_listen` names a loopback TCP
//! address or a unix socket; like the mirror it stops accepting on SIGTERM and finishes
//! the requests in flight.
use crate::metrics::Metrics;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    /// `unix:///path/metrics.sock` or a loopback `host:port` (`127.0.0.1:9464`,
    /// `[::1]:9464`); anything else is refused: the endpoint has no authentication.
    pub fn parse(s: &str) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a unix socket path must be absolute"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|e| format!("{s:?}: {e} (want 127.0.0.1:PORT or unix:///path)"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("{s} is not a loopback address"));
        }
        Ok(Listen::Tcp(addr))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// Whether the process can do its work; `Err` says why not.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The longest `/readyz` waits for its check before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::running::Running;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";
/// What prometheus-client's text encoder writes (OpenMetrics text, ends in `# EOF`).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn route(
    metrics: &Metrics,
    ready: &ReadyCheck,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, OPENMETRICS, metrics.encode()),
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => match tokio::time::timeout(READY_TIMEOUT, ready()).await {
            Ok(Ok(())) => text(StatusCode::OK, PLAIN, "ready\n".into()),
            Ok(Err(why)) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("not ready: {why}\n"),
            ),
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("not ready: no answer within {READY_TIMEOUT:?}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// A unix socket at `path` readable by its owner and group only. An old socket there is
/// replaced; any other file is refused, never removed.
fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o750))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serves the endpoint on `at` until `Running::stop`.
pub async fn serve(at: &Listen, metrics: Metrics, ready: ReadyCheck) -> std::io::Result<Running> {
    let listener = match at {
        Listen::Tcp(a) => Listener::Tcp(tokio::net::TcpListener::bind(a).await?),
        Listen::Unix(p) => Listener::Unix(bind_unix(p)?),
    };
    tracing::info!(listen = %at, "metrics endpoint listening");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = accept(&listener) => a,
                _ = stopped.wait_for(|s| *s) => return,
            };
            let io = match accepted {
                Ok(io) => io,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (metrics, ready) = (metrics.clone(), ready.clone());
                    async move { Ok::<_, std::convert::Infallible>(route(&metrics, &ready, req).await) }
                });
                match io {
                    Io::Tcp(s) => connection(TokioIo::new(s), svc, &mut stopped).await,
                    Io::Unix(s) => connection(TokioIo::new(s), svc, &mut stopped).await,
                }
            });
        }
    });
    Ok(Running::new(stop))
}

enum Io {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<Io> {
    Ok(match l {
        Listener::Tcp(l) => Io::Tcp(l.accept().await?.0),
        Listener::Unix(l) => Io::Unix(l.accept().await?.0),
    })
}

async fn connection<I, S>(io: I, svc: S, stopped: &mut tokio::sync::watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
