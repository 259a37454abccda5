//! What the core counts: bytes served by source, bytes ingested, cache hits and misses,
//! open ingests and the cache's size, over the in-memory backend.
use crate::backend::memory::MemoryBackend;
use crate::store::testkit::{digest_of, open, put, read_all, uncache};
use crate::store::ContentStore;

fn value(store: &ContentStore, series: &str) -> f64 {
    let t = store.metrics().encode();
    t.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn served(store: &ContentStore, source: &str) -> f64 {
    value(
        store,
        &format!("ipcs_served_bytes_total{{source=\"{source}\"}}"),
    )
}

#[tokio::test]
async fn reads_count_by_source_cache_then_kubo() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _backend) = open(dir.path()).await;
    let d = put(&store, "r", b"hello world").await.unwrap();
    assert_eq!(value(&store, "ipcs_ingested_bytes_total"), 11.0);
    read_all(&store, &d).await.unwrap();
    assert_eq!(served(&store, "cache"), 11.0);
    assert_eq!(value(&store, "ipcs_cache_hits_total"), 1.0);
    assert_eq!(value(&store, "ipcs_cache_bytes"), 11.0);
    uncache(&store, &d);
    assert_eq!(value(&store, "ipcs_cache_bytes"), 0.0);
    // The miss is fetched from the backend: its bytes are Kubo's, in ranged reads too.
    let mut s = store.read(&d, 0, 4).await.unwrap();
    while futures::StreamExt::next(&mut s).await.is_some() {}
    read_all(&store, &d).await.unwrap();
    assert_eq!(value(&store, "ipcs_cache_misses_total"), 1.0);
    assert_eq!(served(&store, "kubo"), 11.0);
    assert_eq!(served(&store, "cache"), 11.0 + 4.0);
    assert_eq!(served(&store, "peers"), 0.0);
    // The differ's verified file counts as served too.
    store.open_verified(&d).await.unwrap();
    assert_eq!(served(&store, "cache"), 11.0 + 4.0 + 11.0);
}

#[tokio::test]
async fn an_adopted_blob_is_served_as_peers_not_kubo() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path()).await;
    let data = b"from another node";
    let cid = backend.put_unpinned(data);
    let d = digest_of(data);
    store.adopt(&d, &cid, data.len() as u64).await.unwrap();
    read_all(&store, &d).await.unwrap();
    assert_eq!(served(&store, "peers"), data.len() as f64);
    assert_eq!(served(&store, "kubo"), 0.0);
    read_all(&store, &d).await.unwrap();
    assert_eq!(served(&store, "cache"), data.len() as f64);
    assert_eq!(cid, MemoryBackend::cid_of(data));
}

#[tokio::test]
async fn open_write_streams_are_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _backend) = open(dir.path()).await;
    assert_eq!(value(&store, "ipcs_open_ingests"), 0.0);
    let w = store.writer("a", 3, None).await.unwrap();
    assert_eq!(value(&store, "ipcs_open_ingests"), 1.0);
    drop(w);
    assert_eq!(value(&store, "ipcs_open_ingests"), 0.0);
}
