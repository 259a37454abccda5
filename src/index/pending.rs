//! Blobs committed before their import into the backend finished: the commit recorded a
//! CID ipcs computed itself, and the import runs after it (`store::later_import`). The
//! table lives as long as the imports do, so it is small; a restart finds in it what is
//! still to import.
use crate::cid::Cid;
use crate::index::{decode, encode, BlobRecord, Index, IndexError, BLOBS, LEANS, PENDING_IMPORTS};
use redb::{ReadableDatabase, ReadableTable};

impl Index {
    /// Digests whose import is still to come.
    pub fn pending_imports(&self) -> Result<Vec<String>, IndexError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(PENDING_IMPORTS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            out.push(entry?.0.value().to_string());
        }
        Ok(out)
    }

    pub fn is_import_pending(&self, digest: &str) -> Result<bool, IndexError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(PENDING_IMPORTS)?.get(digest)?.is_some())
    }

    /// Ends `digest`'s pending import: the backend's CID replaces the computed one if they
    /// differ, and the leans found by the import are recorded, in one transaction. None
    /// if the blob is no longer recorded.
    pub fn finish_import(
        &self,
        digest: &str,
        cid: &Cid,
        leans_on: &[String],
    ) -> Result<Option<BlobRecord>, IndexError> {
        let tx = self.db.begin_write()?;
        let rec = {
            tx.open_table(PENDING_IMPORTS)?.remove(digest)?;
            let mut blobs = tx.open_table(BLOBS)?;
            let current = blobs
                .get(digest)?
                .map(|v| decode::<BlobRecord>(digest, v.value()))
                .transpose()?;
            match current {
                Some(mut rec) => {
                    if rec.cid != *cid {
                        rec.cid = cid.clone();
                        blobs.insert(digest, encode(&rec).as_slice())?;
                    }
                    let mut leans = tx.open_table(LEANS)?;
                    for o in leans_on {
                        leans.insert(super::leans::key(o, digest).as_str(), &[][..])?;
                    }
                    Some(rec)
                }
                None => None,
            }
        };
        tx.commit()?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::{blob, d};

    #[test]
    fn a_pending_import_ends_with_the_backends_cid_or_with_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        let (a, b) = (blob(&d('a')), blob(&d('b')));
        let (ka, kb) = (a.digest.to_string(), b.digest.to_string());
        index.commit_blob_pending(&a, "ra").unwrap();
        index.commit_blob_pending(&b, "rb").unwrap();
        assert_eq!(
            index.pending_imports().unwrap(),
            vec![ka.clone(), kb.clone()]
        );

        let kubo: Cid = "bafykubo".parse().unwrap();
        let rec = index
            .finish_import(&ka, &kubo, std::slice::from_ref(&kb))
            .unwrap()
            .unwrap();
        assert_eq!(rec.cid, kubo);
        assert_eq!(index.blob(&ka).unwrap().unwrap().cid, kubo);
        assert!(!index.is_import_pending(&ka).unwrap());
        assert_eq!(index.leaners_of(&kb).unwrap(), vec![ka.clone()]);

        // Deleted before its import: nothing is left pending, and finishing finds no blob.
        index.remove_blob(&kb).unwrap();
        assert!(index.pending_imports().unwrap().is_empty());
        assert!(index.finish_import(&kb, &kubo, &[]).unwrap().is_none());
    }
}
