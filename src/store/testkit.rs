//! Test helpers: a store over the in-memory backend in a temp dir, and whole-blob writes.
use crate::backend::memory::MemoryBackend;
use crate::config::Config;
use crate::digest::{Algorithm, Digest, Digester};
use crate::store::{ContentStore, Distribution, Standalone, StoreError, WriteAction, WriteRequest};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub(crate) fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        lock_wait_ms: 100,
        ..Config::default()
    }
}

pub(crate) async fn open_with(
    dir: &Path,
    hooks: Arc<dyn Distribution>,
) -> (ContentStore, Arc<MemoryBackend>) {
    let backend = Arc::new(MemoryBackend::default());
    let store = ContentStore::open(&config(dir), backend.clone(), hooks, Default::default())
        .await
        .unwrap();
    (store, backend)
}

pub(crate) async fn open(dir: &Path) -> (ContentStore, Arc<MemoryBackend>) {
    open_with(dir, Arc::new(Standalone)).await
}

pub(crate) fn digest_of(data: &[u8]) -> Digest {
    let mut h = Digester::new(Algorithm::Sha256);
    h.update(data);
    h.digest()
}

pub(crate) fn msg(action: WriteAction, offset: i64, data: &[u8]) -> WriteRequest {
    WriteRequest {
        action,
        total: 0,
        expected: None,
        offset,
        data: Bytes::copy_from_slice(data),
        labels: BTreeMap::new(),
    }
}

/// Writes `data` under `r` and commits it in one message.
pub(crate) async fn put(store: &ContentStore, r: &str, data: &[u8]) -> Result<Digest, StoreError> {
    let mut w = store.writer(r, data.len() as i64, None).await?;
    w.handle(msg(WriteAction::Commit, 0, data)).await?;
    Ok(digest_of(data))
}

pub(crate) async fn read_all(store: &ContentStore, d: &Digest) -> Result<Vec<u8>, StoreError> {
    let mut s = store.read(d, 0, 0).await?;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?.1);
    }
    Ok(out)
}

/// Drops a blob's cached copy, so the next read goes to the backend.
pub(crate) fn uncache(store: &ContentStore, d: &Digest) {
    store.inner.cache.remove(d).unwrap();
}
