//! Wires one node together: the Kubo backend named after the data dir's store id, peer
//! distribution plugged into the content core's hooks, and the core itself. `main` and
//! the tests that run a real node call this; nothing below imports it.
use crate::backend::{BlobBackend, KuboBackend, Metered};
use crate::car::Archive;
use crate::config::Config;
use crate::data::{identity, DataPaths};
use crate::ipfs::KuboClient;
use crate::metrics::Metrics;
use crate::peer::Peers;
use crate::store::{ContentStore, StoreError};
use std::sync::Arc;

pub struct Node {
    pub store: ContentStore,
    pub peers: Arc<Peers>,
    /// CAR export/import over the same store and Kubo node.
    pub archive: Arc<Archive>,
}

/// The Kubo backend of the store in `config.data_dir` (creating its id on first use).
pub async fn kubo_backend(config: &Config) -> Result<Arc<dyn BlobBackend>, StoreError> {
    let paths = DataPaths::new(&config.data_dir);
    let root = paths.root().to_path_buf();
    let pin_name = tokio::task::spawn_blocking(move || {
        paths.create_dirs().and_then(|_| identity::pin_name(&paths))
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))?
    .map_err(StoreError::io("reading the store id"))?;
    let kubo = kubo_client(config)?.with_pin_name(pin_name);
    let mut backend = KuboBackend::new(kubo, config.import.clone());
    if config.filestore {
        // Kubo records the path it is given, so it must be the absolute, real one.
        let root = tokio::task::spawn_blocking(move || std::fs::canonicalize(&root))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(StoreError::io("resolving the data dir"))?;
        backend
            .use_filestore(&root)
            .await
            .map_err(|source| StoreError::Ipfs {
                context: format!(
                    "filestore = true (each blob kept once) needs a Kubo with \
                     Experimental.FilestoreEnabled = true whose repo's parent directory \
                     contains data_dir ({}); enable it (`ipfs config --json \
                     Experimental.FilestoreEnabled true`, restart Kubo), move data_dir, or \
                     set filestore = false to keep a second copy in Kubo's blockstore",
                    root.display()
                ),
                source,
            })?;
    }
    Ok(Arc::new(backend))
}

fn kubo_client(config: &Config) -> Result<KuboClient, StoreError> {
    KuboClient::new(
        &config.kubo_api,
        config.kubo_timeout(),
        config.kubo_min_rate_bytes_per_sec,
    )
    .map_err(StoreError::ipfs("configuring kubo client"))
}

/// Opens the store over Kubo with peer distribution, and starts the cluster loop. Every
/// layer counts into `metrics` (Kubo calls through `backend::Metered`).
pub async fn open(config: &Config, metrics: Metrics) -> Result<Node, StoreError> {
    let backend = Arc::new(Metered::new(kubo_backend(config).await?, metrics.clone()));
    let peers = Peers::new(config).map_err(|e| StoreError::Internal(e.to_string()))?;
    let store = ContentStore::open(config, backend, peers.clone(), metrics).await?;
    peers.start(store.clone(), config.cluster_refresh());
    let archive = Arc::new(Archive::new(store.clone(), kubo_client(config)?));
    Ok(Node {
        store,
        peers,
        archive,
    })
}
