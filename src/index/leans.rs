//! Which blobs kept once read bytes from another blob's stored file. Kubo keeps one
//! reference per block, the first one made, so a block two blobs share is read from
//! whichever file was imported first; that file must outlive every DAG that leans on it.
//! Rare in practice (two different blobs sharing a whole aligned chunk), so the table is
//! small and scanned whole where a reverse lookup is needed.
use crate::index::{Index, IndexError, LEANS};
use redb::{ReadableDatabase, ReadableTable};

pub(super) fn key(owner: &str, leaner: &str) -> String {
    format!("{owner}\t{leaner}")
}

impl Index {
    /// Records that `leaner` reads from the stored files of `owners`.
    pub fn add_leans(&self, leaner: &str, owners: &[String]) -> Result<(), IndexError> {
        if owners.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(LEANS)?;
            for o in owners {
                t.insert(key(o, leaner).as_str(), &[][..])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Who leans on `owner`'s stored file.
    pub fn leaners_of(&self, owner: &str) -> Result<Vec<String>, IndexError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LEANS)?;
        let from = format!("{owner}\t");
        let mut out = Vec::new();
        for entry in t.range::<&str>(from.as_str()..)? {
            let (k, _) = entry?;
            match k.value().strip_prefix(&from) {
                Some(leaner) => out.push(leaner.to_string()),
                None => break,
            }
        }
        Ok(out)
    }

    /// Forgets what `leaner` leaned on and returns those owners.
    pub fn remove_leans_by(&self, leaner: &str) -> Result<Vec<String>, IndexError> {
        let tx = self.db.begin_write()?;
        let owners = {
            let mut t = tx.open_table(LEANS)?;
            let mut found = Vec::new();
            for entry in t.iter()? {
                let (k, _) = entry?;
                if let Some((o, l)) = k.value().split_once('\t') {
                    if l == leaner {
                        found.push(o.to_string());
                    }
                }
            }
            for o in &found {
                t.remove(key(o, leaner).as_str())?;
            }
            found
        };
        tx.commit()?;
        Ok(owners)
    }

    /// Forgets one lean (a leaner that is gone).
    pub fn remove_lean(&self, owner: &str, leaner: &str) -> Result<(), IndexError> {
        let tx = self.db.begin_write()?;
        tx.open_table(LEANS)?.remove(key(owner, leaner).as_str())?;
        tx.commit()?;
        Ok(())
    }

    /// Every (owner, leaner) pair, for fsck and startup.
    pub fn leans(&self) -> Result<Vec<(String, String)>, IndexError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LEANS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, _) = entry?;
            if let Some((o, l)) = k.value().split_once('\t') {
                out.push((o.to_string(), l.to_string()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leans_are_found_from_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        index
            .add_leans("b", &["a".to_string(), "c".to_string()])
            .unwrap();
        index.add_leans("d", &["a".to_string()]).unwrap();
        assert_eq!(index.leaners_of("a").unwrap(), vec!["b", "d"]);
        assert_eq!(index.leaners_of("c").unwrap(), vec!["b"]);
        assert!(index.leaners_of("b").unwrap().is_empty());
        assert_eq!(index.remove_leans_by("b").unwrap(), vec!["a", "c"]);
        assert_eq!(index.leaners_of("a").unwrap(), vec!["d"]);
        assert!(index.leaners_of("c").unwrap().is_empty());
        index.remove_lean("a", "d").unwrap();
        assert!(index.leans().unwrap().is_empty());
    }
}
