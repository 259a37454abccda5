//! Input rules stated once: what a ref may be, and how large a manifest the store reads
//! whole (the registry mirror, manifest hints, prefetch).
use crate::store::error::StoreError;

/// Largest manifest read into memory; OCI registries refuse larger ones too.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Refs are opaque index keys, never paths: only emptiness and length are checked.
/// `max` is `max_ref_bytes`, itself bounded by `config::MAX_REF_BYTES`.
pub fn validate_ref(ingest_ref: &str, max: usize) -> Result<(), StoreError> {
    if ingest_ref.is_empty() {
        return Err(StoreError::InvalidArgument(
            "first message must have a reference".into(),
        ));
    }
    if ingest_ref.len() > max {
        return Err(StoreError::InvalidArgument(format!(
            "ref of {} bytes is longer than max_ref_bytes = {max}",
            ingest_ref.len()
        )));
    }
    Ok(())
}
