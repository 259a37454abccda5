//! The identity of one data directory: a random id kept in `data_dir/store-id`, which
//! names every pin the store makes in Kubo (`ipcs:<id>`). Several stores (or other users)
//! may share one Kubo node; the name is how `ipcs fsck` knows which pins are this store's
//! to remove. The id lives beside the index so it moves with the data directory.
use crate::data::paths::DataPaths;
use sha2::{Digest as _, Sha256};
use std::io::Write;

/// Prefix of every pin name an ipcs store gives.
pub const PIN_NAME_PREFIX: &str = "ipcs:";

/// The pin name of the store in `paths`, creating its id on first use.
pub fn pin_name(paths: &DataPaths) -> std::io::Result<String> {
    Ok(format!("{PIN_NAME_PREFIX}{}", load_or_create(paths)?))
}

fn load_or_create(paths: &DataPaths) -> std::io::Result<String> {
    let path = paths.store_id();
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Unique enough without a RNG dependency: time, pid and path hashed together.
    let mut h = Sha256::new();
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(paths.root().display().to_string().as_bytes());
    let id = hex::encode(h.finalize())[..16].to_string();
    // Written to a temp file, synced and renamed: a crash never leaves a half-written id.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = DataPaths::new(dir.path());
        let a = pin_name(&p).unwrap();
        assert!(a.starts_with(PIN_NAME_PREFIX) && a.len() == PIN_NAME_PREFIX.len() + 16);
        assert_eq!(pin_name(&p).unwrap(), a);
    }
}
