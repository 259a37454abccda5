//! Update (labels) and Delete. Delete unpins in the backend first: if that fails,
//! nothing changes and the error says why (containerd's GC retries on its next pass).
//! A pin someone else took over is left alone (`delete`), and so is the stored file it
//! reads from when blobs are kept once.
use crate::digest::Digest;
use crate::index::UnixNanos;
use crate::store::error::{blocking, StoreError};
use crate::store::{labels, ContentStore, Info};
use std::collections::BTreeMap;

impl ContentStore {
    pub async fn update(
        &self,
        d: &Digest,
        labels: BTreeMap<String, String>,
        paths: Vec<String>,
    ) -> Result<Info, StoreError> {
        // Refuse bad paths even for unknown digests, before touching the index.
        let max = self.inner.max_label_bytes;
        labels::apply_update(&BTreeMap::new(), &labels, &paths, max)?;
        let inner = self.inner.clone();
        let key = d.to_string();
        blocking(move || {
            let mut failure = None;
            let updated = inner.index.update_blob(&key, |rec| {
                match labels::apply_update(&rec.labels, &labels, &paths, max) {
                    Ok(l) => {
                        rec.labels = l;
                        rec.updated_at = UnixNanos::now();
                    }
                    Err(e) => failure = Some(e),
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            updated
                .map(Info::from)
                .ok_or(StoreError::NotFound(format!("content {key}")))
        })
        .await
    }

    /// Unpins the blob's DAG and forgets it. A pin that no longer carries this store's
    /// name was taken over by someone else (`store::pin_holder`), so, as in fsck, it is
    /// left alone and only the record goes.
    pub async fn delete(&self, d: &Digest) -> Result<(), StoreError> {
        if self.inner.delete_pending(d).await? {
            return Ok(());
        }
        let rec = self.inner.record(d).await?;
        let backend = &self.inner.backend;
        let ctx = || format!("unpinning {} ({})", rec.digest, rec.cid);
        let others_pin = match self.inner.others_pin(&rec.cid, ctx()).await? {
            Some(name) => {
                tracing::info!(digest = %rec.digest, cid = %rec.cid, pin = name, "pinned by someone else; left pinned");
                true
            }
            None => {
                backend
                    .unpin(&rec.cid)
                    .await
                    .map_err(StoreError::ipfs(ctx()))?;
                false
            }
        };
        let inner = self.inner.clone();
        let d = d.clone();
        let kept_once = backend.by_reference().is_some();
        let cid = rec.cid.clone();
        blocking(move || {
            if kept_once && others_pin {
                // Their pin reads the blob from its stored file: the file stays for it.
                let leaner = crate::store::kept_once::pin_leaner(&cid);
                inner.index.add_leans(&leaner, &[d.to_string()])?;
            }
            inner.index.remove_blob(&d.to_string())?;
            inner.served.forget(&d);
            inner
                .cache
                .remove(&d)
                .map_err(StoreError::io(format!("removing cached {d}")))
        })
        .await?;
        if kept_once {
            self.inner.release_stored(&rec.digest).await?;
        }
        tracing::info!(digest = %rec.digest, cid = %rec.cid, "deleted and unpinned");
        Ok(())
    }
}
