//! Where a layer goes, decided from containerd's mounts as containerd's applier decides
//! (core/diff/apply/apply_linux.go): one overlay mount with an upperdir is applied straight
//! into the upperdir with whiteout conversion (not inside a user namespace); one writable
//! bind mount straight into its source directory; anything else through a temporary
//! mount in a private directory, always unmounted afterwards.
use super::error::DiffError;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// A mount as containerd passes it (`containerd.types.Mount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub target: String,
    pub options: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Extract into `upper`, taking new parents' attributes from `lowers`.
    Overlay { upper: String, lowers: Vec<String> },
    /// Extract into a directory as it is (a writable bind mount's source).
    Directory { root: String },
    /// Mount all, extract into the mount point, unmount.
    TempMount(Vec<Mount>),
}

/// containerd's `getOverlayPath`: the last upperdir= and lowerdir= options.
fn overlay_paths(options: &[String]) -> Option<(String, Vec<String>)> {
    let mut upper = String::new();
    let mut lowers = Vec::new();
    for o in options {
        if let Some(u) = o.strip_prefix("upperdir=") {
            upper = u.to_string();
        } else if let Some(l) = o.strip_prefix("lowerdir=") {
            lowers = l.split(':').map(str::to_string).collect();
        }
    }
    (!upper.is_empty()).then_some((upper, lowers))
}

pub fn plan(mounts: &[Mount], in_userns: bool) -> Result<Plan, DiffError> {
    if mounts.is_empty() {
        return Err(DiffError::InvalidArgument("apply without mounts".into()));
    }
    // Several mounts, or mount types that name a handler ("format/…", "mkfs/…"), need
    // containerd's mount manager.
    if mounts.len() > 1 || mounts.iter().any(|m| m.kind.contains('/')) {
        return Err(DiffError::Unimplemented(format!(
            "ipcs-diff applies into one overlay, bind or plain mount, not {:?}",
            mounts.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>()
        )));
    }
    let m = &mounts[0];
    if m.kind == "overlay" && !in_userns {
        if let Some((upper, lowers)) = overlay_paths(&m.options) {
            return Ok(Plan::Overlay { upper, lowers });
        }
    }
    if m.kind == "bind" && !m.options.iter().any(|o| o == "ro") && m.target.is_empty() {
        return Ok(Plan::Directory {
            root: m.source.clone(),
        });
    }
    Ok(Plan::TempMount(mounts.to_vec()))
}

/// moby's `userns.RunningInUserNS`: anything but the full identity uid map.
pub fn running_in_userns() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(s) => {
            let fields: Vec<&str> = s.split_whitespace().collect();
            !(fields.len() == 3
                && fields[0] == "0"
                && fields[1] == "0"
                && fields[2] == "4294967295")
        }
        Err(_) => false,
    }
}

/// Mount flags and data from fstab-style options (containerd's `parseMountOptions`).
struct Parsed {
    flags: libc::c_ulong,
    propagation: libc::c_ulong,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Result<Parsed, DiffError> {
    let mut p = Parsed {
        flags: 0,
        propagation: 0,
        data: Vec::new(),
    };
    for o in options {
        let (clear, flag) = match o.as_str() {
            "async" => (true, libc::MS_SYNCHRONOUS),
            "atime" => (true, libc::MS_NOATIME),
            "bind" => (false, libc::MS_BIND),
            "defaults" => (false, 0),
            "dev" => (true, libc::MS_NODEV),
            "diratime" => (true, libc::MS_NODIRATIME),
            "dirsync" => (false, libc::MS_DIRSYNC),
            "exec" => (true, libc::MS_NOEXEC),
            "mand" => (false, libc::MS_MANDLOCK),
            "noatime" => (false, libc::MS_NOATIME),
            "nodev" => (false, libc::MS_NODEV),
            "nodiratime" => (false, libc::MS_NODIRATIME),
            "noexec" => (false, libc::MS_NOEXEC),
            "nomand" => (true, libc::MS_MANDLOCK),
            "norelatime" => (true, libc::MS_RELATIME),
            "nostrictatime" => (true, libc::MS_STRICTATIME),
            "nosuid" => (false, libc::MS_NOSUID),
            "rbind" => (false, libc::MS_BIND | libc::MS_REC),
            "relatime" => (false, libc::MS_RELATIME),
            "remount" => (false, libc::MS_REMOUNT),
            "ro" => (false, libc::MS_RDONLY),
            "rw" => (true, libc::MS_RDONLY),
            "strictatime" => (false, libc::MS_STRICTATIME),
            "suid" => (true, libc::MS_NOSUID),
            "sync" => (false, libc::MS_SYNCHRONOUS),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let rec = if o.starts_with('r') { libc::MS_REC } else { 0 };
                p.propagation |= rec
                    | match o.trim_start_matches('r') {
                        "private" => libc::MS_PRIVATE,
                        "shared" => libc::MS_SHARED,
                        "slave" => libc::MS_SLAVE,
                        _ => libc::MS_UNBINDABLE,
                    };
                continue;
            }
            "loop" => {
                return Err(DiffError::Unimplemented(
                    "ipcs-diff does not set up loop devices".into(),
                ))
            }
            other if other.starts_with("uidmap=") || other.starts_with("gidmap=") => {
                return Err(DiffError::Unimplemented(
                    "ipcs-diff does not apply into idmapped mounts".into(),
                ))
            }
            other => {
                // overlay's volatile cannot be mounted twice on one upperdir (containerd
                // drops it for its temporary mounts too).
                if other != "volatile" && other != "fsync=volatile" {
                    p.data.push(other.to_string());
                }
                continue;
            }
        };
        if clear {
            p.flags &= !flag;
        } else {
            p.flags |= flag;
        }
    }
    Ok(p)
}

fn cstr(s: &str) -> Result<CString, DiffError> {
    CString::new(s).map_err(|_| DiffError::InvalidArgument(format!("NUL in mount field {s:?}")))
}

fn sys_mount(
    source: &str,
    target: &Path,
    kind: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let s = CString::new(source)?;
    let t = CString::new(target.as_os_str().as_bytes())?;
    let k = CString::new(kind)?;
    let d = CString::new(data)?;
    // SAFETY: valid C strings that outlive the call.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), k.as_ptr(), flags, d.as_ptr().cast()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), DiffError> {
    let p = parse_options(&m.options)?;
    let shown = || format!("mounting {} ({}) on {}", m.source, m.kind, target.display());
    let data = p.data.join(",");
    let _ = cstr(&m.source)?;
    if p.flags & libc::MS_REMOUNT == 0 || !data.is_empty() {
        let flags = p.flags & !(libc::MS_REMOUNT);
        sys_mount(&m.source, target, &m.kind, flags, &data).map_err(|e| DiffError::Io {
            context: shown(),
            source: e,
        })?;
    }
    if p.propagation != 0 {
        sys_mount("", target, "", p.propagation, "").map_err(|e| DiffError::Io {
            context: shown(),
            source: e,
        })?;
    }
    if p.flags & libc::MS_BIND != 0 && p.flags & libc::MS_RDONLY != 0 {
        let flags = p.flags | libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        sys_mount("", target, "", flags, "").map_err(|e| DiffError::Io {
            context: shown(),
            source: e,
        })?;
    }
    Ok(())
}

fn unmount(target: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let t = CString::new(target.as_os_str().as_bytes())?;
    // containerd retries EBUSY for a while before giving up.
    for attempt in 0..50 {
        // SAFETY: valid C string.
        let r = unsafe { libc::umount2(t.as_ptr(), libc::UMOUNT_NOFOLLOW) };
        if r == 0 {
            continue; // a stacked mount may remain: unmount until there is none
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => return Ok(()),
            Some(libc::EBUSY) if attempt < 49 => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            _ => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EBUSY))
}

/// containerd's `WithTempMount`: mounts in a new private directory under `base`, runs
/// `f` on it, always unmounts, then removes the (empty) directory, never its contents.
pub fn with_temp_mount<T>(
    mounts: &[Mount],
    base: &Path,
    f: impl FnOnce(&Path) -> Result<T, DiffError>,
) -> Result<T, DiffError> {
    std::fs::create_dir_all(base).map_err(DiffError::io(
        "creating",
        base.as_os_str().as_encoded_bytes(),
    ))?;
    let dir = tempdir_in(base)?;
    let mut mounted: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for m in mounts {
            let target = if m.target.is_empty() {
                dir.clone()
            } else {
                dir.join(m.target.trim_start_matches('/'))
            };
            mount_one(m, &target)?;
            mounted.push(target);
        }
        f(&dir)
    })();
    let mut unmount_err = None;
    for t in mounted.iter().rev() {
        if let Err(e) = unmount(t) {
            unmount_err = Some(DiffError::Io {
                context: format!("failed to unmount {}", t.display()),
                source: e,
            });
        }
    }
    if unmount_err.is_none() {
        if let Err(e) = std::fs::remove_dir(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "failed to remove mount temp dir");
        }
    }
    match (result, unmount_err) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(e),
        (Ok(v), None) => Ok(v),
    }
}

/// Unmounts whatever a crash left mounted under `base` (deepest first) and removes the
/// then empty directories, like containerd's `CleanupTempMounts`. Never removes contents.
pub fn cleanup_temp_mounts(base: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", base.display());
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        match unmount(Path::new(&p)) {
            Ok(()) => tracing::warn!(mount = %p, "unmounted a temporary mount left by a crash"),
            Err(e) => {
                tracing::error!(mount = %p, error = %e, "cannot unmount a leftover temporary mount")
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ipcs-mount") {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tempdir_in(base: &Path) -> Result<PathBuf, DiffError> {
    use std::os::unix::fs::DirBuilderExt;
    for _ in 0..100 {
        let mut rnd = [0u8; 6];
        // SAFETY: valid buffer of the given length.
        unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) };
        let dir = base.join(format!("ipcs-mount{}", hex::encode(rnd)));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(DiffError::Io {
                    context: format!("failed to create temp dir in {}", base.display()),
                    source: e,
                })
            }
        }
    }
    Err(DiffError::Internal("no free temp mount name".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            target: String::new(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn plans_like_containerd() {
        assert_eq!(
            plan(
                &[m(
                    "overlay",
                    "overlay",
                    &["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"]
                )],
                false
            )
            .unwrap(),
            Plan::Overlay {
                upper: "/u".into(),
                lowers: vec!["/l1".into(), "/l2".into()]
            }
        );
        // In a user namespace the overlay is mounted instead.
        assert!(matches!(
            plan(
                &[m("overlay", "overlay", &["upperdir=/u", "lowerdir=/l"])],
                true
            )
            .unwrap(),
            Plan::TempMount(_)
        ));
        // Without an upperdir (read-only view): mounted.
        assert!(matches!(
            plan(&[m("overlay", "overlay", &["lowerdir=/l"])], false).unwrap(),
            Plan::TempMount(_)
        ));
        assert_eq!(
            plan(&[m("bind", "/snap/fs", &["rbind", "rw"])], false).unwrap(),
            Plan::Directory {
                root: "/snap/fs".into()
            }
        );
        assert!(matches!(
            plan(&[m("bind", "/snap/fs", &["rbind", "ro"])], false).unwrap(),
            Plan::TempMount(_)
        ));
        assert!(matches!(
            plan(&[m("ext4", "/dev/x", &[])], false).unwrap(),
            Plan::TempMount(_)
        ));
        assert!(matches!(
            plan(&[m("format/erofs", "/x", &[])], false),
            Err(DiffError::Unimplemented(_))
        ));
        assert!(matches!(
            plan(&[m("bind", "/a", &[]), m("bind", "/b", &[])], false),
            Err(DiffError::Unimplemented(_))
        ));
        assert!(matches!(
            plan(&[], false),
            Err(DiffError::InvalidArgument(_))
        ));
    }

    #[test]
    fn options_become_flags_and_data() {
        let p = parse_options(&[
            "rbind".into(),
            "ro".into(),
            "rprivate".into(),
            "lowerdir=/a".into(),
            "volatile".into(),
        ])
        .unwrap();
        assert_eq!(p.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(p.propagation, libc::MS_REC | libc::MS_PRIVATE);
        assert_eq!(p.data, vec!["lowerdir=/a".to_string()]);
    }
}
