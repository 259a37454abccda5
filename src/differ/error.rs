//! The differ's error type. Each variant is one meaning containerd distinguishes; the
//! server turns them into gRPC codes in one place (`server::status`). UNIMPLEMENTED is
//! the one that matters most: containerd's diff service then tries its next differ.
use crate::store::StoreError;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Something this differ does not do (a media type without a decoder here, stream
    /// processor payloads, a mount that needs containerd's mount manager, Diff).
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// Reading the layer from the store failed.
    #[error("reading layer {digest}: {source}")]
    Store { digest: String, source: StoreError },
    /// The layer is not a valid (compressed) tar, or an entry is refused as containerd
    /// refuses it.
    #[error("{0}")]
    Archive(String),
    /// A filesystem operation on the mount failed.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// The blob's bytes no longer hash to its digest.
    #[error("{0}")]
    DataLoss(String),
    /// containerd went away (or cancelled) while the layer was applied.
    #[error("apply cancelled")]
    Cancelled,
    #[error("internal: {0}")]
    Internal(String),
}

impl DiffError {
    /// Wraps an I/O error with the operation and the path it was done on.
    pub fn io(op: &str, path: &[u8]) -> impl FnOnce(io::Error) -> DiffError {
        let context = format!("{op} {}", String::from_utf8_lossy(path));
        move |source| DiffError::Io { context, source }
    }
}
