//! The system calls the applier makes, on absolute paths given as bytes, each the one
//! containerd's Go code makes (noted per function). None follows a symlink in the last
//! component except where containerd's does on a path it has just created itself; the
//! parents of every path were resolved by `rootpath` and contain no symlink.
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

fn cpath(p: &[u8]) -> io::Result<CString> {
    // Go's syscall layer refuses a NUL byte in a path with EINVAL.
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The fields of `struct stat` the applier looks at.
#[derive(Clone, Copy)]
pub struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i128,
    pub mtime_ns: i128,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
    pub fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// `os.Lstat`.
pub fn lstat(p: &[u8]) -> io::Result<Stat> {
    let c = cpath(p)?;
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    check(unsafe { libc::lstat64(c.as_ptr(), &mut st) })?;
    Ok(Stat {
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        atime_ns: st.st_atime as i128 * 1_000_000_000 + st.st_atime_nsec as i128,
        mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
    })
}

/// `os.Readlink`.
pub fn readlink(p: &[u8]) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::fs::read_link(std::ffi::OsStr::from_bytes(p))?;
    Ok(target.into_os_string().as_bytes().to_vec())
}

/// containerd's `mkdir`: `os.Mkdir(path, perm)` then `os.Chmod(path, perm)` so the umask
/// does not apply. `perm` holds the permission, setuid, setgid and sticky bits.
pub fn mkdir(p: &[u8], perm: u32) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkdir(c.as_ptr(), perm as libc::mode_t) })?;
    chmod(p, perm)
}

/// `os.Chmod` (follows a symlink; callers only pass paths that are not symlinks).
pub fn chmod(p: &[u8], perm: u32) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid C string.
    check(unsafe { libc::chmod(c.as_ptr(), perm as libc::mode_t) })
}

/// `os.Lchown`: ids as Go passes them, truncated to 32 bits by the kernel (-1 keeps).
pub fn lchown(p: &[u8], uid: i64, gid: i64) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid C string.
    check(unsafe {
        libc::fchownat(
            libc::AT_FDCWD,
            c.as_ptr(),
            uid as u32,
            gid as u32,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `os.Chown` (follows): only used on a whiteout device just created.
pub fn chown(p: &[u8], uid: i64, gid: i64) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid C string.
    check(unsafe { libc::fchownat(libc::AT_FDCWD, c.as_ptr(), uid as u32, gid as u32, 0) })
}

/// `unix.Lsetxattr`.
pub fn lsetxattr(p: &[u8], key: &[u8], value: &[u8], flags: libc::c_int) -> io::Result<()> {
    let c = cpath(p)?;
    let k = cpath(key)?;
    // SAFETY: valid C strings; value pointer and length describe a live slice.
    check(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

/// `unix.Setxattr` (follows): the overlay opaque marker on a resolved directory.
pub fn setxattr(p: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
    let c = cpath(p)?;
    let k = cpath(key)?;
    // SAFETY: as for lsetxattr.
    check(unsafe {
        libc::setxattr(
            c.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `sysx.LListxattr`: the attribute names.
pub fn llistxattr(p: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: valid C string; buffer pointer and length describe a live allocation.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf
                .split(|&b| b == 0)
                .filter(|k| !k.is_empty())
                .map(|k| k.to_vec())
                .collect());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return Err(e);
        }
        let len = buf.len() * 4;
        buf.resize(len, 0);
    }
}

/// `sysx.LGetxattr`.
pub fn lgetxattr(p: &[u8], key: &[u8]) -> io::Result<Vec<u8>> {
    let c = cpath(p)?;
    let k = cpath(key)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings; buffer pointer and length describe a live allocation.
        let n =
            unsafe { libc::lgetxattr(c.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return Err(e);
        }
        let len = buf.len() * 4;
        buf.resize(len, 0);
    }
}

/// `unix.Mkdev` as Go computes it.
pub fn mkdev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (major as u64, minor as u64);
    ((major & 0x0000_0fff) << 8)
        | ((major & 0xffff_f000) << 32)
        | (minor & 0x0000_00ff)
        | ((minor & 0xffff_ff00) << 12)
}

/// `unix.Mknod`: the raw system call, so that `dev` reaches the kernel exactly as from Go
/// (libc would refuse what Go passes through).
pub fn mknod(p: &[u8], mode: u32, dev: u64) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid C string; the remaining arguments are plain integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mknodat,
            libc::AT_FDCWD as libc::c_long,
            c.as_ptr(),
            mode as libc::c_ulong,
            dev as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `os.Link`: `linkat` without AT_SYMLINK_FOLLOW, so a link to a symlink links the symlink.
pub fn link(old: &[u8], new: &[u8]) -> io::Result<()> {
    let o = cpath(old)?;
    let n = cpath(new)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::linkat(libc::AT_FDCWD, o.as_ptr(), libc::AT_FDCWD, n.as_ptr(), 0) })
}

/// `os.Symlink`.
pub fn symlink(target: &[u8], p: &[u8]) -> io::Result<()> {
    let t = cpath(target)?;
    let c = cpath(p)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::symlink(t.as_ptr(), c.as_ptr()) })
}

fn timespec(ns: i64) -> libc::timespec {
    // unix.NsecToTimespec: floor division, so the nanoseconds are never negative.
    libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    }
}

/// containerd's `chtimes`: `UtimesNanoAt(AT_FDCWD, path, …, AT_SYMLINK_NOFOLLOW)`.
pub fn lutimes(p: &[u8], atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
    let c = cpath(p)?;
    let ts = [timespec(atime_ns), timespec(mtime_ns)];
    // SAFETY: valid C string and a two-element timespec array.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `os.RemoveAll`: removes `p` and everything under it, never following a symlink; a
/// missing path is not an error.
pub fn remove_all(p: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::OsStr::from_bytes(p);
    match lstat(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(st) if st.is_dir() => match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        },
        Ok(_) => match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        },
    }
}

/// containerd's `openFile(path, O_WRONLY|O_CREATE|O_TRUNC, perm)` plus O_NOFOLLOW (the
/// path was removed just before, so a symlink there can only be hostile), then
/// `f.Chmod(perm)` so the umask does not apply.
pub fn create_file(p: &[u8], perm: u32) -> io::Result<File> {
    let c = cpath(p)?;
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            perm as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let f = unsafe { File::from_raw_fd(fd) };
    // SAFETY: valid open descriptor.
    check(unsafe { libc::fchmod(f.as_raw_fd(), perm as libc::mode_t) })?;
    Ok(f)
}

/// containerd's `doSyncFs`: `syncfs` on the filesystem holding `p`.
pub fn syncfs(p: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let f = File::open(std::ffi::OsStr::from_bytes(p))?;
    // SAFETY: valid open descriptor.
    check(unsafe { libc::syncfs(f.as_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkdev_matches_go() {
        assert_eq!(mkdev(1, 3), 0x103);
        assert_eq!(mkdev(0x1234, 0x56789), 0x0000_1000_5672_3489);
    }

    #[test]
    fn timespec_floors() {
        let t = timespec(-1);
        assert_eq!((t.tv_sec, t.tv_nsec), (-1, 999_999_999));
    }
}
