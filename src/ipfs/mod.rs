//! Everything that talks to IPFS: the typed client for Kubo's HTTP RPC API.
mod dag;
mod kubo;

pub use dag::{DagImport, RefsWalk};
pub use kubo::{AddedBlob, KuboClient, KuboError, PinEntry, UNIXFS_FILE_MAX_LINKS};
