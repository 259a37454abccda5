//! ipcs: a containerd content store that keeps every blob in IPFS.
//!
//! Layering: `server` → `differ` → `store`; `server`, `mirror` → `store` → {`index`,
//! `ipfs`, `resolve`}; `digest`, `config` and `endpoint` are leaves.
//! Nothing imports upward, and only `server` touches generated protobuf types.
pub mod config;
pub mod differ;
pub mod digest;
pub mod endpoint;
pub mod index;
pub mod ipfs;
pub mod mirror;
pub mod resolve;
pub mod server;
pub mod store;
