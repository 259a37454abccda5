//! A read-only OCI registry mirror for containerd's `hosts.toml`, on a loopback address.
//! With it, a node resolves image tags and manifests through ipcs: tags are passed to the
//! real registry (named by containerd's `ns` query parameter) while it answers, and each
//! answer is published to the cluster; when the registry is unreachable, the tag is
//! answered from what peers published. Manifests and blobs are served from the store,
//! which fetches and verifies them from peers. Anything unknown is 404, and containerd
//! then asks the next host — the registry itself. Under `/v2/ipfs/<CID>/` it serves
//! nerdctl's `ipfs://` images, with no registry at all (`ipfs_routes`).
mod ipfs_routes;
mod routes;
mod upstream;

use crate::store::ContentStore;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Mirror {
    store: ContentStore,
    upstream: upstream::Upstream,
}

/// Serves the mirror on `addr` until the process ends.
pub async fn serve(store: ContentStore, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "registry mirror listening");
    let mirror = Arc::new(Mirror {
        store,
        upstream: upstream::Upstream::new(),
    });
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "mirror accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let m = mirror.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let m = m.clone();
                    async move { Ok::<_, std::convert::Infallible>(routes::handle(&m, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}
