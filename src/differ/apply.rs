//! containerd's `applyNaive`: the loop over a layer's entries. Each name is cleaned and
//! its parent resolved under the root (`rootpath`), missing parents are created
//! (`parents`), whiteouts are validated and converted (`whiteout`), an existing entry is
//! replaced unless a directory meets a directory, the entry is written (`entry`), and
//! directory times are set last, once nothing more is created inside them.
use super::entry::{self, archive};
use super::error::DiffError;
use super::fsops;
use super::gopath::{clean, dir, join2, split};
use super::parents::mkparent;
use super::rootpath::root_path;
use super::tar::{self, Time};
use super::whiteout::{self, Mode};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where and how a layer is applied.
pub struct Target {
    /// The directory the layer is extracted into.
    pub root: Vec<u8>,
    /// Lower directories to take the attributes of new parent directories from, nearest
    /// first (overlay upperdir only).
    pub parents: Vec<Vec<u8>>,
    pub whiteouts: Mode,
    /// Device nodes cannot be created in a user namespace: skipped, as by containerd.
    pub skip_devices: bool,
}

/// What an apply did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub entries: u64,
    pub whiteouts: u64,
}

struct DirTimes {
    name: Vec<u8>,
    atime: Time,
    mtime: Time,
}

pub fn apply<R: Read>(
    target: &Target,
    tr: &mut tar::Reader<R>,
    cancel: &AtomicBool,
) -> Result<Stats, DiffError> {
    let root = clean(&target.root);
    let mut stats = Stats::default();
    let mut dirs: Vec<DirTimes> = Vec::new();
    let mut seen = whiteout::Seen::default();
    let mut buf = vec![0u8; entry::COPY_BUFFER];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(DiffError::Cancelled);
        }
        let Some(mut h) = tr.next_header().map_err(archive)? else {
            break;
        };
        h.name = clean(&h.name);
        if target.skip_devices && matches!(h.typeflag, tar::TYPE_BLOCK | tar::TYPE_CHAR) {
            tracing::warn!(
                name = %String::from_utf8_lossy(&h.name),
                "file ignored: archive may not be supported on system"
            );
            continue;
        }
        let (ppath, base) = split(&h.name);
        let ppath = root_path(&root, ppath).map_err(|e| DiffError::Io {
            context: "failed to get root path".into(),
            source: e,
        })?;
        let path = join2(&ppath, &join2(b"/", base));
        if path == root {
            tracing::debug!(name = %String::from_utf8_lossy(&h.name), "file ignored: resolved to root");
            continue;
        }
        if ppath != root {
            let parent = if base.is_empty() { dir(&path) } else { ppath };
            mkparent(&parent, &root, &target.parents)?;
        }
        whiteout::validate(&path)?;
        let write = whiteout::convert(target.whiteouts, &h, &path, &mut seen).map_err(|e| {
            DiffError::Io {
                context: format!(
                    "failed to convert whiteout file {:?}",
                    String::from_utf8_lossy(&h.name)
                ),
                source: e,
            }
        })?;
        if !write {
            stats.whiteouts += 1;
            continue;
        }
        if let Ok(st) = fsops::lstat(&path) {
            if !st.is_dir() || h.typeflag != tar::TYPE_DIR {
                fsops::remove_all(&path).map_err(DiffError::io("remove", &path))?;
            }
        }
        entry::create(&path, &root, &h, tr, &mut buf, cancel)?;
        stats.entries += 1;
        if h.typeflag == tar::TYPE_DIR {
            dirs.push(DirTimes {
                name: h.name,
                atime: h.atime,
                mtime: h.mtime,
            });
        }
        seen.unpacked.insert(path);
    }
    for d in dirs {
        let path = root_path(&root, &d.name).map_err(DiffError::io("resolving", &d.name))?;
        let atime = d.atime.max(d.mtime);
        fsops::lutimes(&path, atime.bounded_nanos(), d.mtime.bounded_nanos())
            .map_err(DiffError::io("failed call to UtimesNanoAt for", &path))?;
    }
    Ok(stats)
}
