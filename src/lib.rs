//! ipcs: a containerd content store that keeps every blob in IPFS.
//!
//! Layering, top to bottom (nothing imports upward):
//! - faces: `server` (containerd's gRPC API, the only user of generated protobuf types)
//!   and `mirror` (a registry mirror over HTTP);
//! - `peer`: peer distribution (cluster publishing, hints, adoption), plugged into the
//!   core's hooks; `fsck`: the offline checker;
//! - `store`: the content core, owning two seams: `backend::BlobBackend` and
//!   `store::hooks::Distribution`;
//! - `data` (data dir layout, blob cache), `backend` (the Kubo backend), `index` (redb);
//! - `differ` (containerd's Diff service's Apply) and `ipfs_push` (nerdctl's `ipfs://`
//!   format written from the store) sit beside the faces, over `store`;
//!   `car` (CAR export/import of images) and `dedup` (the block-level dedup report) too,
//!   over `store` and Kubo's DAG commands (`ipfs`); `cli` holds the client side of
//!   `ipcs export`, `import`, `compare` and `ipfs-push`;
//! - leaves: `ipfs` (Kubo's HTTP client), `endpoint`, `running` (an HTTP endpoint's stop
//!   handle), `filter`, `digest`, `cid`, `unixfs` (a file's CID, computed as it streams
//!   in), `config`.
pub mod backend;
pub mod car;
pub mod cid;
pub mod cli;
pub mod config;
pub mod data;
pub mod dedup;
pub mod differ;
pub mod digest;
pub mod endpoint;
pub mod filter;
pub mod fsck;
pub mod index;
pub mod ipfs;
pub mod ipfs_push;
pub mod metrics;
pub mod mirror;
pub mod node;
pub mod peer;
pub mod running;
pub mod server;
pub mod share_policy;
pub mod store;
pub mod unixfs;
