//! fsck's checks of blobs kept once (`stored/<alg>/<hex>`, the only copy, which the
//! backend references): a stored file no record or lean explains is stale (a commit or a
//! delete a crash cut short) and is removed on repair; a recorded blob's stored file of
//! the wrong size, or (`--verify`) not hashing to its digest, is corrupt: the blob is
//! re-imported from a good copy or dropped, as for an unreadable DAG. With `--verify`,
//! the backend's references into recorded blobs' stored files are read back too
//! (`filestore verify`); a broken one is reported (the blob's own DAG check repairs it).
use crate::data::paths::blob_files;
use crate::fsck::{check_blob_file, FileCheck, FindingKind, Fsck};
use crate::store::{blocking, StoreError};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

impl Fsck {
    pub(super) async fn check_stored(
        &mut self,
        records: &HashMap<String, u64>,
    ) -> Result<(), StoreError> {
        let root = self.paths.stored();
        let verify = self.opts.verify;
        let (index, recs) = (self.index.clone(), records.clone());
        let (count, stale, corrupt, leaned) = blocking(move || {
            let leaned: HashSet<String> = index.leans()?.into_iter().map(|(o, _)| o).collect();
            let mut stale: Vec<(PathBuf, String)> = Vec::new();
            let mut corrupt: Vec<(String, String)> = Vec::new();
            let files = blob_files(&root).unwrap_or_default();
            for f in &files {
                match check_blob_file(f, &recs, verify) {
                    FileCheck::Good => {}
                    FileCheck::NotADigest => stale.push((f.path.clone(), "not a digest".into())),
                    FileCheck::NoRecord(key) if leaned.contains(&key) => {}
                    FileCheck::NoRecord(_) => stale.push((
                        f.path.clone(),
                        "no blob record, nothing reads from it".into(),
                    )),
                    FileCheck::WrongSize(key, detail) | FileCheck::WrongContent(key, detail) => {
                        corrupt.push((key, detail))
                    }
                }
            }
            Ok((files.len() as u64, stale, corrupt, leaned))
        })
        .await?;
        self.report.stored_files = count;
        for (path, detail) in stale {
            self.found(FindingKind::StoredStale, path.display().to_string(), detail);
            self.remove_if_repairing(path).await?;
        }
        for (key, detail) in corrupt {
            self.found(FindingKind::StoredCorrupt, key.clone(), detail);
            if self.opts.repair {
                let index = self.index.clone();
                let k = key.clone();
                if let Some(rec) = blocking(move || Ok(index.blob(&k)?)).await? {
                    let o = self.restore_or_drop(&rec).await?;
                    self.settle(o);
                }
            }
        }
        if verify {
            self.broken_references(records, &leaned).await?;
        }
        Ok(())
    }

    /// References into the stored files of recorded (or leaned-on) blobs that the backend
    /// cannot read back. References into other files (a blob deleted since, a commit that
    /// never finished) are unpinned garbage for the backend's own GC, not findings.
    async fn broken_references(
        &mut self,
        records: &HashMap<String, u64>,
        leaned: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let Some(by_ref) = self.backend.by_reference() else {
            return Ok(());
        };
        let root = self.paths.stored();
        let deadline = self.backend.transfer_timeout(records.values().sum());
        let broken = by_ref
            .broken_references(&root, deadline)
            .await
            .map_err(StoreError::ipfs("checking the filestore's references"))?;
        for b in broken {
            let owner = crate::store::stored_digest(&root, std::path::Path::new(&b.path));
            let Some(owner) = owner.map(|d| d.to_string()) else {
                continue;
            };
            if records.contains_key(&owner) || leaned.contains(&owner) {
                self.found(
                    FindingKind::BrokenReference,
                    b.cid,
                    format!("{} at {}: {}", b.path, b.offset, b.problem),
                );
            }
        }
        Ok(())
    }
}
