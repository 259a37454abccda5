//! Peer distribution, plugged into the content core's hooks (`store::hooks`). On a
//! commit event it notes the blob for publishing to IPFS Cluster and learns a manifest's
//! `ipfs://` hints and prefetches its layers; on a read miss it asks the resolver for
//! digest → CID hints and has the core adopt the blob if one proves right.
//!
//! With `swarm = true` it also announces this node as a member of the swarm in the
//! pinset and tells the mirror which members the pinset names (`swarm_members`).
//!
//! Files: `adopt` (read misses and prefetch), `publish` (the cluster loop and tag
//! records), `resolve` (the hint view), `cluster` (IPFS Cluster's REST API), `manifest`
//! (parsing manifests for hints and blob lists), `members` (member records),
//! `rfc3339` (the cluster's timestamps).
mod adopt;
pub mod cluster;
mod manifest;
pub mod members;
mod publish;
mod resolve;
mod rfc3339;

pub use resolve::{Resolver, TagRecord};

use crate::config::Config;
use crate::data::SingleFlight;
use crate::digest::Digest;
use crate::store::{ContentStore, Distribution, Info};
use cluster::ClusterClient;
use futures::future::BoxFuture;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

pub struct Peers {
    resolver: Resolver,
    cluster: Option<ClusterClient>,
    peer_deadline: Duration,
    /// One adoption per digest at a time: containerd's Info and the layer prefetch
    /// often ask for the same blob together.
    adopting: SingleFlight<Digest>,
    /// Bounds how many blobs of a manifest are fetched in the background at once.
    prefetch_slots: Arc<Semaphore>,
    /// Set when some local blob may be missing from the cluster pinset.
    unpublished: AtomicBool,
    publish_now: Notify,
    /// Which blobs may be published at all (`share_repositories`).
    share: crate::share_policy::SharePolicy,
    /// This node's member record (`swarm = true` with a cluster and a mirror).
    member: Option<members::Announce>,
}

impl Peers {
    pub fn new(config: &Config) -> Result<Arc<Peers>, cluster::ClusterError> {
        let cluster = config
            .cluster_api
            .as_ref()
            .map(|api| ClusterClient::new(api, config.kubo_timeout(), config.cluster_replication))
            .transpose()?;
        // The URL the mirror calls itself (`Swarm::me`): both come from `mirror_listen`.
        let member = match (&cluster, config.swarm, &config.mirror_listen) {
            (Some(_), true, Some(addr)) => addr
                .parse::<std::net::SocketAddr>()
                .ok()
                .map(|a| members::Announce::new(format!("http://{a}"))),
            _ => None,
        };
        Ok(Arc::new(Peers {
            resolver: Resolver::default(),
            cluster,
            peer_deadline: config.peer_fetch_deadline(),
            adopting: SingleFlight::default(),
            prefetch_slots: Arc::new(Semaphore::new(adopt::PREFETCH_CONCURRENCY)),
            unpublished: AtomicBool::new(true),
            publish_now: Notify::new(),
            share: crate::share_policy::SharePolicy::new(&config.share_repositories),
            member,
        }))
    }

    /// Starts the cluster loop (when a cluster is configured) over `store`.
    pub fn start(self: &Arc<Self>, store: ContentStore, every: Duration) {
        if self.cluster.is_some() {
            if self.member.is_some() {
                members::spawn(self.clone(), store.clone());
            }
            publish::spawn(self.clone(), store, every);
        }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }
}

impl Distribution for Peers {
    fn committed(self: Arc<Self>, core: ContentStore, rec: Info) -> BoxFuture<'static, ()> {
        self.unpublished
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.publish_now.notify_one();
        Box::pin(async move { self.learn_if_manifest(&core, &rec).await })
    }

    fn imported(self: Arc<Self>, _core: ContentStore, _rec: Info) -> BoxFuture<'static, ()> {
        self.unpublished
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.publish_now.notify_one();
        Box::pin(async {})
    }

    fn read_miss(
        self: Arc<Self>,
        core: ContentStore,
        digest: Digest,
    ) -> BoxFuture<'static, Option<Info>> {
        Box::pin(async move {
            match self.adopt_from_peers(&core, &digest).await {
                Ok(info) => Some(info),
                Err(why) => {
                    // containerd now downloads the blob from the registry.
                    if let Some(why) = why {
                        core.metrics().fallback(why);
                    }
                    None
                }
            }
        })
    }
}
