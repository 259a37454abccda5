//! OCI whiteouts (`.wh.<name>` deletes `<name>`, `.wh..wh..opq` makes its directory
//! opaque), handled as containerd's applier handles them: applied to the tree for bind and
//! temporary mounts (delete the target; an opaque directory loses everything not unpacked
//! from this layer), converted for an overlay upperdir (a 0/0 character device; the
//! `trusted.overlay.opaque=y` attribute).
use super::error::DiffError;
use super::fsops;
use super::gopath::{base, dir, join2};
use super::tar::Header;
use std::collections::HashSet;
use std::io;

pub const PREFIX: &[u8] = b".wh.";
pub const OPAQUE: &[u8] = b".wh..wh..opq";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Remove whiteout targets (containerd's default converter).
    Apply,
    /// Convert to overlayfs whiteouts (containerd's `OverlayConvertWhiteout`).
    Overlay,
}

/// containerd's `validateWhiteout`: the whited-out name must stay in its directory.
pub fn validate(path: &[u8]) -> Result<(), DiffError> {
    let b = base(path);
    if b == OPAQUE {
        return Ok(());
    }
    if let Some(original) = b.strip_prefix(PREFIX) {
        let mut d = dir(path);
        let original_path = join2(&d, original);
        if d.last() != Some(&b'/') {
            d.push(b'/');
        }
        if !original_path.starts_with(&d) {
            return Err(DiffError::Archive(format!(
                "invalid whiteout name: {}: invalid archive",
                String::from_utf8_lossy(b)
            )));
        }
    }
    Ok(())
}

/// What the whiteout conversion remembers across one layer.
#[derive(Default)]
pub struct Seen {
    /// Paths written from this layer: an opaque marker keeps them, whatever the order.
    pub unpacked: HashSet<Vec<u8>>,
    /// Directories whose opaque marker was handled (containerd 2.4 walks each only once).
    pub opaque: HashSet<Vec<u8>>,
}

/// containerd's whiteout conversion for the entry at `path`: whether the entry itself is
/// still to be written.
pub fn convert(mode: Mode, h: &Header, path: &[u8], seen: &mut Seen) -> io::Result<bool> {
    let b = base(path);
    let d = dir(path);
    match mode {
        Mode::Overlay => {
            if b == OPAQUE {
                fsops::setxattr(&d, b"trusted.overlay.opaque", b"y")?;
                return Ok(false);
            }
            if let Some(original) = b.strip_prefix(PREFIX) {
                let original_path = join2(&d, original);
                fsops::mknod(&original_path, libc::S_IFCHR, 0)?;
                fsops::chown(&original_path, h.uid, h.gid)?;
                return Ok(false);
            }
            Ok(true)
        }
        Mode::Apply => {
            if b == OPAQUE {
                if !seen.opaque.insert(d.clone()) {
                    return Ok(false);
                }
                fsops::lstat(&d)?;
                clear_opaque(&d, &seen.unpacked)?;
                return Ok(false);
            }
            if let Some(original) = b.strip_prefix(PREFIX) {
                fsops::remove_all(&join2(&d, original))?;
                return Ok(false);
            }
            Ok(true)
        }
    }
}

/// What containerd's `filepath.Walk` over an opaque directory does: everything below
/// `dir` that was not unpacked from this layer is removed; unpacked directories are kept
/// and walked in turn.
fn clear_opaque(dir: &[u8], unpacked: &HashSet<Vec<u8>>) -> io::Result<()> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(std::ffi::OsStr::from_bytes(dir))?
        .map(|e| e.map(|e| e.file_name().into_vec()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let p = join2(dir, &name);
        let st = match fsops::lstat(&p) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !unpacked.contains(&p) {
            fsops::remove_all(&p)?;
        } else if st.is_dir() {
            clear_opaque(&p, unpacked)?;
        }
    }
    Ok(())
}
