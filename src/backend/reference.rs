//! The seam for a backend that keeps a blob by reference to the store's own file (Kubo's
//! filestore: `add --nocopy`) instead of a second copy of its bytes. The store then owns
//! the only copy: the file must hold exactly the imported bytes for as long as any pinned
//! DAG reads from it. Kubo keeps one reference per block, the first one made, so a DAG can
//! read a shared block from another blob's file; `leaf_files` tells where each leaf of a
//! DAG really reads from, which is how the store finds those dependencies.
use crate::backend::BoxFut;
use crate::cid::Cid;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where one leaf block of a DAG kept by reference reads its bytes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFile {
    pub leaf: String,
    pub file: PathBuf,
}

/// A block kept as a reference into a file that no longer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenReference {
    pub cid: String,
    pub path: String,
    pub offset: u64,
    pub problem: String,
}

/// The DAG shape a backend's import gives a file, when it is one ipcs can compute the
/// CID of itself while the bytes stream in (`crate::unixfs`): CIDv1, sha2-256, raw leaves
/// of `chunk_size` bytes, balanced, at most `max_links` links per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DagLayout {
    pub chunk_size: u32,
    pub max_links: u32,
}

pub trait ByReference: Send + Sync {
    /// The shape `keep_file` gives a file's DAG, if ipcs can compute its CID itself.
    fn layout(&self) -> Option<DagLayout>;
    /// Imports the file at `path` (`size` bytes) keeping references to it, and pins it by
    /// the store's name. The file must not change while the pin (or a DAG sharing one of
    /// its blocks) lives.
    fn keep_file<'a>(&'a self, path: &'a Path, size: u64) -> BoxFut<'a, Cid>;
    /// The file each leaf of `cid`'s DAG is kept in (leaves kept as copies are left out),
    /// read from the DAG's inner nodes only: no leaf is read.
    fn leaf_files<'a>(&'a self, cid: &'a Cid, size: u64) -> BoxFut<'a, Vec<LeafFile>>;
    /// Removes blocks: a reference whose file is gone goes with its key, so the next
    /// import of those bytes stores them afresh. The backend refuses pinned blocks.
    fn drop_blocks<'a>(&'a self, cids: &'a [String]) -> BoxFut<'a, ()>;
    /// Every reference into a file under `root` that does not read back as its block (the
    /// file is gone or changed), checked by the backend within `deadline`.
    fn broken_references<'a>(
        &'a self,
        root: &'a Path,
        deadline: Duration,
    ) -> BoxFut<'a, Vec<BrokenReference>>;
}
