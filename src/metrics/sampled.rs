//! Metrics whose value lives elsewhere (the cache's size, open Write streams, the age of
//! the pinset snapshot): read at each scrape instead of mirrored into a gauge on every
//! change.
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::TypedMetric;
use std::sync::Mutex;

/// How a sampled value is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (exported with a `_total` suffix).
    Counter,
    Gauge,
}

type Read = Box<dyn Fn() -> Option<f64> + Send + Sync>;

struct Sampler {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    read: Read,
}

#[derive(Default)]
pub(super) struct Sampled {
    samplers: Mutex<Vec<Sampler>>,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampled")
    }
}

impl Sampled {
    pub(super) fn add(&self, name: &'static str, help: &'static str, kind: Kind, read: Read) {
        let mut s = self.samplers.lock().expect("samplers");
        s.retain(|x| x.name != name);
        s.push(Sampler {
            name,
            help,
            kind,
            read,
        });
    }
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for s in self.samplers.lock().expect("samplers").iter() {
            let Some(v) = (s.read)() else { continue };
            match s.kind {
                Kind::Counter => {
                    let m = ConstCounter::new(v);
                    let e = encoder.encode_descriptor(
                        s.name,
                        s.help,
                        None,
                        ConstCounter::<f64>::TYPE,
                    )?;
                    m.encode(e)?;
                }
                Kind::Gauge => {
                    let m = ConstGauge::new(v);
                    let e =
                        encoder.encode_descriptor(s.name, s.help, None, ConstGauge::<f64>::TYPE)?;
                    m.encode(e)?;
                }
            }
        }
        Ok(())
    }
}
