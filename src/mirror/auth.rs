//! The mirror's only access control: a secret request header. The mirror must listen on
//! loopback TCP (containerd reaches registry hosts only over HTTP), where every local
//! account can connect, and it serves any blob the node holds; so each request must carry
//! `x-ipcs-mirror-secret: <secret>`, which containerd adds from `hosts.toml`
//! (`[host."http://127.0.0.1:PORT".header]`). The secret is 32 random bytes, hex, in
//! `data_dir/mirror-secret` (0600, made on first start, kept across restarts so
//! hosts.toml stays valid).
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const HEADER: &str = "x-ipcs-mirror-secret";
pub const FILE: &str = "mirror-secret";

/// The secret requests must carry, compared in constant time.
pub struct Secret(Vec<u8>);

impl Secret {
    /// The header value, for this node's own requests to the mirrors of its swarm (the
    /// nodes of one swarm share one secret: docs/inflight.md).
    pub fn value(&self) -> &[u8] {
        &self.0
    }

    /// Whether `given` (a header value) is the secret. The time taken depends only on the
    /// lengths, so a caller cannot find the secret byte by byte by timing answers.
    pub fn matches(&self, given: Option<&[u8]>) -> bool {
        let Some(given) = given else { return false };
        if given.len() != self.0.len() {
            return false;
        }
        given
            .iter()
            .zip(&self.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Reads `data_dir/mirror-secret`, creating it (0600) if absent. A secret file that
/// others may read is refused: the secret would protect nothing.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<Secret> {
    let path = data_dir.join(FILE);
    match create(&path) {
        Ok(s) => return Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::File::open(&path)?;
    let mode = f.metadata()?.mode();
    if mode & 0o077 != 0 {
        return Err(refuse(
            &path,
            format!("mode {:o}: must be 0600", mode & 0o777),
        ));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let secret = text.trim();
    if secret.len() < 32 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(&path, "not a secret ipcs wrote".into()));
    }
    Ok(Secret(secret.as_bytes().to_vec()))
}

fn create(path: &PathBuf) -> std::io::Result<Secret> {
    // The kernel's CSPRNG: no RNG crate needed for 32 bytes once per data dir.
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let hex = hex::encode(raw);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(format!("{hex}\n").as_bytes())?;
    f.sync_all()?;
    Ok(Secret(hex.into_bytes()))
}

fn refuse(path: &Path, why: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_made_once_private_and_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let s = load_or_create(dir.path()).unwrap();
        let path = dir.path().join(FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let hex = text.trim().as_bytes();
        assert_eq!(hex.len(), 64);
        assert!(s.matches(Some(hex)));
        // Kept across restarts.
        assert!(load_or_create(dir.path()).unwrap().matches(Some(hex)));
        let mut wrong = hex.to_vec();
        wrong[63] ^= 1;
        assert!(!s.matches(Some(&wrong)));
        assert!(!s.matches(Some(&hex[..63])));
        assert!(!s.matches(Some(b"")));
        assert!(!s.matches(None));
    }

    #[test]
    fn readable_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let path = dir.path().join(FILE);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let err = load_or_create(dir.path()).err().unwrap();
        assert!(err.to_string().contains("must be 0600"), "{err}");
    }
}
