//! Keeping each blob once: with a backend that keeps references (Kubo's filestore), a
//! committed blob's checked bytes get their stored name (`stored/<alg>/<hex>`, a link to
//! the ingest file), the backend imports that file by reference, and the stored file is
//! the only copy. Only checked bytes are ever imported by reference, always under the
//! name of their digest, so a reference never points at a file holding other bytes.
//!
//! Kubo keeps one reference per block, the first made. A blob whose DAG shares a block
//! with another blob reads that block from the other blob's file ("leans on" it): the
//! index records it, and a stored file stays on disk while anything leans on it. A
//! reference into a file that is gone (its import failed before the commit, or it was
//! removed by hand) is dropped and the blob imported again.
use crate::backend::{BackendError, ByReference};
use crate::cid::Cid;
use crate::data::single_flight::Turn;
use crate::digest::Digest;
use crate::store::error::{blocking, StoreError};
use crate::store::Inner;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A blob kept once: its CID and the blobs whose stored files its DAG also reads from.
/// Holds the digest's turn: the caller records the blob before dropping it, so that no
/// release of the same stored file (another blob's Delete freeing what it leaned on) runs
/// between the import and the record.
pub(crate) struct Kept<'a> {
    pub cid: Cid,
    pub leans_on: Vec<String>,
    pub turn: Turn<'a, Digest>,
}

/// The leaner name of a pin someone else holds on a blob's DAG.
pub(crate) fn pin_leaner(cid: &Cid) -> String {
    format!("pin:{cid}")
}

impl Inner {
    /// Links the checked file `file` (`size` bytes of `digest`) at its stored name and
    /// imports it by reference, pinned by name. The stored name is left in place if the
    /// import fails: references an interrupted import made point at it, and it holds
    /// exactly the bytes they name (fsck removes it if no commit follows).
    pub(crate) async fn keep_once<'a>(
        self: &'a Arc<Self>,
        by_ref: &dyn ByReference,
        digest: &Digest,
        file: PathBuf,
        size: u64,
    ) -> Result<Kept<'a>, StoreError> {
        let (turn, stored) = self.link_stored(digest, file).await?;
        let (cid, leans_on) = self.import_stored(by_ref, digest, &stored, size).await?;
        Ok(Kept {
            cid,
            leans_on,
            turn,
        })
    }

    /// Takes `digest`'s turn and gives the checked file `file` its stored name; returns
    /// the turn (held until the blob is recorded) and that name.
    pub(crate) async fn link_stored<'a>(
        self: &'a Arc<Self>,
        digest: &Digest,
        file: PathBuf,
    ) -> Result<(Turn<'a, Digest>, PathBuf), StoreError> {
        let turn = self.stored_turns.turn(digest.clone()).await;
        let cache = self.cache.clone();
        let d = digest.clone();
        let stored = blocking(move || {
            cache
                .link_stored(&d, &file)
                .map_err(StoreError::io(format!("linking {d} at its stored name")))
        })
        .await?;
        Ok((turn, stored))
    }

    /// Imports the stored file `stored` by reference, pinned by name: its CID and the
    /// blobs whose stored files its DAG also reads from. The caller holds the digest's
    /// turn.
    pub(crate) async fn import_stored(
        self: &Arc<Self>,
        by_ref: &dyn ByReference,
        digest: &Digest,
        stored: &Path,
        size: u64,
    ) -> Result<(Cid, Vec<String>), StoreError> {
        let ctx = || format!("keeping {digest} once in ipfs");
        let cid = by_ref
            .keep_file(stored, size)
            .await
            .map_err(StoreError::ipfs(ctx()))?;
        let leans_on = match self.leaning(by_ref, &cid, size, stored).await {
            Ok(l) => l,
            Err(Broken(gone)) => {
                // Blocks Kubo took for present read from files that are gone: drop them
                // (only possible unpinned) and import again, now from this file.
                tracing::warn!(digest = %digest, blocks = gone.len(), "import met references to missing files; dropping them and importing again");
                let backend = &self.backend;
                backend.unpin(&cid).await.map_err(StoreError::ipfs(ctx()))?;
                if let Err(e) = by_ref.drop_blocks(&gone).await {
                    // Another pin (another store on this Kubo, a data dir wiped while its
                    // pins stayed) holds those blocks: Kubo keeps them as they are. The
                    // blob is still whole here (ipcs serves its own file); Kubo cannot
                    // serve those blocks to peers until that pin goes (fsck reports it).
                    // Pinned again the way the first import pinned it: `pin add` would
                    // read those blocks and fail.
                    let cid = by_ref
                        .keep_file(stored, size)
                        .await
                        .map_err(StoreError::ipfs(ctx()))?;
                    tracing::warn!(digest = %digest, blocks = gone.len(), error = %e, "blocks read from missing files are held by another pin; kept as they are");
                    return Ok((cid, Vec::new()));
                }
                let cid = by_ref
                    .keep_file(stored, size)
                    .await
                    .map_err(StoreError::ipfs(ctx()))?;
                match self.leaning(by_ref, &cid, size, stored).await {
                    Ok(l) => return Ok((cid, l)),
                    Err(Broken(gone)) => {
                        let _ = backend.unpin(&cid).await;
                        return Err(StoreError::ipfs(ctx())(BackendError::Api {
                            addr: backend.address().to_string(),
                            op: "add",
                            message: format!(
                                "{} blocks still read from missing files after dropping them",
                                gone.len()
                            ),
                        }));
                    }
                }
            }
        };
        Ok((cid, leans_on))
    }

    /// The stored blobs `cid`'s DAG reads from besides its own file `own`, or the leaves
    /// kept as references into files that are gone.
    async fn leaning(
        self: &Arc<Self>,
        by_ref: &dyn ByReference,
        cid: &Cid,
        size: u64,
        own: &Path,
    ) -> Result<Vec<String>, Broken> {
        let leaves = match by_ref.leaf_files(cid, size).await {
            Ok(l) => l,
            Err(e) => {
                // The import itself worked; where its leaves read from is unknown, so no
                // lean is recorded. fsck's reference check covers it.
                tracing::warn!(cid = %cid, error = %e, "could not list where the blob's leaves are kept");
                return Ok(Vec::new());
            }
        };
        let stored_root = self.paths.stored();
        let own = own.to_path_buf();
        let checked = blocking(move || {
            let mut owners = std::collections::BTreeSet::new();
            let mut gone = Vec::new();
            for l in leaves.into_iter().filter(|l| l.file != own) {
                match stored_digest(&stored_root, &l.file) {
                    _ if !l.file.is_file() => gone.push(l.leaf),
                    Some(d) => {
                        owners.insert(d.to_string());
                    }
                    // Another store's file on the same Kubo (or one added by hand): it is
                    // readable, and not this store's to keep or remove.
                    None => {}
                }
            }
            Ok((owners.into_iter().collect::<Vec<_>>(), gone))
        })
        .await;
        match checked {
            Ok((owners, gone)) if gone.is_empty() => Ok(owners),
            Ok((_, gone)) => Err(Broken(gone)),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// After `digest`'s record went: removes its stored file unless something still leans
    /// on it (then the file stays until the last leaner goes), and releases the stored
    /// files `digest` itself leaned on that nothing needs any more.
    pub(crate) async fn release_stored(
        self: &Arc<Self>,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let owners = {
            let _turn = self.stored_turns.turn(digest.clone()).await;
            let me = self.clone();
            let d = digest.clone();
            blocking(move || {
                // Committed again since its record went: the stored file is that commit's.
                if me.index.blob(&d.to_string())?.is_some() {
                    return Ok(Vec::new());
                }
                let keep = me.still_leaned_on(&d.to_string())?;
                if keep {
                    tracing::info!(digest = %d, "stored file kept: other DAGs read from it");
                }
                me.cache
                    .remove_stored(&d, !keep)
                    .map_err(StoreError::io(format!("removing stored {d}")))?;
                Ok(me.index.remove_leans_by(&d.to_string())?)
            })
            .await?
        };
        for owner in owners {
            let Ok(o) = owner.parse::<Digest>() else {
                continue;
            };
            let _turn = self.stored_turns.turn(o.clone()).await;
            let me = self.clone();
            blocking(move || {
                let key = o.to_string();
                if me.index.blob(&key)?.is_none() && !me.still_leaned_on(&key)? {
                    tracing::info!(digest = %o, "stored file released: nothing reads from it any more");
                    me.cache
                        .remove_stored(&o, true)
                        .map_err(StoreError::io(format!("removing stored {o}")))?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Whether a live blob (or someone else's pin) leans on `owner`'s stored file; leans
    /// of blobs that are gone are forgotten on the way. Blocks.
    fn still_leaned_on(&self, owner: &str) -> Result<bool, StoreError> {
        let mut live = false;
        for leaner in self.index.leaners_of(owner)? {
            if leaner.starts_with("pin:") || self.index.blob(&leaner)?.is_some() {
                live = true;
            } else {
                self.index.remove_lean(owner, &leaner)?;
            }
        }
        Ok(live)
    }
}

/// Leaves kept as references into files that are gone.
struct Broken(Vec<String>);

/// The digest whose stored name `file` is, if it is one.
pub fn stored_digest(stored_root: &Path, file: &Path) -> Option<Digest> {
    let rel = file.strip_prefix(stored_root).ok()?;
    let mut parts = rel.components();
    let alg = parts.next()?.as_os_str().to_str()?;
    let hex = parts.next()?.as_os_str().to_str()?;
    if parts.next().is_some() {
        return None;
    }
    format!("{alg}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stored_name_spells_a_digest() {
        let root = Path::new("/d/stored");
        let hex = "a".repeat(64);
        let d = stored_digest(root, &root.join("sha256").join(&hex)).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert!(stored_digest(root, &root.join("sha256").join(&hex).join("x")).is_none());
        assert!(stored_digest(root, &Path::new("/d/blobs/sha256").join(&hex)).is_none());
        assert!(stored_digest(root, &root.join("sha256").join("zz")).is_none());
    }
}
