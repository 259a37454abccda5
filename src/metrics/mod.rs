//! What ipcs counts, and the Prometheus text it becomes. A leaf: the layers that count
//! (server, store, peer, backend, differ, mirror) hold a `Metrics` handle and call the
//! methods below with plain values; none of them sees a prometheus type, and this module
//! imports nothing of ipcs. Values that already live elsewhere (cache size, open Write
//! streams, the pinset's age) are sampled at scrape time through `sample`.
//!
//! `http` serves the text, `/healthz` and `/readyz` (off unless `metrics_listen` is set);
//! counting happens either way, it costs a few atomic adds.
pub mod http;
mod mirror;
mod sampled;

pub use mirror::InflightProgress;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

pub use sampled::Kind;

/// Where the bytes handed to a reader came from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Source {
    /// Already in the local blob cache.
    Cache,
    /// Fetched from the local Kubo node for this request (a cache miss).
    Kubo,
    /// Pulled from other nodes through IPFS and adopted.
    Peers,
}

/// How one attempt to adopt a blob from peers ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Adoption {
    Ok,
    /// Peers did not deliver (error or deadline).
    Failed,
    /// The DAG's bytes did not hash to the digest.
    RefusedDigest,
    /// The DAG's recorded size was not the blob's.
    RefusedSize,
}

/// Why containerd was left to get something from the registry itself.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Fallback {
    /// A blob missing here had no digest → CID hint (not in the cluster pinset).
    NotInCluster,
    /// Hints existed but peers did not deliver in time or failed.
    PeerFailed,
    /// Every hint was refused (wrong size or digest).
    VerificationFailed,
    /// The mirror asked the registry what a tag points to.
    MirrorTag,
    /// The mirror answered 404 (containerd asks the next host, the registry).
    MirrorNotFound,
}

/// Where the digest → CID hint behind a blob adopted from peers came from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Hint {
    /// The IPFS Cluster pinset.
    Cluster,
    /// An `ipfs://` URL on a descriptor of a committed manifest or index (or an
    /// `ipfs://<CID>` image's root).
    ManifestUrl,
}

impl Hint {
    pub fn label(self) -> &'static str {
        match self {
            Hint::Cluster => "cluster",
            Hint::ManifestUrl => "manifest_url",
        }
    }
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Kubo => "kubo",
            Source::Peers => "peers",
        }
    }
}

impl Adoption {
    pub fn label(self) -> &'static str {
        match self {
            Adoption::Ok => "ok",
            Adoption::Failed => "failed",
            Adoption::RefusedDigest => "refused_digest",
            Adoption::RefusedSize => "refused_size",
        }
    }
}

impl Fallback {
    pub fn label(self) -> &'static str {
        match self {
            Fallback::NotInCluster => "not_in_cluster",
            Fallback::PeerFailed => "peer_failed",
            Fallback::VerificationFailed => "verification_failed",
            Fallback::MirrorTag => "mirror_tag",
            Fallback::MirrorNotFound => "mirror_not_found",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HintLabel {
    hint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    call: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, 0.5 ms to ~16 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

struct Inner {
    registry: Registry,
    sampled: Arc<sampled::Sampled>,
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Histograms<MethodLabel>,
    served: Family<SourceLabel, Counter>,
    ingested: Counter,
    adoptions: Family<OutcomeLabel, Counter>,
    adopted_by_hint: Family<HintLabel, Counter>,
    fallbacks: Family<ReasonLabel, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    kubo_seconds: Histograms<CallLabel>,
    kubo_errors: Family<CallLabel, Counter>,
    pinset_blobs: Gauge,
    layers_applied: Counter,
    mirror: mirror::MirrorFamilies,
}

/// A handle on every metric of one process; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let rpcs = Family::<RpcLabels, Counter>::default();
        r.register(
            "ipcs_rpc_requests",
            "gRPC requests (content, diff, admin) by method and gRPC status code",
            rpcs.clone(),
        );
        let rpc_seconds: Histograms<MethodLabel> = Family::new_with_constructor(latency);
        r.register(
            "ipcs_rpc_duration_seconds",
            "gRPC request duration by method (streams: until the last message)",
            rpc_seconds.clone(),
        );
        let served = Family::<SourceLabel, Counter>::default();
        r.register(
            "ipcs_served_bytes",
            "Blob bytes handed out (Read, the mirror, the differ) by where they came from: the \
             cache, the local Kubo node on a cache miss, or peers (the first bytes served after \
             an adoption)",
            served.clone(),
        );
        let ingested = Counter::default();
        r.register(
            "ipcs_ingested_bytes",
            "Bytes received by Write streams",
            ingested.clone(),
        );
        let adoptions = Family::<OutcomeLabel, Counter>::default();
        r.register(
            "ipcs_peer_adoptions",
            "Attempts to adopt a blob from peers, by outcome",
            adoptions.clone(),
        );
        let adopted_by_hint = Family::<HintLabel, Counter>::default();
        r.register(
            "ipcs_peer_adopted_by_hint",
            "Blobs adopted from peers, by where the digest -> CID hint came from: the cluster \
             pinset or an ipfs:// URL on a manifest's descriptor",
            adopted_by_hint.clone(),
        );
        let fallbacks = Family::<ReasonLabel, Counter>::default();
        r.register(
            "ipcs_registry_fallbacks",
            "Times containerd was left to the registry, by reason",
            fallbacks.clone(),
        );
        let cache_hits = Counter::default();
        r.register(
            "ipcs_cache_hits",
            "Blob opens served from the local cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        r.register(
            "ipcs_cache_misses",
            "Blob opens that had to go to Kubo or peers",
            cache_misses.clone(),
        );
        let kubo_seconds: Histograms<CallLabel> = Family::new_with_constructor(latency);
        r.register(
            "ipcs_kubo_call_duration_seconds",
            "Kubo calls by kind (cat: until the stream starts)",
            kubo_seconds.clone(),
        );
        let kubo_errors = Family::<CallLabel, Counter>::default();
        r.register(
            "ipcs_kubo_call_errors",
            "Kubo calls that failed, by kind",
            kubo_errors.clone(),
        );
        let pinset_blobs = Gauge::default();
        r.register(
            "ipcs_cluster_pinset_blobs",
            "Blobs in the last IPFS Cluster pinset snapshot",
            pinset_blobs.clone(),
        );
        let layers_applied = Counter::default();
        r.register(
            "ipcs_differ_layers_applied",
            "Layers applied by ipcs's differ (Diff Apply that succeeded)",
            layers_applied.clone(),
        );
        let mirror = mirror::MirrorFamilies::register(&mut r);
        let sampled = Arc::new(sampled::Sampled::default());
        r.register_collector(Box::new(sampled.clone()));
        Metrics {
            inner: Arc::new(Inner {
                registry: r,
                sampled,
                rpcs,
                rpc_seconds,
                served,
                ingested,
                adoptions,
                adopted_by_hint,
                fallbacks,
                cache_hits,
                cache_misses,
                kubo_seconds,
                kubo_errors,
                pinset_blobs,
                layers_applied,
                mirror,
            }),
        }
    }

    /// One finished gRPC request. `code` is the gRPC code's name ("OK", "NotFound", …).
    pub fn rpc(&self, method: &str, code: &str, took: Duration) {
        let m = &self.inner;
        m.rpcs
            .get_or_create(&RpcLabels {
                method: method.to_string(),
                code: code.to_string(),
            })
            .inc();
        m.rpc_seconds
            .get_or_create(&MethodLabel {
                method: method.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn served(&self, source: Source, bytes: u64) {
        if bytes > 0 {
            self.inner
                .served
                .get_or_create(&SourceLabel {
                    source: source.label(),
                })
                .inc_by(bytes);
        }
    }

    pub fn ingested(&self, bytes: u64) {
        self.inner.ingested.inc_by(bytes);
    }

    pub fn adoption(&self, outcome: Adoption) {
        self.inner
            .adoptions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// One blob adopted from peers through a hint from `hint`.
    pub fn adopted_by_hint(&self, hint: Hint) {
        self.inner
            .adopted_by_hint
            .get_or_create(&HintLabel { hint: hint.label() })
            .inc();
    }

    /// Exports the progress of the in-flight blob `digest` while `registry` (or, if
    /// false, a peer's mirror) fills it, until the handle is dropped.
    pub fn inflight(&self, digest: &str, registry: bool) -> InflightProgress {
        self.inner.mirror.progress(digest, registry)
    }

    pub fn fallback(&self, reason: Fallback) {
        self.inner
            .fallbacks
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    pub fn cache_lookup(&self, hit: bool) {
        if hit {
            self.inner.cache_hits.inc();
        } else {
            self.inner.cache_misses.inc();
        }
    }

    /// One Kubo call of kind `call` ("add", "cat", "pin", …) that took `took`.
    pub fn kubo_call(&self, call: &'static str, took: Duration, ok: bool) {
        let m = &self.inner;
        m.kubo_seconds
            .get_or_create(&CallLabel { call })
            .observe(took.as_secs_f64());
        if !ok {
            m.kubo_errors.get_or_create(&CallLabel { call }).inc();
        }
    }

    pub fn pinset_blobs(&self, n: usize) {
        self.inner
            .pinset_blobs
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn layer_applied(&self) {
        self.inner.layers_applied.inc();
    }

    /// The mirror answered a tag from the cluster's record (the registry did not answer).
    pub fn mirror_tag_from_cluster(&self) {
        self.inner.mirror.tag_from_cluster();
    }

    /// An in-flight source was given up: the registry (`registry`) or a peer's mirror.
    pub fn inflight_abandoned(&self, registry: bool) {
        self.inner.mirror.abandoned(registry);
    }

    /// This node took over `digest` from the registry at byte `from`, after the node it
    /// followed went away.
    pub fn inflight_takeover(&self, digest: &str, from: u64) {
        self.inner.mirror.takeover(digest, from);
    }

    /// Adds a value read at each scrape (`None`: not exported this time). A second
    /// sampler under the same name replaces the first (one store per process).
    pub fn sample(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        read: impl Fn() -> Option<f64> + Send + Sync + 'static,
    ) {
        self.inner.sampled.add(name, help, kind, Box::new(read));
    }

    /// The Prometheus text exposition of every metric, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a collector that fails leaves its part out.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests;
