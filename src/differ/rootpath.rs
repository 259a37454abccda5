//! containerd's `fs.RootPath` (continuity): joins a path to a root, resolving every
//! symlink met on the way as if the root were `/`. An absolute link target restarts at
//! the root, and `..` never climbs above it, so the result always lies under the root.
//! Every component is `lstat`ed and only symlinks are read: nothing is ever followed by
//! the kernel. Components that do not exist yet are taken literally.
use super::fsops;
use super::gopath::{join, join2, split};
use std::io;

/// Followed links per resolution before giving up, like continuity.
const MAX_LINKS: u32 = 255;

/// Resolves `path` under `root` (both as bytes; `root` is absolute and clean).
pub fn root_path(root: &[u8], path: &[u8]) -> io::Result<Vec<u8>> {
    if path.is_empty() {
        return Ok(root.to_vec());
    }
    let mut walked = 0u32;
    let mut path = path.to_vec();
    loop {
        let before = walked;
        let newpath = walk_links(root, &path, &mut walked)?;
        path = newpath;
        if before == walked {
            let rooted = join2(b"/", &path);
            if path == rooted {
                return Ok(join2(root, &rooted));
            }
            path = rooted;
        }
    }
}

/// One component: its resolved path (rooted at `/`) and whether it was a symlink, in which
/// case the returned path is the raw link target.
fn walk_link(root: &[u8], path: &[u8], walked: &mut u32) -> io::Result<(Vec<u8>, bool)> {
    if *walked > MAX_LINKS {
        return Err(io::Error::other("too many links"));
    }
    let path = join2(b"/", path);
    if path == b"/" {
        return Ok((path, false));
    }
    let real = join2(root, &path);
    match fsops::lstat(&real) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((path, false)),
        Err(e) => Err(e),
        Ok(st) if !st.is_symlink() => Ok((path, false)),
        Ok(_) => {
            let target = fsops::readlink(&real)?;
            *walked += 1;
            Ok((target, true))
        }
    }
}

fn walk_links(root: &[u8], path: &[u8], walked: &mut u32) -> io::Result<Vec<u8>> {
    let (dir, file) = split(path);
    if dir.is_empty() {
        return Ok(walk_link(root, file, walked)?.0);
    }
    if file.is_empty() {
        // `dir` ends with a separator.
        if dir == b"/" {
            return Ok(dir.to_vec());
        }
        return walk_links(root, &dir[..dir.len() - 1], walked);
    }
    let newdir = walk_links(root, dir, walked)?;
    let (newpath, is_link) = walk_link(root, &join2(&newdir, file), walked)?;
    if !is_link {
        return Ok(newpath);
    }
    if newpath.first() == Some(&b'/') {
        return Ok(newpath);
    }
    Ok(join(&[&newdir, &newpath]))
}

/// containerd's `hardlinkRootPath`: the parent resolved under the root, the last
/// component taken literally (a hard link to a symlink links the symlink itself); a result
/// outside the root becomes the root.
pub fn hardlink_root_path(root: &[u8], linkname: &[u8]) -> io::Result<Vec<u8>> {
    let (ppath, base) = split(linkname);
    let ppath = root_path(root, ppath)?;
    let target = join2(&ppath, base);
    if !target.starts_with(root) {
        return Ok(root.to_vec());
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    fn rp(root: &std::path::Path, p: &str) -> String {
        let r = root_path(root.as_os_str().as_bytes(), p.as_bytes()).unwrap();
        let r = std::str::from_utf8(&r).unwrap().to_string();
        r.strip_prefix(root.to_str().unwrap()).unwrap().to_string()
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("a/up")).unwrap();
        symlink("b", root.join("a/rel")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(rp(root, "abs/passwd"), "/etc/passwd");
        assert_eq!(rp(root, "a/up/passwd"), "/etc/passwd");
        assert_eq!(rp(root, "a/rel/x"), "/a/b/x");
        assert_eq!(rp(root, "../../x"), "/x");
        assert_eq!(rp(root, "/"), "");
        assert_eq!(rp(root, "a/"), "/a");
        assert_eq!(rp(root, "missing/x"), "/missing/x");
        assert!(root_path(root.as_os_str().as_bytes(), b"loop1/x").is_err());
    }

    #[test]
    fn hardlink_targets_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().as_os_str().as_bytes();
        let r = hardlink_root_path(root, b"..").unwrap();
        assert_eq!(r, root);
        let r = hardlink_root_path(root, b"/etc/passwd").unwrap();
        assert!(r.ends_with(b"/etc/passwd") && r.starts_with(root));
    }
}
