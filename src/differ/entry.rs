//! containerd's `createTarFile`: one tar entry written at its resolved path, then its
//! owner, xattrs, mode (after the owner, which clears setuid) and times. Hard links are
//! resolved under the root; the metadata of a hard link's header lands on the shared inode,
//! as with containerd.
use super::error::DiffError;
use super::fsops;
use super::rootpath::hardlink_root_path;
use super::tar::{self, Chunk, Header};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes written per call for file contents.
pub const COPY_BUFFER: usize = 1 << 18;

pub fn create<R: Read>(
    path: &[u8],
    root: &[u8],
    h: &Header,
    tr: &mut tar::Reader<R>,
    buf: &mut [u8],
    cancel: &AtomicBool,
) -> Result<(), DiffError> {
    let perm = (h.mode & 0o7777) as u32;
    match h.typeflag {
        tar::TYPE_DIR => {
            if !matches!(fsops::lstat(path), Ok(st) if st.is_dir()) {
                fsops::mkdir(path, perm).map_err(DiffError::io("mkdir", path))?;
            }
        }
        tar::TYPE_REG => {
            let file = fsops::create_file(path, perm).map_err(DiffError::io("open", path))?;
            copy_content(file, path, tr, buf, cancel)?;
        }
        tar::TYPE_BLOCK | tar::TYPE_CHAR | tar::TYPE_FIFO => {
            let kind = match h.typeflag {
                tar::TYPE_BLOCK => libc::S_IFBLK,
                tar::TYPE_CHAR => libc::S_IFCHR,
                _ => libc::S_IFIFO,
            };
            let range = 0..=u32::MAX as i64;
            if !range.contains(&h.devmajor) || !range.contains(&h.devminor) {
                return Err(DiffError::Archive(format!(
                    "device number {}:{} for {:?} out of range: invalid archive",
                    h.devmajor,
                    h.devminor,
                    String::from_utf8_lossy(&h.name)
                )));
            }
            let dev = fsops::mkdev(h.devmajor as u32, h.devminor as u32);
            fsops::mknod(path, perm | kind, dev).map_err(DiffError::io("mknod", path))?;
        }
        tar::TYPE_LINK => {
            let target = hardlink_root_path(root, &h.linkname)
                .map_err(DiffError::io("resolving link target", &h.linkname))?;
            fsops::link(&target, path).map_err(|e| {
                DiffError::io(
                    &format!("link {} to", String::from_utf8_lossy(&target)),
                    path,
                )(e)
            })?;
        }
        tar::TYPE_SYMLINK => {
            fsops::symlink(&h.linkname, path).map_err(DiffError::io("symlink", path))?;
        }
        tar::TYPE_XGLOBAL => {
            tracing::debug!("PAX Global Extended Headers found and ignored");
            return Ok(());
        }
        other => {
            return Err(DiffError::Archive(format!(
                "unhandled tar header type {other}"
            )))
        }
    }

    fsops::lchown(path, h.uid, h.gid).map_err(|e| {
        DiffError::io(
            &format!("failed to Lchown (UID {}, GID {})", h.uid, h.gid),
            path,
        )(e)
    })?;

    for (key, value) in h.xattrs() {
        set_xattr(path, key, value)?;
    }

    // After the owner: chown may have cleared setuid and setgid.
    let st = fsops::lstat(path).map_err(DiffError::io("lstat", path))?;
    if !st.is_symlink() {
        fsops::chmod(path, perm).map_err(DiffError::io("chmod", path))?;
    }
    let atime = h.atime.max(h.mtime);
    fsops::lutimes(path, atime.bounded_nanos(), h.mtime.bounded_nanos())
        .map_err(DiffError::io("failed call to UtimesNanoAt for", path))
}

/// containerd's `setxattr` and the errors it forgives: `trusted.*` is never set from an
/// archive, ENOTSUP is ignored, and so is EPERM for `user.*` on what is neither a file nor
/// a directory.
fn set_xattr(path: &[u8], key: &[u8], value: &[u8]) -> Result<(), DiffError> {
    let shown = || String::from_utf8_lossy(key).into_owned();
    if key.starts_with(b"trusted.") {
        tracing::warn!(key = %shown(), "ignored xattr in archive: admin attributes from archive not supported");
        return Ok(());
    }
    match fsops::lsetxattr(path, key, value, 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
            tracing::warn!(key = %shown(), error = %e, "ignored xattr in archive");
            Ok(())
        }
        Err(e)
            if e.raw_os_error() == Some(libc::EPERM)
                && key.starts_with(b"user.")
                && matches!(fsops::lstat(path), Ok(st) if !st.is_regular() && !st.is_dir()) =>
        {
            tracing::warn!(key = %shown(), error = %e, "ignored xattr in archive");
            Ok(())
        }
        Err(e) => Err(DiffError::io(
            &format!("failed to setxattr for key {:?} on", shown()),
            path,
        )(e)),
    }
}

/// Writes the entry's content; holes of sparse entries are skipped rather than written
/// (the file reads the same: zeros).
fn copy_content<R: Read>(
    mut file: File,
    path: &[u8],
    tr: &mut tar::Reader<R>,
    buf: &mut [u8],
    cancel: &AtomicBool,
) -> Result<(), DiffError> {
    let mut pos: u64 = 0;
    let mut end_is_hole = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(DiffError::Cancelled);
        }
        match tr.read_data(buf).map_err(archive)? {
            Chunk::Data(n) => {
                file.write_all(&buf[..n])
                    .map_err(DiffError::io("write", path))?;
                pos += n as u64;
                end_is_hole = false;
            }
            Chunk::Hole(n) => {
                if n > 0 {
                    pos += n;
                    file.seek(SeekFrom::Start(pos))
                        .map_err(DiffError::io("seek", path))?;
                    end_is_hole = true;
                }
            }
            Chunk::End => break,
        }
    }
    if end_is_hole {
        file.set_len(pos).map_err(DiffError::io("truncate", path))?;
    }
    Ok(())
}

/// A tar reading error as the applier reports it.
pub fn archive(e: tar::TarError) -> DiffError {
    DiffError::Archive(e.to_string())
}
