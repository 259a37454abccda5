//! The data directory: where each file lives (`paths`), the store's id that names its
//! pins (`identity`), and the cache of whole verified blobs served by `pread` (`cache`).
//! `single_flight` lets concurrent callers share one fetch of a key.
pub mod cache;
pub mod identity;
pub mod paths;
pub mod single_flight;

pub use cache::BlobCache;
pub use paths::DataPaths;
pub use single_flight::SingleFlight;
