//! A read-only OCI registry mirror for containerd's `hosts.toml`, on a loopback address.
//! With it, a node resolves image tags and manifests through ipcs: tags are passed to the
//! real registry (named by containerd's `ns` query parameter) while it answers, and each
//! answer is published to the cluster; when the registry is unreachable, the tag is
//! answered from what peers published. Manifests and blobs are served from the store,
//! which fetches and verifies them from peers. Anything unknown is 404, and containerd
//! then asks the next host — the registry itself. Every request must carry the secret
//! header (`auth.rs`); one without it gets 401 and no bytes, before any route runs.
//! Under `/v2/ipfs/<CID>/` it serves nerdctl's `ipfs://` images, with no registry at all
//! (`ipfs_routes`).
pub mod auth;
pub mod inflight;
mod ipfs_routes;
mod routes;
pub mod swarm;
mod upstream;

use crate::config::Config;
use crate::peer::Peers;
use crate::share_policy::SharePolicy;
use crate::store::ContentStore;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Mirror {
    store: ContentStore,
    peers: Arc<Peers>,
    upstream: upstream::Upstream,
    /// In-flight sharing (`swarm_peers_file` or `swarm`): the members and the entries.
    swarm: Option<(Arc<swarm::Swarm>, Arc<inflight::Inflight>)>,
    policy: SharePolicy,
}

pub use crate::running::Running;

/// Serves the mirror on `addr` until `Running::stop` (or the process ends).
/// Requests must carry `secret`.
pub async fn serve(
    store: ContentStore,
    peers: Arc<Peers>,
    addr: SocketAddr,
    secret: auth::Secret,
    config: &Config,
) -> std::io::Result<Running> {
    let upstream = upstream::Upstream::new(config.registry_plain_http.clone())
        .map_err(std::io::Error::other)?;
    let swarm = if config.in_flight_sharing() {
        let tuning = inflight::Tuning {
            stall: std::time::Duration::from_secs(config.inflight_stall_secs),
            min_rate: config.inflight_min_rate_bytes_per_sec,
            keep: std::time::Duration::from_secs(config.inflight_keep_secs),
        };
        let inflight = inflight::Inflight::new(
            config.data_dir.join("inflight"),
            &secret,
            config.registry_plain_http.clone(),
            tuning,
            store.metrics().clone(),
        )?;
        let discovered: Option<swarm::Discovered> = config.swarm.then(|| {
            let p = peers.clone();
            Box::new(move || p.swarm_members()) as swarm::Discovered
        });
        let me = Arc::new(swarm::Swarm::new(
            &format!("http://{addr}"),
            config.swarm_peers_file.clone(),
            discovered,
        ));
        let weak = Arc::downgrade(&me);
        store.metrics().sample(
            "ipcs_swarm_members",
            "Members of the in-flight sharing swarm this node ranks blobs over, itself included \
             (peers file and unexpired cluster member records)",
            crate::metrics::Kind::Gauge,
            move || Some(weak.upgrade()?.members().len() as f64),
        );
        tracing::info!(
            me = %me.me(),
            peers_file = ?config.swarm_peers_file,
            from_cluster = config.swarm,
            "in-flight sharing on"
        );
        Some((me, Arc::new(inflight)))
    } else {
        None
    };
    let secret = Arc::new(secret);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "registry mirror listening");
    let mirror = Arc::new(Mirror {
        store,
        peers,
        upstream,
        swarm,
        policy: SharePolicy::new(&config.share_repositories),
    });
    // Every task holds a receiver; `Sender::closed` resolves when the last one is gone.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.wait_for(|s| *s) => return,
            };
            let (stream, _) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "mirror accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let m = mirror.clone();
            let secret = secret.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let m = m.clone();
                    let given = req.headers().get(auth::HEADER).map(|v| v.as_bytes());
                    let allowed = secret.matches(given);
                    async move {
                        if !allowed {
                            return Ok::<_, std::convert::Infallible>(routes::unauthorized());
                        }
                        Ok(routes::handle(&m, req).await)
                    }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = stopped.wait_for(|s| *s) => {}
                }
                // Finish the request in flight, then close (keep-alive ends).
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
    });
    Ok(Running::new(stop))
}
