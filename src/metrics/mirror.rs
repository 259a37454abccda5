//! What the mirror exports: the progress of each in-flight download and who fills it,
//! tags answered from the cluster while the registry is away, and how in-flight
//! downloads change hands (a source abandoned, a takeover of a blob whose leader went
//! away). Tests read these instead of the mirror's log lines.
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InflightLabels {
    digest: String,
    source: &'static str,
}

pub(super) struct MirrorFamilies {
    inflight: Family<InflightLabels, Gauge>,
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
            inflight: Family::default(),
            tags_from_cluster: Counter::default(),
            abandoned: Family::default(),
            takeovers: Family::default(),
            takeover_from: Family::default(),
        };
        r.register(
            "ipcs_inflight_written_bytes",
            "Bytes of a blob being fetched into the mirror's in-flight file so far, by digest and \
             the source filling it now (registry: this node leads it; peer: it follows another \
             node's mirror); present only while that source fills it",
            f.inflight.clone(),
        );
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

    pub(super) fn progress(&self, digest: &str, registry: bool) -> InflightProgress {
        let labels = InflightLabels {
            digest: digest.to_string(),
            source: kind(registry).source,
        };
        let family = self.inflight.clone();
        let gauge = family.get_or_create_owned(&labels);
        InflightProgress {
            family,
            labels,
            gauge,
        }
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

/// One in-flight blob's series (`Metrics::inflight`); removed from the export on drop,
/// so the series lives exactly as long as one source fills the file.
pub struct InflightProgress {
    family: Family<InflightLabels, Gauge>,
    labels: InflightLabels,
    gauge: Gauge,
}

impl InflightProgress {
    pub fn set(&self, written: u64) {
        self.gauge.set(i64::try_from(written).unwrap_or(i64::MAX));
    }
}

impl Drop for InflightProgress {
    fn drop(&mut self) {
        self.family.remove(&self.labels);
    }
}
