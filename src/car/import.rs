//! Import: the CAR goes to Kubo's `dag import`, which checks every block against its CID
//! and pins the root (so nothing it brought can be collected while the blobs are
//! checked). The index block is read back and validated, then each blob the store lacks
//! is adopted by the core exactly like a blob from a peer: read back whole, hashed, kept
//! only if it matches its digest, pinned under the store's name, recorded. Last, the
//! images are walked from the store (every config and layer must be there) and the root's
//! anonymous pin goes.
//!
//! All or nothing: on any failure every blob this import adopted is deleted again
//! (unpinned, record and cache file dropped) and the root pin removed, so no record and no
//! pin remains; blocks Kubo stored stay unpinned until its next `repo gc`.
use crate::backend::BodyStream;
use crate::car::format::{CarIndex, MAX_INDEX_BYTES};
use crate::car::walk::{walk, Blob, ImageRef};
use crate::car::Archive;
use crate::digest::Digest;
use crate::ipfs::KuboError;
use crate::store::StoreError;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Blobs read back and hashed at once.
const VERIFY_CONCURRENCY: usize = 4;

/// How far verification has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportProgress {
    pub verified_blobs: u64,
    pub verified_bytes: u64,
    pub total_blobs: u64,
    pub total_bytes: u64,
}

/// A finished import.
#[derive(Debug, Clone)]
pub struct Imported {
    pub root: String,
    pub images: Vec<ImageRef>,
    /// Parents before children; `true` when this import added the blob.
    pub blobs: Vec<(Blob, bool)>,
    pub car_blocks: u64,
    pub car_block_bytes: u64,
}

impl Archive {
    /// Imports the CAR `car` (`car_size` bytes, which scales the deadline).
    pub async fn import(
        &self,
        car: BodyStream,
        car_size: u64,
        progress: impl Fn(ImportProgress) + Send + Sync,
    ) -> Result<Imported, StoreError> {
        let _one = self.importing.lock().await;
        let deadline = self.kubo.transfer_timeout(car_size);
        let got = self
            .kubo
            .dag_import(car, deadline)
            .await
            .map_err(|e| match e {
                KuboError::Api { message, .. } => StoreError::InvalidArgument(format!(
                    "the CAR is corrupted or truncated (kubo refused it): {message}"
                )),
                e => StoreError::ipfs("importing the CAR")(e),
            })?;
        let root = match got.roots.as_slice() {
            [one] => one.clone(),
            roots => {
                for r in roots {
                    self.unpin_root(r).await;
                }
                return Err(StoreError::InvalidArgument(format!(
                    "an ipcs CAR has one root, this one has {}",
                    roots.len()
                )));
            }
        };
        let adopted = Mutex::new(Vec::<Digest>::new());
        match self.adopt_all(&root, &adopted, &progress).await {
            Ok((images, blobs)) => {
                self.unpin_root(&root).await;
                let adopted = adopted.into_inner().unwrap_or_default();
                let blobs = blobs
                    .into_iter()
                    .map(|b| {
                        let new = adopted.contains(&b.desc.digest);
                        (b, new)
                    })
                    .collect();
                tracing::info!(%root, blocks = got.blocks, adopted = adopted.len(), "CAR imported");
                Ok(Imported {
                    root,
                    images,
                    blobs,
                    car_blocks: got.blocks,
                    car_block_bytes: got.block_bytes,
                })
            }
            Err(e) => {
                let adopted = adopted.into_inner().unwrap_or_default();
                tracing::warn!(%root, error = %e, undo = adopted.len(), "CAR import failed; undoing it");
                for d in &adopted {
                    if let Err(u) = self.store.delete(d).await {
                        tracing::error!(digest = %d, error = %u, "undoing an imported blob failed; `ipcs fsck` will report it");
                    }
                }
                self.unpin_root(&root).await;
                Err(e)
            }
        }
    }

    async fn adopt_all(
        &self,
        root: &str,
        adopted: &Mutex<Vec<Digest>>,
        progress: &(impl Fn(ImportProgress) + Send + Sync),
    ) -> Result<(Vec<ImageRef>, Vec<Blob>), StoreError> {
        let doc = self
            .kubo
            .dag_get_json(root, MAX_INDEX_BYTES)
            .await
            .map_err(StoreError::ipfs(format!("reading the CAR index {root}")))?;
        let index = CarIndex::from_dag_json(&doc)?;
        let total = ImportProgress {
            total_blobs: index.blobs.len() as u64,
            total_bytes: index.blobs.iter().map(|(d, _)| d.size).sum(),
            ..Default::default()
        };
        progress(total);
        let (done, done_bytes) = (&AtomicU64::new(0), &AtomicU64::new(0));
        let store = &self.store;
        let mut checks = futures::stream::iter(index.blobs.clone())
            .map(|(desc, cid)| async move {
                if !store.contains(&desc.digest).await? {
                    let r = store.adopt(&desc.digest, &cid, desc.size).await;
                    match r {
                        Ok(_) => adopted.lock().unwrap().push(desc.digest.clone()),
                        Err(StoreError::DataLoss(m)) => {
                            return Err(StoreError::DataLoss(format!(
                                "the CAR's blob {} does not match its digest: {m}",
                                desc.digest
                            )))
                        }
                        Err(e) => return Err(e),
                    }
                }
                progress(ImportProgress {
                    verified_blobs: done.fetch_add(1, Ordering::Relaxed) + 1,
                    verified_bytes: done_bytes.fetch_add(desc.size, Ordering::Relaxed) + desc.size,
                    ..total
                });
                Ok::<(), StoreError>(())
            })
            .buffer_unordered(VERIFY_CONCURRENCY);
        while let Some(r) = checks.next().await {
            r?;
        }
        drop(checks);
        let blobs = walk(&self.store, &index.images).await?;
        Ok((index.images, blobs))
    }

    async fn unpin_root(&self, root: &str) {
        if let Err(e) = self.kubo.unpin_root(root).await {
            tracing::warn!(%root, error = %e, "could not remove the CAR root's pin; `ipfs pin rm` it by hand");
        }
    }
}
