//! Everything that talks to IPFS: the typed client for Kubo's HTTP RPC API.
mod kubo;

pub use kubo::{AddedBlob, KuboClient, KuboError, PinEntry};
