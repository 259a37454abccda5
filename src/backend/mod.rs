//! The blob backend seam: what the content core, the data cache, peer distribution and
//! fsck need from the place blob DAGs live. Production plugs in Kubo (`kubo`); the core's
//! unit tests plug in an in-memory fake (`memory`), so commit ordering, resume, locks,
//! delete and fsck rules are tested in seconds without a node.
//!
//! Every pin a store makes carries its name (`ipcs:<store id>`), so fsck can tell its own
//! pins from anybody else's. Errors are the Kubo client's error type: its variants
//! (unreachable, timeout, refused, local file) are what any backend can report, and
//! `server::status` maps them to gRPC codes.
mod kubo;
#[cfg(test)]
pub(crate) mod memory;
mod metered;
mod reference;

pub use crate::ipfs::KuboError as BackendError;
pub use kubo::KuboBackend;
pub use metered::Metered;
pub use reference::{BrokenReference, ByReference, DagLayout, LeafFile};

use crate::cid::Cid;
use bytes::Bytes;
use futures::Stream;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;
/// Bytes read back from the backend.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BackendError>> + Send>>;
/// Bytes handed to an import whose end is not known yet.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// One recursive pin and its name ("" when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinEntry {
    pub cid: Cid,
    pub name: String,
}

/// Whether a call may go to the network for missing blocks, or must use local ones only
/// (fsck and a commit's own pin: a missing block is a finding, not something to wait for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Network,
    Local,
}

pub trait BlobBackend: Send + Sync + 'static {
    /// Where the backend is, for messages ("kubo at http://…").
    fn address(&self) -> &str;
    /// The name this store gives its pins.
    fn pin_name(&self) -> &str;
    /// Deadline for a call moving `bytes` of blob data.
    fn transfer_timeout(&self, bytes: u64) -> Duration;
    /// The backend's version, as a health check.
    fn version(&self) -> BoxFut<'_, String>;

    /// Imports the file at `path` (`size` bytes, streamed) and pins it by name.
    fn add_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid>;
    /// The CID `add_file` would give the file at `path`, storing and pinning nothing
    /// (fsck recognises an interrupted commit's pin by it).
    fn hash_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid>;
    /// Imports a body still being produced and pins it by name. Dropping the future
    /// aborts the import and pins nothing; the caller bounds the wait.
    fn add_stream(&self, body: BodyStream) -> BoxFut<'static, Cid>;
    /// Imports a small record (a tag) under an anonymous pin: it is not a blob of this
    /// store, fsck must not treat it as one.
    fn add_record(&self, data: Vec<u8>) -> BoxFut<'_, Cid>;
    /// Streams `length` bytes of `cid` from `offset`.
    fn cat<'a>(
        &'a self,
        cid: &'a Cid,
        offset: u64,
        length: u64,
        reach: Reach,
    ) -> BoxFut<'a, ByteStream>;
    /// Pins `cid` recursively by name (`size` scales the deadline).
    fn pin<'a>(&'a self, cid: &'a Cid, size: u64, reach: Reach) -> BoxFut<'a, ()>;
    /// Removes the recursive pin of `cid`; a CID that is not pinned counts as unpinned.
    fn unpin<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, ()>;
    /// The name of `cid`'s recursive pin: None if not pinned, Some("") if unnamed.
    fn pinned_as<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, Option<String>>;
    /// The file size recorded in `cid`'s root (one block fetched).
    fn stat<'a>(&'a self, cid: &'a Cid) -> BoxFut<'a, u64>;
    /// Brings every block of `cid` into the node without pinning; returns the block count.
    fn fetch<'a>(&'a self, cid: &'a Cid, size: u64) -> BoxFut<'a, u64>;
    /// Every recursive pin, with its name.
    fn pins(&self) -> BoxFut<'_, Vec<PinEntry>>;
    /// Bytes the backend itself keeps on disk (Kubo: `repo stat`), not counting the files
    /// it references.
    fn disk_usage(&self) -> BoxFut<'_, u64>;
    /// Imports that keep references to this store's files instead of copies, when the
    /// backend is set up for them (Kubo's filestore); None keeps copies.
    fn by_reference(&self) -> Option<&dyn ByReference>;
}
