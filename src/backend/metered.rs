//! A backend that times every call of the one it wraps and counts its failures, per
//! kind of call (`ipcs_kubo_call_duration_seconds`, `ipcs_kubo_call_errors_total`).
//! `node` wraps the Kubo backend with it; the core and the cache never know.
use crate::backend::{
    BlobBackend, BodyStream, BoxFut, ByReference, ByteStream, DagLayout, PinEntry, Reach,
};
use crate::cid::Cid;
use crate::metrics::Metrics;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Metered {
    inner: Arc<dyn BlobBackend>,
    metrics: Metrics,
}

impl Metered {
    pub fn new(inner: Arc<dyn BlobBackend>, metrics: Metrics) -> Metered {
        Metered { inner, metrics }
    }
}

fn timed<'a, T: 'a>(
    metrics: &Metrics,
    call: &'static str,
    fut: impl Future<Output = Result<T, crate::backend::BackendError>> + Send + 'a,
) -> BoxFut<'a, T> {
    let metrics = metrics.clone();
    Box::pin(async move {
        let started = Instant::now();
        let r = fut.await;
        metrics.kubo_call(call, started.elapsed(), r.is_ok());
        r
    })
}

impl BlobBackend for Metered {
    fn address(&self) -> &str {
        self.inner.address()
    }

    fn pin_name(&self) -> &str {
        self.inner.pin_name()
    }

    fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.inner.transfer_timeout(bytes)
    }

    fn version(&self) -> BoxFut<'_, String> {
        timed(&self.metrics, "version", self.inner.version())
    }

    fn add_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid> {
        timed(&self.metrics, "add_file", self.inner.add_file(path, size))
    }

    fn hash_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid> {
        timed(&self.metrics, "hash_file", self.inner.hash_file(path, size))
    }

    fn add_stream(&self, body: BodyStream) -> BoxFut<'static, Cid> {
        timed(&self.metrics, "add_stream", self.inner.add_stream(body))
    }

    fn add_record(&self, data: Vec<u8>) -> BoxFut<'_, Cid> {
        timed(&self.metrics, "add_record", self.inner.add_record(data))
    }

    fn cat<'a>(
        &'a self,
        cid: &'a Cid,
        offset: u64,
        length: u64,
        reach: Reach,
    ) -> BoxFut<'a, ByteStream> {
        timed(
            &self.metrics,
            "cat",
            self.inner.cat(cid, offset, length, reach),
        )
    }

    fn pin<'a>(&'a self, cid: &'a Cid, size: u64, reach: Reach) -> BoxFut<'a, ()> {
        timed(&self.metrics, "pin", self.inner.pin(cid, size, reach))
    }

    fn unpin<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, ()> {
        timed(&self.metrics, "unpin", self.inner.unpin(cid))
    }

    fn pinned_as<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, Option<String>> {
        timed(&self.metrics, "pinned_as", self.inner.pinned_as(cid))
    }

    fn stat<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, u64> {
        timed(&self.metrics, "stat", self.inner.stat(cid))
    }

    fn fetch<'a>(&'a self, cid: &'a Cid, size: u64) -> BoxFut<'a, u64> {
        timed(&self.metrics, "fetch", self.inner.fetch(cid, size))
    }

    fn pins(&self) -> BoxFut<'_, Vec<PinEntry>> {
        timed(&self.metrics, "pins", self.inner.pins())
    }

    fn disk_usage(&self) -> BoxFut<'_, u64> {
        timed(&self.metrics, "disk_usage", self.inner.disk_usage())
    }

    // Imports by reference are timed as the import they are: `keep_file` below.
    fn by_reference(&self) -> Option<&dyn ByReference> {
        self.inner.by_reference().map(|_| self as &dyn ByReference)
    }
}

impl ByReference for Metered {
    fn layout(&self) -> Option<DagLayout> {
        self.inner.by_reference()?.layout()
    }

    fn keep_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid> {
        let inner = self.inner.by_reference().expect("checked by by_reference");
        timed(&self.metrics, "keep_file", inner.keep_file(path, size))
    }

    fn leaf_files<'a>(
        &'a self,
        cid: &'a Cid,
        size: u64,
    ) -> BoxFut<'a, Vec<crate::backend::LeafFile>> {
        let inner = self.inner.by_reference().expect("checked by by_reference");
        timed(&self.metrics, "leaf_files", inner.leaf_files(cid, size))
    }

    fn drop_blocks<'a>(&'a self, cids: &'a [String]) -> BoxFut<'a, ()> {
        let inner = self.inner.by_reference().expect("checked by by_reference");
        timed(&self.metrics, "drop_blocks", inner.drop_blocks(cids))
    }

    fn broken_references<'a>(
        &'a self,
        root: &'a Path,
        deadline: Duration,
    ) -> BoxFut<'a, Vec<crate::backend::BrokenReference>> {
        let inner = self.inner.by_reference().expect("checked by by_reference");
        timed(
            &self.metrics,
            "broken_references",
            inner.broken_references(root, deadline),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    #[tokio::test]
    async fn every_call_is_timed_and_failures_counted_by_kind() {
        let m = Metrics::new();
        let b = Metered::new(Arc::new(MemoryBackend::default()), m.clone());
        let cid = b.add_record(b"x".to_vec()).await.unwrap();
        b.stat(&cid).await.unwrap();
        let missing: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap();
        assert!(b.stat(&missing).await.is_err());
        let t = m.encode();
        let v = |s: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(s)?.strip_prefix(' ')?.parse::<f64>().ok())
        };
        assert_eq!(
            v(r#"ipcs_kubo_call_duration_seconds_count{call="add_record"}"#),
            Some(1.0),
            "{t}"
        );
        assert_eq!(
            v(r#"ipcs_kubo_call_duration_seconds_count{call="stat"}"#),
            Some(2.0)
        );
        assert_eq!(v(r#"ipcs_kubo_call_errors_total{call="stat"}"#), Some(1.0));
        assert_eq!(v(r#"ipcs_kubo_call_errors_total{call="add_record"}"#), None);
    }
}
