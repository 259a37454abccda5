//! containerd's `mkparent`: creates the missing parent directories of an entry, 0755 and
//! owned by root, or, for an overlay upperdir, with the owner, mode, times and
//! (non-trusted) xattrs of the same directory in the nearest lowerdir that has it, so the
//! merged view does not change when the upperdir shadows it.
use super::error::DiffError;
use super::fsops::{self, Stat};
use super::rootpath::root_path;
use std::io;

pub fn mkparent(path: &[u8], root: &[u8], parents: &[Vec<u8>]) -> Result<(), DiffError> {
    match fsops::lstat(path) {
        Ok(st) if st.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(DiffError::io("mkparent", path)(
                io::Error::from_raw_os_error(libc::ENOTDIR),
            ))
        }
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(DiffError::io("lstat", path)(e))
        }
        Err(_) => {}
    }
    let mut i = path.len();
    while i > root.len() && path[i - 1] != b'/' {
        i -= 1;
    }
    if i > root.len() + 1 {
        mkparent(&path[..i - 1], root, parents)?;
    }
    if let Err(e) = fsops::mkdir(path, 0o755) {
        if matches!(fsops::lstat(path), Ok(st) if st.is_dir()) {
            return Ok(());
        }
        return Err(DiffError::io("mkdir", path)(e));
    }
    for p in parents {
        let ppath =
            root_path(p, &path[root.len()..]).map_err(DiffError::io("resolving in lowerdir", p))?;
        match fsops::lstat(&ppath) {
            Ok(st) if !st.is_dir() => break, // replaced: do not copy attributes
            Ok(st) => {
                copy_dir_info(&st, path)?;
                return copy_up_xattrs(path, &ppath);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(DiffError::io("lstat", &ppath)(e)),
        }
    }
    tracing::debug!(
        path = %String::from_utf8_lossy(path),
        "parent directory not found in lowerdirs: default permissions (0755) used"
    );
    Ok(())
}

/// containerd's `copyDirInfo`: owner (an EPERM for the same owner is fine), mode, times.
fn copy_dir_info(st: &Stat, path: &[u8]) -> Result<(), DiffError> {
    if let Err(e) = fsops::lchown(path, st.uid as i64, st.gid as i64) {
        let same = e.raw_os_error() == Some(libc::EPERM)
            && matches!(fsops::lstat(path), Ok(d) if d.uid == st.uid && d.gid == st.gid);
        if !same {
            return Err(DiffError::io("failed to chown", path)(e));
        }
    }
    fsops::chmod(path, st.mode & 0o7777).map_err(DiffError::io("failed to chmod", path))?;
    fsops::lutimes(path, st.atime_ns as i64, st.mtime_ns as i64)
        .map_err(DiffError::io("failed to utime", path))
}

fn ignorable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA))
}

/// containerd's `copyUpXAttrs`: every attribute but `trusted.*`, never replacing one.
fn copy_up_xattrs(dst: &[u8], src: &[u8]) -> Result<(), DiffError> {
    let keys = match fsops::llistxattr(src) {
        Ok(k) => k,
        Err(e) if ignorable(&e) => return Ok(()),
        Err(e) => return Err(DiffError::io("failed to list xattrs on", src)(e)),
    };
    for key in keys {
        if key.starts_with(b"trusted.") {
            continue;
        }
        let data = match fsops::lgetxattr(src, &key) {
            Ok(d) => d,
            Err(e) if ignorable(&e) => continue,
            Err(e) => return Err(DiffError::io("failed to get xattr on", src)(e)),
        };
        match fsops::lsetxattr(dst, &key, &data, libc::XATTR_CREATE) {
            Ok(()) => {}
            Err(e) if ignorable(&e) || e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(DiffError::io("failed to set xattr on", dst)(e)),
        }
    }
    Ok(())
}
