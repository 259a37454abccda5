//! The differ: containerd's diff service `Apply`, done by ipcs itself. It reads the layer
//! from ipcs's own verified blob (no RPC per read), decodes it and extracts it into the
//! mounts containerd passes with exactly the semantics of containerd's walking applier
//! (core/diff/apply and pkg/archive), and returns the diffID computed while streaming.
//!
//! An Apply passes through: `source` (blob file, compressed digest) → `decompress`
//! (gzip/zstd/plain by media type and magic) → `tar` (Go archive/tar semantics) →
//! `mounts` (overlay upperdir, bind source or temporary mount) → `apply` (the entry loop)
//! → `rootpath` (containment under the root), `parents`, `whiteout`, `entry` → `fsops`
//! (the system calls). Layering: `server` → `differ` → `store`.
mod apply;
mod decompress;
mod entry;
mod error;
mod fsops;
mod gopath;
mod media;
pub mod mounts;
mod parents;
mod rootpath;
mod source;
pub mod tar;
#[cfg(test)]
mod testtar;
mod whiteout;

pub use apply::{Stats, Target};
pub use error::DiffError;
pub use media::APPLIED_MEDIA_TYPE;
pub use mounts::Mount;
pub use whiteout::Mode as WhiteoutMode;

use crate::digest::Digest;
use crate::store::{ContentStore, VerifiedBlob};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The layer to apply, as containerd describes it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
}

#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub layer: Layer,
    pub mounts: Vec<Mount>,
    /// The ids of the stream processor payloads sent along (for encrypted layers).
    pub payload_ids: Vec<String>,
    pub sync_fs: bool,
}

/// What was applied: the uncompressed tar's digest (the diffID) and size.
#[derive(Debug, Clone)]
pub struct Applied {
    pub diff_id: Digest,
    pub size: u64,
}

#[derive(Clone)]
pub struct Differ {
    store: ContentStore,
    temp_mounts: PathBuf,
}

/// Sets the flag when dropped: the RPC's future is dropped when containerd goes away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Differ {
    /// A differ reading from `store`, mounting what it must mount under `temp_mounts`
    /// (after unmounting whatever a crash left there).
    pub fn new(store: ContentStore, temp_mounts: PathBuf) -> Differ {
        mounts::cleanup_temp_mounts(&temp_mounts);
        Differ { store, temp_mounts }
    }

    pub async fn apply(&self, req: ApplyRequest) -> Result<Applied, DiffError> {
        let started = Instant::now();
        if !req.payload_ids.is_empty() {
            return Err(DiffError::Unimplemented(format!(
                "ipcs-diff has no stream processors for payloads {:?} (encrypted layers)",
                req.payload_ids
            )));
        }
        let decoding = media::decoding(&req.layer.media_type)?;
        let digest: Digest = req
            .layer
            .digest
            .parse()
            .map_err(|e| DiffError::InvalidArgument(format!("layer digest: {e}")))?;
        let plan = mounts::plan(&req.mounts, mounts::running_in_userns())?;
        // Kubo's imports of committed blobs wait while a layer is applied: containerd
        // waits for this, not for them.
        let _imports_wait = self.store.hold_imports();
        let blob = self
            .store
            .open_verified(&digest)
            .await
            .map_err(|source| DiffError::Store {
                digest: digest.to_string(),
                source,
            })?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let temp_mounts = self.temp_mounts.clone();
        let sync_fs = req.sync_fs;
        let d = digest.clone();
        let plan_shown = format!("{plan:?}");
        let (applied, stats, compression, compressed_size) =
            tokio::task::spawn_blocking(move || {
                run(blob, &d, decoding, plan, sync_fs, &temp_mounts, &cancel)
            })
            .await
            .map_err(|e| DiffError::Internal(format!("apply task failed: {e}")))??;
        tracing::info!(
            layer = %digest,
            media_type = %req.layer.media_type,
            compression,
            compressed_bytes = compressed_size,
            diff_id = %applied.diff_id,
            bytes = applied.size,
            entries = stats.entries,
            whiteouts = stats.whiteouts,
            into = %plan_shown,
            ms = started.elapsed().as_millis() as u64,
            "layer applied"
        );
        self.store.metrics().layer_applied();
        Ok(applied)
    }
}

/// Applies a blob file into `target` directly (benchmarks, tools, differential tests):
/// decoded by `media_type`, extracted with `target`'s whiteout mode and parents, the
/// diffID returned. No mounts, no store.
pub fn apply_file(
    blob: VerifiedBlob,
    digest: &Digest,
    media_type: &str,
    target: &Target,
) -> Result<(Applied, Stats), DiffError> {
    let decoding = media::decoding(media_type)?;
    let (stream, input) = source::open(blob, digest, decoding)?;
    let mut tr = tar::Reader::new(input);
    let stats = apply::apply(target, &mut tr, &AtomicBool::new(false))?;
    let finished = stream.finish(tr.into_inner())?;
    Ok((
        Applied {
            diff_id: finished.diff_id,
            size: finished.uncompressed_size,
        },
        stats,
    ))
}

/// The blocking part of an Apply: stream, extract, finish the hashes.
fn run(
    blob: VerifiedBlob,
    digest: &Digest,
    decoding: media::Decoding,
    plan: mounts::Plan,
    sync_fs: bool,
    temp_mounts: &std::path::Path,
    cancel: &AtomicBool,
) -> Result<(Applied, Stats, &'static str, u64), DiffError> {
    use std::os::unix::ffi::OsStrExt;
    let (stream, input) = source::open(blob, digest, decoding)?;
    let compression = stream.compression.name();
    let mut tr = tar::Reader::new(input);
    let stats = match plan {
        mounts::Plan::Overlay { upper, lowers } => {
            let target = Target {
                root: upper.clone().into_bytes(),
                parents: lowers.into_iter().map(String::into_bytes).collect(),
                whiteouts: WhiteoutMode::Overlay,
                skip_devices: false,
            };
            let stats = apply::apply(&target, &mut tr, cancel)?;
            if sync_fs {
                fsops::syncfs(upper.as_bytes())
                    .map_err(DiffError::io("failed to syncfs for", upper.as_bytes()))?;
            }
            stats
        }
        mounts::Plan::Directory { root } => {
            let target = Target {
                root: root.clone().into_bytes(),
                parents: Vec::new(),
                whiteouts: WhiteoutMode::Apply,
                skip_devices: mounts::running_in_userns(),
            };
            let stats = apply::apply(&target, &mut tr, cancel)?;
            if sync_fs {
                fsops::syncfs(root.as_bytes())
                    .map_err(DiffError::io("failed to syncfs for", root.as_bytes()))?;
            }
            stats
        }
        mounts::Plan::TempMount(ms) => mounts::with_temp_mount(&ms, temp_mounts, |dir| {
            let target = Target {
                root: dir.as_os_str().as_bytes().to_vec(),
                parents: Vec::new(),
                whiteouts: WhiteoutMode::Apply,
                skip_devices: mounts::running_in_userns(),
            };
            apply::apply(&target, &mut tr, cancel)
        })?,
    };
    let finished = stream.finish(tr.into_inner())?;
    Ok((
        Applied {
            diff_id: finished.diff_id,
            size: finished.uncompressed_size,
        },
        stats,
        compression,
        finished.compressed_size,
    ))
}

#[cfg(test)]
mod tests;
