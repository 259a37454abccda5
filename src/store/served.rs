//! Counting the blob bytes the store hands out by where they came from. A blob fetched
//! from Kubo on a cache miss, or adopted from peers, gets a credit of its size under that
//! source; the bytes served next are taken from the credit, the rest counts as the
//! cache's. containerd asks Info (which adopts) and Reads in many 32 KiB pieces later, so
//! a per-request view would call every byte of an adopted blob a cache hit.
use crate::digest::Digest;
use crate::metrics::{Metrics, Source};
use std::collections::HashMap;
use std::sync::Mutex;

/// Credits outstanding at most; a fill beyond it is counted as the cache's when served
/// (a flood of fetches never read back cannot grow the table).
const MAX_CREDITS: usize = 4096;

#[derive(Default)]
pub(crate) struct Served {
    credits: Mutex<HashMap<Digest, (Source, u64)>>,
}

impl Served {
    /// `size` bytes of `d` just came from `source` into the cache.
    pub(crate) fn filled(&self, d: &Digest, source: Source, size: u64) {
        let mut c = self.credits.lock().expect("served credits");
        if c.len() < MAX_CREDITS || c.contains_key(d) {
            c.insert(d.clone(), (source, size));
        }
    }

    /// `bytes` of `d` are being handed out: counted against its credit first.
    pub(crate) fn serve(&self, metrics: &Metrics, d: &Digest, bytes: u64) {
        let from_credit = {
            let mut c = self.credits.lock().expect("served credits");
            match c.get_mut(d) {
                Some((source, left)) => {
                    let n = bytes.min(*left);
                    *left -= n;
                    let s = *source;
                    if *left == 0 {
                        c.remove(d);
                    }
                    Some((s, n))
                }
                None => None,
            }
        };
        let mut rest = bytes;
        if let Some((source, n)) = from_credit {
            metrics.served(source, n);
            rest -= n;
        }
        metrics.served(Source::Cache, rest);
    }

    /// The blob left the store: a later copy starts without credit.
    pub(crate) fn forget(&self, d: &Digest) {
        self.credits.lock().expect("served credits").remove(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(m: &Metrics, source: &str) -> u64 {
        let t = m.encode();
        let series = format!("ipcs_served_bytes_total{{source=\"{source}\"}} ");
        t.lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn the_first_size_bytes_after_a_fill_count_for_its_source() {
        let m = Metrics::new();
        let s = Served::default();
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        s.serve(&m, &d, 5);
        s.filled(&d, Source::Peers, 100);
        s.serve(&m, &d, 60);
        s.serve(&m, &d, 60);
        s.serve(&m, &d, 60);
        assert_eq!(bytes_of(&m, "peers"), 100);
        assert_eq!(bytes_of(&m, "cache"), 5 + 20 + 60);
        assert_eq!(bytes_of(&m, "kubo"), 0);
        s.filled(&d, Source::Kubo, 10);
        s.forget(&d);
        s.serve(&m, &d, 10);
        assert_eq!(bytes_of(&m, "kubo"), 0);
    }
}
