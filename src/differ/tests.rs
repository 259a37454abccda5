//! The applier on crafted layers in temporary directories (as root, like ipcs runs):
//! every entry type and attribute, whiteouts in both modes, the overlay parent copies,
//! sparse files, the diffID, and hostile layers that must stay contained.
use super::testtar::{Entry, Tar};
use super::*;
use crate::digest::{Algorithm, Digester};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

const OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn sha256(b: &[u8]) -> Digest {
    let mut d = Digester::new(Algorithm::Sha256);
    d.update(b);
    d.digest()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

struct Applied2 {
    applied: Applied,
    stats: Stats,
}

fn apply_with(
    layer: &[u8],
    media_type: &str,
    root: &Path,
    whiteouts: WhiteoutMode,
    parents: &[&Path],
) -> Result<Applied2, DiffError> {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(layer).unwrap();
    use std::io::Seek;
    f.rewind().unwrap();
    let blob = VerifiedBlob {
        file: f,
        size: layer.len() as u64,
    };
    let digest = sha256(layer);
    let decoding = media::decoding(media_type)?;
    let (stream, input) = source::open(blob, &digest, decoding)?;
    let mut tr = tar::Reader::new(input);
    let target = Target {
        root: root.as_os_str().as_bytes().to_vec(),
        parents: parents
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect(),
        whiteouts,
        skip_devices: false,
    };
    let stats = apply::apply(&target, &mut tr, &AtomicBool::new(false))?;
    let f = stream.finish(tr.into_inner())?;
    Ok(Applied2 {
        applied: Applied {
            diff_id: f.diff_id,
            size: f.uncompressed_size,
        },
        stats,
    })
}

fn apply_plain(layer: &[u8], root: &Path) -> Result<Applied2, DiffError> {
    apply_with(layer, OCI_TAR, root, WhiteoutMode::Apply, &[])
}

fn xattr(p: &Path, key: &str) -> Option<Vec<u8>> {
    fsops::lgetxattr(p.as_os_str().as_bytes(), key.as_bytes()).ok()
}

fn mtime_ns(p: &Path) -> i128 {
    let m = std::fs::symlink_metadata(p).unwrap();
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// Every file under `dir`, for checking that nothing escaped into it.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn entries_and_metadata_like_containerd() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut t = Tar::new();
    t.entry(
        Entry {
            typeflag: b'5',
            name: b"etc/",
            mode: 0o2755,
            uid: 7,
            gid: 8,
            mtime: 1_000_000_000,
            ..Default::default()
        },
        b"",
    );
    t.pax(&[
        ("mtime", b"1234567890.123456789"),
        ("SCHILY.xattr.user.note", b"hello"),
        (
            "SCHILY.xattr.security.capability",
            b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ),
        ("SCHILY.xattr.trusted.ignored", b"x"),
    ]);
    t.entry(
        Entry {
            name: b"etc/suid",
            mode: 0o4755,
            uid: 1000,
            gid: 1001,
            size: 5,
            ..Default::default()
        },
        b"hello",
    );
    t.dir("tmp", 0o1777);
    t.symlink("etc/link", "../suid-target");
    t.entry(
        Entry {
            name: b"etc/plain",
            mode: 0o600,
            uid: 3,
            size: 1,
            ..Default::default()
        },
        b"p",
    );
    t.hardlink("etc/hard", "etc/plain");
    t.entry(
        Entry {
            typeflag: b'6',
            name: b"fifo",
            mode: 0o600,
            ..Default::default()
        },
        b"",
    );
    t.entry(
        Entry {
            typeflag: b'3',
            name: b"dev/null",
            mode: 0o666,
            major: 1,
            minor: 3,
            ..Default::default()
        },
        b"",
    );
    t.entry(
        Entry {
            typeflag: b'4',
            name: b"dev/blk",
            mode: 0o660,
            major: 7,
            minor: 300,
            gid: 6,
            ..Default::default()
        },
        b"",
    );
    let layer = t.finish();
    let a = apply_plain(&layer, root).unwrap();
    assert_eq!(a.applied.diff_id, sha256(&layer));
    assert_eq!(a.applied.size, layer.len() as u64);
    assert_eq!(a.stats.entries, 9);

    let etc = std::fs::metadata(root.join("etc")).unwrap();
    assert_eq!(etc.permissions().mode() & 0o7777, 0o2755);
    assert_eq!((etc.uid(), etc.gid()), (7, 8));
    assert_eq!(mtime_ns(&root.join("etc")), 1_000_000_000 * 1_000_000_000);

    let suid = root.join("etc/suid");
    let m = std::fs::metadata(&suid).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(std::fs::read(&suid).unwrap(), b"hello");
    assert_eq!(mtime_ns(&suid), 1_234_567_890_123_456_789);
    assert_eq!(xattr(&suid, "user.note").unwrap(), b"hello");
    assert_eq!(xattr(&suid, "security.capability").unwrap().len(), 20);
    assert!(xattr(&suid, "trusted.ignored").is_none());
    // The hard link shares the inode, and its header's metadata landed on it.
    let h = std::fs::metadata(root.join("etc/hard")).unwrap();
    assert_eq!(
        h.ino(),
        std::fs::metadata(root.join("etc/plain")).unwrap().ino()
    );
    assert_eq!((h.uid(), h.gid()), (0, 0));
    assert_eq!(h.permissions().mode() & 0o7777, 0o644);

    assert_eq!(
        std::fs::metadata(root.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/link")).unwrap(),
        Path::new("../suid-target")
    );
    assert!(std::fs::metadata(root.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let null = std::fs::metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    let blk = std::fs::metadata(root.join("dev/blk")).unwrap();
    assert!(blk.file_type().is_block_device());
    assert_eq!(blk.rdev(), libc::makedev(7, 300));
    assert_eq!(blk.permissions().mode() & 0o7777, 0o660);
    // A parent made by mkparent: 0755, root.
    let dev = std::fs::metadata(root.join("dev")).unwrap();
    assert_eq!(dev.permissions().mode() & 0o7777, 0o755);
}

#[test]
fn gzip_zstd_and_plain_give_the_same_tree_and_diff_id() {
    let mut t = Tar::new();
    t.dir("a", 0o755).file("a/f", 0o644, &vec![b'x'; 300_000]);
    let layer = t.finish();
    for (media, bytes) in [
        (OCI_TAR, layer.clone()),
        (OCI_GZIP, gzip(&layer)),
        (OCI_ZSTD, zstd::encode_all(&layer[..], 3).unwrap()),
        // A gzip media type holding zstd: detected by its magic, like containerd.
        (OCI_GZIP, zstd::encode_all(&layer[..], 1).unwrap()),
        ("application/vnd.docker.image.rootfs.diff.tar", gzip(&layer)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let a = apply_with(&bytes, media, dir.path(), WhiteoutMode::Apply, &[]).unwrap();
        assert_eq!(a.applied.diff_id, sha256(&layer), "{media}");
        assert_eq!(
            std::fs::read(dir.path().join("a/f")).unwrap().len(),
            300_000
        );
    }
}

#[test]
fn trailing_bytes_after_the_archive_count_in_the_diff_id() {
    let mut layer = Tar::new().file("f", 0o644, b"x").finish();
    layer.extend_from_slice(&[0u8; 8192]);
    layer.extend_from_slice(b"anything at all");
    let dir = tempfile::tempdir().unwrap();
    let a = apply_with(
        &gzip(&layer),
        OCI_GZIP,
        dir.path(),
        WhiteoutMode::Apply,
        &[],
    )
    .unwrap();
    assert_eq!(a.applied.diff_id, sha256(&layer));
    assert_eq!(a.applied.size, layer.len() as u64);
}

#[test]
fn a_wrong_blob_is_data_loss() {
    let layer = Tar::new().file("f", 0o644, b"x").finish();
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&layer).unwrap();
    use std::io::Seek;
    f.rewind().unwrap();
    let other = sha256(b"something else");
    let (stream, input) = source::open(
        VerifiedBlob {
            file: f,
            size: layer.len() as u64,
        },
        &other,
        media::Decoding::Plain,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tr = tar::Reader::new(input);
    let target = Target {
        root: dir.path().as_os_str().as_bytes().to_vec(),
        parents: vec![],
        whiteouts: WhiteoutMode::Apply,
        skip_devices: false,
    };
    apply::apply(&target, &mut tr, &AtomicBool::new(false)).unwrap();
    assert!(matches!(
        stream.finish(tr.into_inner()),
        Err(DiffError::DataLoss(_))
    ));
}

#[test]
fn directory_times_are_set_after_their_contents() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    t.entry(
        Entry {
            typeflag: b'5',
            name: b"d",
            mode: 0o755,
            mtime: 12345,
            ..Default::default()
        },
        b"",
    );
    t.file("d/a", 0o644, b"1").file("d/b", 0o644, b"2");
    apply_plain(&t.finish(), dir.path()).unwrap();
    assert_eq!(mtime_ns(&dir.path().join("d")), 12345 * 1_000_000_000);
}

#[test]
fn long_names_pax_and_gnu() {
    let dir = tempfile::tempdir().unwrap();
    let long_dir = "d".repeat(120);
    let pax_name = format!("{long_dir}/{}", "p".repeat(150));
    let gnu_name = format!("{long_dir}/{}", "g".repeat(150));
    let gnu_link = format!("/{long_dir}/{}", "t".repeat(140));
    let mut t = Tar::new();
    t.pax(&[("path", pax_name.as_bytes())]);
    t.file("ignored-short-name", 0o600, b"pax");
    let mut g = Tar::gnu();
    g.out = std::mem::take(&mut t.out);
    g.gnu_long(b'L', gnu_name.as_bytes());
    g.file("ignored-too", 0o600, b"gnu");
    g.gnu_long(b'L', b"sym");
    g.gnu_long(b'K', gnu_link.as_bytes());
    g.symlink("x", "y");
    apply_plain(&g.finish(), dir.path()).unwrap();
    assert_eq!(std::fs::read(dir.path().join(&pax_name)).unwrap(), b"pax");
    assert_eq!(std::fs::read(dir.path().join(&gnu_name)).unwrap(), b"gnu");
    assert_eq!(
        std::fs::read_link(dir.path().join("sym")).unwrap(),
        Path::new(&gnu_link)
    );
    assert!(!dir.path().join("ignored-short-name").exists());
}

#[test]
fn sparse_files_pax_0_1_and_1_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    // 0.1: map in records; data "AAAA" at 0 and "BB" at 10000, size 20000.
    t.pax(&[
        ("GNU.sparse.major", b"0"),
        ("GNU.sparse.minor", b"1"),
        ("GNU.sparse.name", b"sparse01"),
        ("GNU.sparse.realsize", b"20000"),
        ("GNU.sparse.numblocks", b"2"),
        ("GNU.sparse.map", b"0,4,10000,2"),
    ]);
    t.file("GNUSparseFile.0/sparse01", 0o644, b"AAAABB");
    // 1.0: map at the start of the data, padded to a block.
    let mut data = b"2\n0\n3\n4096\n3\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"CCCDDD");
    t.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"sparse10"),
        ("GNU.sparse.realsize", b"8192"),
    ]);
    t.file("GNUSparseFile.0/sparse10", 0o644, &data);
    apply_plain(&t.finish(), dir.path()).unwrap();
    let a = std::fs::read(dir.path().join("sparse01")).unwrap();
    assert_eq!(a.len(), 20000);
    assert_eq!(&a[..4], b"AAAA");
    assert!(a[4..10000].iter().all(|&c| c == 0));
    assert_eq!(&a[10000..10002], b"BB");
    assert!(a[10002..].iter().all(|&c| c == 0));
    let b = std::fs::read(dir.path().join("sparse10")).unwrap();
    assert_eq!(b.len(), 8192);
    assert_eq!(&b[..3], b"CCC");
    assert_eq!(&b[4096..4099], b"DDD");
    assert!(b[3..4096].iter().chain(&b[4099..]).all(|&c| c == 0));
}

#[test]
fn old_gnu_sparse_entries_are_refused_like_containerd() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Tar::block(
        &Entry {
            typeflag: b'S',
            name: b"s",
            size: 0,
            ..Default::default()
        },
        super::testtar::Format::Gnu,
    );
    // realsize 0, no map entries; fix the checksum.
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&c| c as u32).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\x00 ").as_bytes());
    let mut layer = b.to_vec();
    layer.extend_from_slice(&[0u8; 1024]);
    let e = apply_plain(&layer, dir.path()).err().unwrap();
    assert!(
        e.to_string().contains("unhandled tar header type 83"),
        "{e}"
    );
}

#[test]
fn whiteouts_delete_and_opaque_dirs_keep_only_this_layer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lower = Tar::new()
        .dir("a", 0o755)
        .file("a/gone", 0o644, b"1")
        .file("a/stays", 0o644, b"2")
        .dir("b", 0o755)
        .file("b/x", 0o644, b"3")
        .dir("o", 0o755)
        .file("o/old", 0o644, b"4")
        .dir("o/olddir", 0o755)
        .file("o/olddir/f", 0o644, b"5")
        .finish();
    apply_plain(&lower, root).unwrap();
    let upper = Tar::new()
        .file("a/.wh.gone", 0o644, b"")
        .file(".wh.b", 0o644, b"")
        .dir("o", 0o755)
        .file("o/new", 0o644, b"6")
        .file("o/.wh..wh..opq", 0o644, b"")
        .finish();
    let a = apply_plain(&upper, root).unwrap();
    assert_eq!(a.stats.whiteouts, 3);
    assert!(!root.join("a/gone").exists());
    assert!(root.join("a/stays").exists());
    assert!(!root.join("b").exists());
    assert!(!root.join("o/old").exists());
    assert!(!root.join("o/olddir").exists());
    assert_eq!(std::fs::read(root.join("o/new")).unwrap(), b"6");
    assert!(!root.join("a/.wh.gone").exists());
}

#[test]
fn overlay_whiteouts_become_devices_and_xattrs_and_parents_copy_lowers() {
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    let upper = dir.path().join("upper");
    std::fs::create_dir_all(lower.join("deep/er")).unwrap();
    std::fs::create_dir(&upper).unwrap();
    std::fs::set_permissions(lower.join("deep"), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(lower.join("deep"), Some(55), Some(66)).unwrap();
    fsops::lsetxattr(
        lower.join("deep").as_os_str().as_bytes(),
        b"user.kept",
        b"v",
        0,
    )
    .unwrap();
    fsops::lsetxattr(
        lower.join("deep").as_os_str().as_bytes(),
        b"trusted.skipped",
        b"v",
        0,
    )
    .unwrap();
    let layer = Tar::new()
        .file("deep/er/.wh.gone", 0o644, b"")
        .file("deep/er/new", 0o644, b"n")
        .dir("opq", 0o755)
        .file("opq/.wh..wh..opq", 0o644, b"")
        .finish();
    apply_with(&layer, OCI_TAR, &upper, WhiteoutMode::Overlay, &[&lower]).unwrap();
    let wh = std::fs::symlink_metadata(upper.join("deep/er/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr(&upper.join("opq"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    let deep = std::fs::metadata(upper.join("deep")).unwrap();
    assert_eq!(deep.permissions().mode() & 0o7777, 0o711);
    assert_eq!((deep.uid(), deep.gid()), (55, 66));
    assert_eq!(xattr(&upper.join("deep"), "user.kept").unwrap(), b"v");
    assert!(xattr(&upper.join("deep"), "trusted.skipped").is_none());
    // A whiteout over a name this layer also writes fails, as with containerd.
    let clash = Tar::new()
        .file("c/x", 0o644, b"")
        .file("c/.wh.x", 0o644, b"")
        .finish();
    assert!(apply_with(&clash, OCI_TAR, &upper, WhiteoutMode::Overlay, &[&lower]).is_err());
}

#[test]
fn existing_entries_are_replaced_and_dirs_merged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply_plain(
        &Tar::new()
            .dir("d", 0o755)
            .file("d/keep", 0o644, b"k")
            .file("f", 0o644, b"file")
            .dir("g", 0o755)
            .file("g/inner", 0o644, b"i")
            .finish(),
        root,
    )
    .unwrap();
    apply_plain(
        &Tar::new()
            .dir("d", 0o700)
            .dir("f", 0o755)
            .file("g", 0o600, b"now a file")
            .finish(),
        root,
    )
    .unwrap();
    assert_eq!(std::fs::read(root.join("d/keep")).unwrap(), b"k");
    assert_eq!(
        std::fs::metadata(root.join("d"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(root.join("f").is_dir());
    assert_eq!(std::fs::read(root.join("g")).unwrap(), b"now a file");
}

#[test]
fn hardlinks_to_lower_layer_files_and_to_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply_plain(
        &Tar::new()
            .file("lowerfile", 0o644, b"lower")
            .symlink("sl", "lowerfile")
            .finish(),
        root,
    )
    .unwrap();
    apply_plain(
        &Tar::new()
            .hardlink("h1", "lowerfile")
            .hardlink("h2", "/sl")
            .finish(),
        root,
    )
    .unwrap();
    let l = std::fs::metadata(root.join("lowerfile")).unwrap();
    assert_eq!(std::fs::metadata(root.join("h1")).unwrap().ino(), l.ino());
    // A hard link to a symlink links the symlink itself.
    let h2 = std::fs::symlink_metadata(root.join("h2")).unwrap();
    assert!(h2.file_type().is_symlink());
    assert_eq!(
        h2.ino(),
        std::fs::symlink_metadata(root.join("sl")).unwrap().ino()
    );
}

// ---- hostile layers ----------------------------------------------------------------

/// Applies `layer` into `<tmp>/root` and checks that nothing appeared in `<tmp>/outside`
/// nor anywhere else in `<tmp>`.
fn contained(layer: &[u8]) -> (tempfile::TempDir, Result<Applied2, DiffError>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"precious").unwrap();
    let r = apply_plain(layer, &root);
    let top: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(top.len(), 2, "{top:?}");
    assert_eq!(
        listing(&outside),
        vec![outside.join("victim").display().to_string()]
    );
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"precious");
    (dir, r)
}

#[test]
fn traversal_and_absolute_names_stay_under_the_root() {
    let layer = Tar::new()
        .file("../../../outside/victim", 0o644, b"pwned")
        .file("/outside/abs", 0o644, b"abs")
        .file("a/../../outside/x", 0o644, b"x")
        .finish();
    let (dir, r) = contained(&layer);
    r.unwrap();
    let root = dir.path().join("root");
    assert_eq!(
        std::fs::read(root.join("outside/victim")).unwrap(),
        b"pwned"
    );
    assert_eq!(std::fs::read(root.join("outside/abs")).unwrap(), b"abs");
    assert_eq!(std::fs::read(root.join("outside/x")).unwrap(), b"x");
}

#[test]
fn symlinked_parents_resolve_inside_the_root() {
    let abs = Tar::new()
        .symlink("evil", "/")
        .file("evil/outside/victim", 0o644, b"pwned")
        .symlink("up", "../../../..")
        .file("up/outside/y", 0o644, b"y")
        .symlink("outlink", "../outside")
        .file("outlink/z", 0o644, b"z")
        .finish();
    let (dir, r) = contained(&abs);
    r.unwrap();
    let root = dir.path().join("root");
    assert_eq!(
        std::fs::read(root.join("outside/victim")).unwrap(),
        b"pwned"
    );
    assert_eq!(std::fs::read(root.join("outside/y")).unwrap(), b"y");
    assert_eq!(std::fs::read(root.join("outside/z")).unwrap(), b"z");
}

#[test]
fn a_symlink_in_the_last_component_is_replaced_not_followed() {
    let layer = Tar::new()
        .symlink("f", "../outside/victim")
        .file("f", 0o644, b"pwned")
        .finish();
    let (dir, r) = contained(&layer);
    r.unwrap();
    let f = dir.path().join("root/f");
    assert!(std::fs::symlink_metadata(&f).unwrap().is_file());
}

#[test]
fn hardlink_escapes_are_contained() {
    // The target resolves under the root, where it does not exist: an error, as with
    // containerd, and no link to the outside file.
    let layer = Tar::new().hardlink("l", "../outside/victim").finish();
    let (_d, r) = contained(&layer);
    assert!(r.is_err());
    let layer = Tar::new()
        .symlink("s", "/../outside")
        .hardlink("l", "s/victim")
        .finish();
    let (_d, r) = contained(&layer);
    assert!(r.is_err());
    // A link to the root itself (a directory) is refused by the kernel.
    let (_d, r) = contained(&Tar::new().hardlink("l", "..").finish());
    assert!(r.is_err());
}

#[test]
fn whiteouts_cannot_reach_outside() {
    let (_d, r) = contained(&Tar::new().file("a/.wh..", 0o644, b"").finish());
    assert!(r
        .err()
        .unwrap()
        .to_string()
        .contains("invalid whiteout name"));
    let (_d, r) = contained(
        &Tar::new()
            .symlink("s", "../outside")
            .file("s/.wh.victim", 0o644, b"")
            .file("s/.wh..wh..opq", 0o644, b"")
            .finish(),
    );
    r.unwrap();
}

#[test]
fn absurd_sizes_truncation_and_garbage_fail_cleanly() {
    // A file claiming 2^40 bytes with none following.
    let mut t = Tar::new();
    t.entry(
        Entry {
            name: b"huge",
            size: 1 << 40,
            ..Default::default()
        },
        b"",
    );
    let (_d, r) = contained(&t.out.clone());
    assert!(r.is_err());
    // A PAX header claiming 2^40 bytes: refused after 1 MiB, nothing allocated beyond.
    let mut t = Tar::new();
    t.entry(
        Entry {
            typeflag: b'x',
            name: b"pax",
            size: 1 << 40,
            ..Default::default()
        },
        &vec![b'9'; 2 << 20],
    );
    let (_d, r) = contained(&t.out.clone());
    assert!(r.is_err());
    // Negative size through PAX.
    let layer = Tar::new()
        .pax(&[("size", b"-5")])
        .file("n", 0o644, b"")
        .finish();
    let (_d, r) = contained(&layer);
    assert!(r.is_err());
    // A truncated gzip stream.
    let layer = Tar::new().file("f", 0o644, &vec![1u8; 100_000]).finish();
    let g = gzip(&layer);
    let dir = tempfile::tempdir().unwrap();
    assert!(apply_with(
        &g[..g.len() / 2],
        OCI_GZIP,
        dir.path(),
        WhiteoutMode::Apply,
        &[]
    )
    .is_err());
    // Not a tar at all.
    let dir = tempfile::tempdir().unwrap();
    let e = apply_plain(&[0x55; 2048], dir.path()).err().unwrap();
    assert!(e.to_string().contains("invalid tar header"), "{e}");
    // A device number that does not fit in 32 bits.
    let mut t = Tar::new();
    t.entry(
        Entry {
            typeflag: b'3',
            name: b"dev",
            major: 1 << 33,
            ..Default::default()
        },
        b"",
    );
    let (_d, r) = contained(&t.finish());
    assert!(r.err().unwrap().to_string().contains("out of range"));
}

#[test]
fn decompression_bomb_streams_in_bounded_memory() {
    // 32 MiB of zeros after the end of the archive from 32 KiB of gzip members: read
    // through (it is part of the diffID) without holding it.
    let tar = Tar::new().file("f", 0o644, b"x").finish();
    let zeros = gzip(&vec![0u8; 1 << 20]);
    let mut g = gzip(&tar);
    let mut layer = tar.clone();
    for _ in 0..32 {
        g.extend_from_slice(&zeros);
        layer.extend(std::iter::repeat_n(0u8, 1 << 20));
    }
    assert!(g.len() < 64 << 10);
    let dir = tempfile::tempdir().unwrap();
    let a = apply_with(&g, OCI_GZIP, dir.path(), WhiteoutMode::Apply, &[]).unwrap();
    assert_eq!(a.applied.size, layer.len() as u64);
    assert_eq!(a.applied.diff_id, sha256(&layer));
}

#[test]
fn pax_records_that_go_rejects_are_rejected() {
    for bad in [&b"5 a=b\n"[..], b"100 path=x\n", b"9 path=\x00\n", b"x"] {
        let layer = Tar::new().pax_raw(b'x', bad).file("f", 0o644, b"").finish();
        let dir = tempfile::tempdir().unwrap();
        assert!(apply_plain(&layer, dir.path()).is_err(), "{bad:?}");
    }
    let layer = Tar::new()
        .pax(&[("uid", b"4242")])
        .file("f", 0o644, b"")
        .finish();
    let dir = tempfile::tempdir().unwrap();
    apply_plain(&layer, dir.path()).unwrap();
    assert_eq!(std::fs::metadata(dir.path().join("f")).unwrap().uid(), 4242);
}

#[test]
fn cancellation_stops_between_entries() {
    let layer = Tar::new().file("a", 0o644, b"1").finish();
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&layer).unwrap();
    use std::io::Seek;
    f.rewind().unwrap();
    let (_s, input) = source::open(
        VerifiedBlob {
            file: f,
            size: layer.len() as u64,
        },
        &sha256(&layer),
        media::Decoding::Plain,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = Target {
        root: dir.path().as_os_str().as_bytes().to_vec(),
        parents: vec![],
        whiteouts: WhiteoutMode::Apply,
        skip_devices: false,
    };
    let r = apply::apply(
        &target,
        &mut tar::Reader::new(input),
        &AtomicBool::new(true),
    );
    assert!(matches!(r, Err(DiffError::Cancelled)));
    assert!(!dir.path().join("a").exists());
}

#[test]
fn temporary_mounts_are_always_unmounted_and_removed() {
    let src = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    let m = Mount {
        kind: "bind".into(),
        source: src.path().display().to_string(),
        target: String::new(),
        options: vec!["rbind".into(), "rw".into(), "nosuid".into()],
    };
    let layer = Tar::new().file("through/the/mount", 0o644, b"m").finish();
    mounts::with_temp_mount(std::slice::from_ref(&m), base.path(), |dir| {
        apply_plain(&layer, dir).map(|_| ())
    })
    .unwrap();
    assert_eq!(
        std::fs::read(src.path().join("through/the/mount")).unwrap(),
        b"m"
    );
    // A failing apply unmounts too.
    let r = mounts::with_temp_mount(std::slice::from_ref(&m), base.path(), |dir| {
        apply_plain(&[0x55; 1024], dir).map(|_| ())
    });
    assert!(r.is_err());
    assert!(std::fs::read_dir(base.path()).unwrap().next().is_none());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(base.path().to_str().unwrap()));
    // A read-only bind mount: the apply fails (EROFS), as through containerd's mount.
    let ro = Mount {
        options: vec!["rbind".into(), "ro".into()],
        ..m
    };
    assert!(matches!(
        mounts::plan(std::slice::from_ref(&ro), false),
        Ok(mounts::Plan::TempMount(_))
    ));
    let r = mounts::with_temp_mount(std::slice::from_ref(&ro), base.path(), |dir| {
        apply_plain(&layer, dir).map(|_| ())
    });
    assert!(r.is_err());
    assert!(std::fs::read_dir(base.path()).unwrap().next().is_none());
}
