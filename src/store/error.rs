//! The store's error type. Each variant corresponds to one meaning containerd
//! distinguishes; `server::status` turns them into gRPC codes in one place.
use crate::digest::DigestError;
use crate::filter::FilterError;
use crate::index::IndexError;
use crate::ipfs::KuboError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    OutOfRange(String),
    /// The one and only meaning of UNAVAILABLE for containerd: a ref held by another writer.
    #[error("ref {ingest_ref} locked for {held_for:?}")]
    Locked {
        ingest_ref: String,
        held_for: std::time::Duration,
    },
    #[error("{context}: {source}")]
    Ipfs { context: String, source: KuboError },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A configured limit (named in the message with its config key) was reached by
    /// load rather than by a malformed request.
    #[error("{0}")]
    LimitExceeded(String),
    /// Bytes from IPFS did not hash to the digest they were recorded under.
    #[error("{0}")]
    DataLoss(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<DigestError> for StoreError {
    fn from(e: DigestError) -> Self {
        StoreError::InvalidArgument(e.to_string())
    }
}

impl From<FilterError> for StoreError {
    fn from(e: FilterError) -> Self {
        StoreError::InvalidArgument(e.to_string())
    }
}

impl StoreError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }

    pub fn ipfs(context: impl Into<String>) -> impl FnOnce(KuboError) -> StoreError {
        let context = context.into();
        move |source| StoreError::Ipfs { context, source }
    }
}

/// Runs blocking file or index work off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?
}
