//! What the mirror counts beyond bytes: tags answered from the cluster while the registry
//! is away, and how in-flight downloads change hands (a source abandoned, a takeover of
//! a blob whose leader went away). Tests read these instead of the mirror's log lines.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceKind {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlobLabel {
    digest: String,
}

pub(super) struct MirrorFamilies {
    tags_from_cluster: Counter,
    abandoned: Family<SourceKind, Counter>,
    takeovers: Family<BlobLabel, Counter>,
    takeover_from: Family<BlobLabel, Gauge>,
}

fn kind(registry: bool) -> SourceKind {
    SourceKind {
        source: if registry { "registry" } else { "peer" },
    }
}

impl MirrorFamilies {
    pub(super) fn register(r: &mut Registry) -> MirrorFamilies {
        let f = MirrorFamilies {
            tags_from_cluster: Counter::default(),
            abandoned: Family::default(),
            takeovers: Family::default(),
            takeover_from: Family::default(),
        };
        r.register(
            "ipcs_mirror_tags_from_cluster",
            "Tags the mirror answered from the cluster's tag records because the registry did \
             not answer",
            f.tags_from_cluster.clone(),
        );
        r.register(
            "ipcs_inflight_abandoned",
            "In-flight sources given up (stalled, failed or gone), by kind: the registry, or \
             another node's mirror",
            f.abandoned.clone(),
        );
        r.register(
            "ipcs_inflight_takeovers",
            "Blobs this node went on downloading from the registry after the node it followed \
             went away, by digest (one series per blob taken over)",
            f.takeovers.clone(),
        );
        r.register(
            "ipcs_inflight_takeover_from_bytes",
            "The offset at which this node's last takeover of a blob asked the registry to \
             resume (Range), by digest",
            f.takeover_from.clone(),
        );
        f
    }

    pub(super) fn tag_from_cluster(&self) {
        self.tags_from_cluster.inc();
    }

    pub(super) fn abandoned(&self, registry: bool) {
        self.abandoned.get_or_create(&kind(registry)).inc();
    }

    pub(super) fn takeover(&self, digest: &str, from: u64) {
        let l = BlobLabel {
            digest: digest.to_string(),
        };
        self.takeovers.get_or_create(&l).inc();
        self.takeover_from
            .get_or_create(&l)
            .set(i64::try_from(from).unwrap_or(i64::MAX));
    }
}
