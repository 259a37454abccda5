//! Every on-disk path of the data directory, computed in one place. Temporary files live
//! on the same filesystem as their destinations so that renames are atomic. Refs never
//! become path components: an ingest directory is named by a hash of its ref.
use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataPaths {
    root: PathBuf,
}

impl DataPaths {
    pub fn new(root: &Path) -> DataPaths {
        DataPaths {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index(&self) -> PathBuf {
        self.root.join("index.redb")
    }

    /// The store's id, which names its pins in Kubo (see `identity`).
    pub fn store_id(&self) -> PathBuf {
        self.root.join("store-id")
    }

    pub fn ingests(&self) -> PathBuf {
        self.root.join("ingest")
    }

    pub fn ingest_dir(&self, ingest_ref: &str) -> PathBuf {
        let id = hex::encode(Sha256::digest(ingest_ref.as_bytes()));
        self.ingests().join(&id[..40])
    }

    pub fn ingest_data(&self, ingest_ref: &str) -> PathBuf {
        self.ingest_dir(ingest_ref).join("data")
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn cached_blob(&self, digest: &Digest) -> PathBuf {
        self.cache()
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Blobs kept once: the only copy of each, which the backend references (Kubo's
    /// filestore). Never evicted; the path of a blob never changes, because the backend
    /// records it.
    pub fn stored(&self) -> PathBuf {
        self.root.join("stored")
    }

    pub fn stored_blob(&self, digest: &Digest) -> PathBuf {
        self.stored()
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn create_dirs(&self) -> std::io::Result<()> {
        for d in [self.ingests(), self.cache(), self.stored(), self.tmp()] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }
}

/// One entry of a blob directory (`<alg>/<hex>`, the cache's or the stored files').
pub struct BlobFile {
    pub path: PathBuf,
    /// The digest its name spells, if any.
    pub digest: Option<Digest>,
    pub meta: std::fs::Metadata,
}

/// Every entry of the blob directory `dir` (none if `dir` does not exist), for the cache's
/// startup and fsck.
pub fn blob_files(dir: &Path) -> std::io::Result<Vec<BlobFile>> {
    let mut out = Vec::new();
    let alg_dirs = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        other => other?,
    };
    for alg_dir in alg_dirs {
        let alg_dir = alg_dir?;
        let alg = alg_dir.file_name().to_string_lossy().to_string();
        for f in std::fs::read_dir(alg_dir.path())? {
            let f = f?;
            let name = f.file_name().to_string_lossy().to_string();
            out.push(BlobFile {
                path: f.path(),
                digest: format!("{alg}:{name}").parse().ok(),
                meta: f.metadata()?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_like_refs_stay_inside_the_ingest_dir() {
        let p = DataPaths::new(Path::new("/data"));
        for r in [
            "../../x",
            "/etc/passwd",
            "default/1/layer-sha256:ab",
            "a\0b",
        ] {
            let dir = p.ingest_dir(r);
            assert_eq!(dir.parent().unwrap(), Path::new("/data/ingest"));
            assert_eq!(dir.file_name().unwrap().len(), 40);
        }
        assert_ne!(p.ingest_dir("a"), p.ingest_dir("b"));
    }
}
