//! Squashfs images and the image store: round trips through backhand, squashfs-tools and the
//! kernel, corrupt images, extraction.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Cursor};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hybox_fs_layer::image::{self, Image, TreeStats, WriteOptions};
use hybox_fs_layer::store::Store;
use hybox_fs_layer::{FsError, Layer, NodeId, NodeKind};
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Helpers

/// xorshift64*: deterministic, non-repeating test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn no_progress() -> impl Fn(TreeStats) + Sync {
    |_| {}
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .expect("set mtime");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).expect("write");
    chmod(path, mode);
}

/// Sets distinct mtimes on every node under `root`, contents before their directory.
fn stamp_times(root: &Path, next: &mut i64) {
    let mut names: Vec<_> = fs::read_dir(root)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for p in names {
        if fs::symlink_metadata(&p).expect("lstat").is_dir() {
            stamp_times(&p, next);
        }
        set_mtime(&p, *next);
        *next += 7;
    }
    set_mtime(root, *next);
    *next += 7;
}

/// What the varied tree holds beyond the basics.
#[derive(Clone, Copy)]
struct TreeOpts {
    hard_link: bool,
}

/// A varied tree: nested dirs, empty files, a 3 MB random file, holes, symlinks of all kinds,
/// a FIFO, a socket, special modes, non-UTF-8 names, 300 small files; as root also owners
/// and a character device.
fn make_tree(root: &Path, opts: TreeOpts) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    fs::create_dir_all(root.join("a/b/c")).expect("mkdir");
    write(&root.join("a/b/c/deep.txt"), b"deep\n", 0o644);
    write(&root.join("a/empty"), b"", 0o644);
    write(&root.join("a/setuid"), b"#!/bin/sh\necho hi\n", 0o4755);
    chmod(&root.join("a/b"), 0o1777);
    chmod(&root.join("a/b/c"), 0o700);
    chmod(&root.join("a"), 0o750);
    write(&root.join("big.bin"), &rng.bytes(3_000_000), 0o600);
    write(&root.join("zeros.bin"), &vec![0u8; 300_000], 0o644);
    write(&root.join("exact.bin"), &rng.bytes(131_072), 0o644);
    write(
        &root.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name\n",
        0o644,
    );
    let odd = root.join(OsStr::from_bytes(b"dir\xff"));
    fs::create_dir(&odd).expect("mkdir");
    write(&odd.join("x"), b"x", 0o2755);
    fs::create_dir(root.join("emptydir")).expect("mkdir");
    write(&root.join(".wh.deleted"), b"", 0o644);
    fs::create_dir(root.join("many")).expect("mkdir");
    for i in 0..300 {
        let body = format!("file number {i}\n").repeat(i % 7 + 1);
        write(&root.join(format!("many/f{i:03}")), body.as_bytes(), 0o644);
    }
    fs::create_dir(root.join("links")).expect("mkdir");
    std::os::unix::fs::symlink("../a/b/c/deep.txt", root.join("links/rel")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("links/dangling")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", root.join("links/abs")).expect("symlink");
    std::os::unix::fs::symlink("../a", root.join("links/dirlink")).expect("symlink");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    chmod(&root.join("fifo"), 0o640);
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).expect("socket"));
    if opts.hard_link {
        write(&root.join("h1"), b"hard linked content\n", 0o644);
        fs::hard_link(root.join("h1"), root.join("h2")).expect("link");
    }
    if is_root() {
        write(&root.join("owned"), b"owned\n", 0o640);
        std::os::unix::fs::lchown(root.join("owned"), Some(1234), Some(5678)).expect("chown");
        std::os::unix::fs::lchown(root.join("links/abs"), Some(4321), Some(8765)).expect("chown");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("null"),
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .expect("mknod");
        chmod(&root.join("null"), 0o666);
    }
    chmod(root, 0o755);
    let mut t = 1_600_000_000;
    stamp_times(root, &mut t);
}

fn sorted_entries(dir: &Path) -> Vec<OsString> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    v.sort();
    v
}

fn kind_of(ft: fs::FileType) -> NodeKind {
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        NodeKind::Socket
    }
}

/// Reads a whole file from a layer in odd-sized pieces.
fn read_all(img: &Image, node: NodeId) -> io::Result<Vec<u8>> {
    let size = img.attr(node).size;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_001];
    loop {
        let n = img.read_at(node, out.len() as u64, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, size);
    Ok(out)
}

/// Compares every node of `img` under `node` with the tree at `path`, both ways.
fn compare_image(img: &Image, node: NodeId, path: &Path) -> usize {
    let md = fs::symlink_metadata(path).expect("lstat");
    let a = img.attr(node);
    let what = path.display();
    assert_eq!(a.kind, kind_of(md.file_type()), "{what}: kind");
    assert_eq!(a.perm, md.mode() & 0o7777, "{what}: perm");
    assert_eq!(a.uid, md.uid(), "{what}: uid");
    assert_eq!(a.gid, md.gid(), "{what}: gid");
    assert_eq!(a.mtime, md.mtime(), "{what}: mtime");
    let mut count = 1;
    match a.kind {
        NodeKind::File => {
            assert_eq!(a.size, md.len(), "{what}: size");
            let data = read_all(img, node).expect("read");
            assert!(data == fs::read(path).expect("read"), "{what}: content");
        }
        NodeKind::Symlink => {
            let target = fs::read_link(path).expect("readlink");
            assert_eq!(
                img.readlink(node).expect("readlink"),
                target,
                "{what}: target"
            );
            assert_eq!(a.size, target.as_os_str().len() as u64);
        }
        NodeKind::Dir => {
            let children = img.children(node).expect("children");
            let names: Vec<_> = children.iter().map(|(n, _)| n.clone()).collect();
            assert_eq!(names, sorted_entries(path), "{what}: entries");
            for (name, id) in children {
                assert_eq!(img.lookup(node, &name), Some(id));
                count += compare_image(img, id, &path.join(&name));
            }
            assert_eq!(img.lookup(node, OsStr::new("no such name")), None);
        }
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            assert_eq!(a.rdev, md.rdev(), "{what}: rdev");
        }
        NodeKind::Fifo | NodeKind::Socket => {}
    }
    count
}

/// Compares two trees on disk: kinds, modes, mtimes, contents, targets (owners if asked).
/// Entries only in `a` whose kind is in `may_miss` are tolerated.
fn compare_dirs(a: &Path, b: &Path, owners: bool, may_miss: &[NodeKind]) {
    let ma = fs::symlink_metadata(a).expect("lstat a");
    let mb = fs::symlink_metadata(b).expect("lstat b");
    let what = b.display();
    let kind = kind_of(ma.file_type());
    assert_eq!(kind, kind_of(mb.file_type()), "{what}: kind");
    if kind != NodeKind::Symlink {
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{what}: mode");
    }
    assert_eq!(ma.mtime(), mb.mtime(), "{what}: mtime");
    if owners {
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{what}: owner");
    }
    match kind {
        NodeKind::File => assert!(
            fs::read(a).expect("read") == fs::read(b).expect("read"),
            "{what}: content"
        ),
        NodeKind::Symlink => assert_eq!(fs::read_link(a).ok(), fs::read_link(b).ok()),
        NodeKind::CharDevice | NodeKind::BlockDevice => assert_eq!(ma.rdev(), mb.rdev()),
        NodeKind::Dir => {
            let ea = sorted_entries(a);
            let eb = sorted_entries(b);
            for name in &ea {
                if !eb.contains(name) {
                    let k = kind_of(
                        fs::symlink_metadata(a.join(name))
                            .expect("lstat")
                            .file_type(),
                    );
                    assert!(may_miss.contains(&k), "{what}: {name:?} missing");
                    continue;
                }
                compare_dirs(&a.join(name), &b.join(name), owners, may_miss);
            }
            for name in &eb {
                assert!(ea.contains(name), "{what}: extra {name:?}");
            }
        }
        _ => {}
    }
}

/// Writes `src` as an image file at `out`.
fn write_image(src: &Path, out: &Path, opts: &WriteOptions) -> TreeStats {
    let f = fs::File::create(out).expect("create");
    let mut w = io::BufWriter::new(f);
    let stats = image::write_tree(src, &mut w, opts, &no_progress()).expect("write_tree");
    drop(w);
    stats
}

/// Runs `f` on another thread, failing if it panics or takes longer than 30 s.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: hung"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mksquashfs(src: &Path, out: &Path, extra: &[&str]) {
    run(Command::new("mksquashfs")
        .arg(src)
        .arg(out)
        .args(["-noappend", "-no-progress", "-quiet", "-no-xattrs"])
        .args(extra));
}

/// A varied tree and its image, written with default options.
struct Fixture {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    img: PathBuf,
    stats: TreeStats,
}

fn fixture(opts: TreeOpts) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    make_tree(&src, opts);
    let img = tmp.path().join("tree.sqfs");
    let stats = write_image(&src, &img, &WriteOptions::default());
    Fixture {
        _tmp: tmp,
        src,
        img,
        stats,
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn roundtrip_varied_tree() {
    let f = fixture(TreeOpts { hard_link: false });
    let img = Image::open(&f.img).expect("open");
    let nodes = compare_image(&img, img.root(), &f.src);
    let s = img.stats();
    assert_eq!(s, f.stats, "stats of the image and of the write");
    assert_eq!(s.files + s.dirs + s.symlinks + s.others, nodes as u64);
    assert_eq!(s.dirs, 8);
    assert_eq!(s.symlinks, 4);
    assert!(s.files >= 308, "{s:?}");
    // Paths, lookups and the whole-image check.
    let deep = img
        .lookup_path(Path::new("a/b/c/deep.txt"))
        .expect("lookup");
    assert_eq!(
        img.node_path(deep).as_deref(),
        Some(Path::new("a/b/c/deep.txt"))
    );
    assert_eq!(img.lookup_path(Path::new("")), Some(img.root()));
    assert_eq!(
        img.lookup_path(Path::new("/a/./b/../b/c")),
        img.lookup_path(Path::new("a/b/c"))
    );
    assert_eq!(img.lookup_path(Path::new("a/empty/x")), None);
    assert_eq!(img.lookup_path(Path::new("nope")), None);
    let odd = img
        .lookup_path(Path::new(OsStr::from_bytes(b"dir\xff/x")))
        .expect("non-UTF-8 dir");
    assert_eq!(img.attr(odd).perm, 0o2755);
    img.verify_contents().expect("every node readable");
    // Errors for the wrong kind of node or a node that does not exist.
    let dir = img.lookup_path(Path::new("a")).expect("a");
    let file = img.lookup_path(Path::new("big.bin")).expect("big");
    let mut buf = [0u8; 8];
    assert_eq!(
        img.read_at(dir, 0, &mut buf).expect_err("dir").kind(),
        io::ErrorKind::IsADirectory
    );
    assert!(img.readlink(file).is_err());
    assert_eq!(
        img.children(file).expect_err("file").kind(),
        io::ErrorKind::NotADirectory
    );
    assert!(img.children(1 << 40).is_err());
    assert!(img.read_at(u64::MAX, 0, &mut buf).is_err());
    assert_eq!(img.lookup(u64::MAX, OsStr::new("a")), None);
    assert_eq!(img.attr(u64::MAX).nlink, 0);
    assert_eq!(img.read_at(file, 3_000_000, &mut buf).expect("eof"), 0);
    assert_eq!(img.read_at(file, u64::MAX, &mut buf).expect("eof"), 0);
    assert_eq!(img.read_at(file, 0, &mut []).expect("empty"), 0);
}

#[test]
fn random_reads_match_source() {
    let f = fixture(TreeOpts { hard_link: false });
    let img = Image::open(&f.img).expect("open");
    let mut rng = Rng(42);
    for name in ["big.bin", "zeros.bin", "exact.bin", "many/f123"] {
        let src = fs::read(f.src.join(name)).expect("read");
        let node = img.lookup_path(Path::new(name)).expect("lookup");
        let len = src.len() as u64;
        for _ in 0..300 {
            let off = rng.below(len + 10);
            let cap = if rng.below(4) == 0 { 400_000 } else { 5000 };
            let want = rng.below(cap) as usize;
            let mut buf = vec![0xaau8; want];
            let n = img.read_at(node, off, &mut buf).expect("read_at");
            let expect = if off >= len {
                &[][..]
            } else {
                &src[off as usize..(off as usize + want).min(src.len())]
            };
            assert_eq!(n, expect.len(), "{name} @ {off} + {want}");
            assert!(buf[..n] == *expect, "{name} @ {off} + {want}: bytes differ");
        }
    }
}

#[test]
fn cache_avoids_decompressing_from_the_start() {
    let f = fixture(TreeOpts { hard_link: false });
    let img = Image::open_with(&f.img, 1 << 20).expect("open");
    let node = img.lookup_path(Path::new("big.bin")).expect("lookup");
    let mut b = [0u8; 1];
    img.read_at(node, 2_999_999, &mut b).expect("read");
    let s = img.cache_stats();
    assert_eq!(
        (s.hits, s.misses),
        (0, 1),
        "one block decompressed for the last byte"
    );
    img.read_at(node, 2_999_000, &mut b).expect("read");
    assert_eq!(img.cache_stats().hits, 1);
    // Sequential reading decompresses each block once.
    let blocks = 3_000_000u64.div_ceil(131_072);
    let mut buf = vec![0u8; 4096];
    let mut off = 0;
    while off < 3_000_000 {
        off += img.read_at(node, off, &mut buf).expect("read") as u64;
    }
    let s = img.cache_stats();
    assert!(s.misses <= blocks + 1, "{s:?}");
    assert!(s.bytes <= s.capacity, "{s:?}");
    // Small files share fragment blocks: reading many of them decompresses few blocks.
    let before = img.cache_stats().misses;
    for i in 0..300 {
        let n = img
            .lookup_path(Path::new(&format!("many/f{i:03}")))
            .expect("lookup");
        read_all(&img, n).expect("read");
    }
    assert!(
        img.cache_stats().misses - before < 10,
        "{:?}",
        img.cache_stats()
    );
}

#[test]
fn concurrent_reads() {
    let f = fixture(TreeOpts { hard_link: false });
    let img = Image::open_with(&f.img, 256 * 1024).expect("open");
    let src = Arc::new(fs::read(f.src.join("big.bin")).expect("read"));
    let node = img.lookup_path(Path::new("big.bin")).expect("lookup");
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let img = Arc::clone(&img);
            let src = Arc::clone(&src);
            std::thread::spawn(move || {
                let mut rng = Rng(t + 1);
                for _ in 0..200 {
                    let off = rng.below(src.len() as u64) as usize;
                    let mut buf = vec![0u8; rng.below(200_000) as usize + 1];
                    let n = img.read_at(node, off as u64, &mut buf).expect("read");
                    assert!(buf[..n] == src[off..off + n]);
                    assert_eq!(n, buf.len().min(src.len() - off));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("reader thread");
    }
    assert!(img.cache_stats().bytes <= 256 * 1024);
}

#[test]
fn images_are_deterministic_and_options_apply() {
    let f = fixture(TreeOpts { hard_link: false });
    let again = f.img.with_extension("again");
    write_image(&f.src, &again, &WriteOptions::default());
    assert!(fs::read(&f.img).expect("read") == fs::read(&again).expect("read"));
    let opts = WriteOptions {
        compression_level: 19,
        block_size: 4096,
    };
    let small = f.img.with_extension("small");
    write_image(&f.src, &small, &opts);
    let img = Image::open(&small).expect("open");
    assert_eq!(img.block_size(), 4096);
    compare_image(&img, img.root(), &f.src);
    let raw = fs::read(&small).expect("read");
    assert_eq!(u16::from_le_bytes([raw[20], raw[21]]), 6, "zstd");
    for bad in [
        WriteOptions {
            compression_level: 0,
            block_size: 4096,
        },
        WriteOptions {
            compression_level: 3,
            block_size: 5000,
        },
        WriteOptions {
            compression_level: 3,
            block_size: 2 << 20,
        },
    ] {
        let r = image::write_tree(&f.src, Cursor::new(Vec::new()), &bad, &no_progress());
        assert!(matches!(r, Err(FsError::Invalid(_))), "{bad:?}");
    }
}

#[test]
fn progress_is_reported() {
    let f = fixture(TreeOpts { hard_link: false });
    let calls = Mutex::new(Vec::new());
    let record = |s: TreeStats| calls.lock().expect("lock").push(s);
    let stats = image::write_tree(
        &f.src,
        Cursor::new(Vec::new()),
        &WriteOptions::default(),
        &record,
    )
    .expect("write");
    let calls = calls.into_inner().expect("lock");
    assert!(calls.len() >= 2, "{calls:?}");
    assert_eq!(calls.first().map(|s| s.files), Some(256));
    assert_eq!(calls.last(), Some(&stats));
    assert!(calls.windows(2).all(|w| w[0].files <= w[1].files));
}

#[test]
fn hard_links_become_copies() {
    let f = fixture(TreeOpts { hard_link: true });
    let img = Image::open(&f.img).expect("open");
    let h1 = img.lookup_path(Path::new("h1")).expect("h1");
    let h2 = img.lookup_path(Path::new("h2")).expect("h2");
    assert_ne!(h1, h2);
    assert_eq!(read_all(&img, h1).expect("read"), b"hard linked content\n");
    assert_eq!(
        read_all(&img, h1).expect("read"),
        read_all(&img, h2).expect("read")
    );
    // Documented loss: each link is its own inode with link count 1.
    assert_eq!(img.attr(h1).nlink, 1);
    assert_eq!(img.attr(h2).nlink, 1);
    let dest = f.img.with_extension("out");
    fs::create_dir(&dest).expect("mkdir");
    img.extract_to(&dest, &no_progress()).expect("extract");
    let (m1, m2) = (
        fs::metadata(dest.join("h1")).expect("h1"),
        fs::metadata(dest.join("h2")).expect("h2"),
    );
    assert_ne!(m1.ino(), m2.ino());
    assert_eq!(m1.nlink(), 1);
}

#[test]
fn xattrs_are_not_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    write(&src.join("file"), b"data", 0o644);
    if let Err(e) = rustix::fs::lsetxattr(
        src.join("file"),
        "user.x",
        b"1",
        rustix::fs::XattrFlags::empty(),
    ) {
        println!("skipped: user xattrs unsupported here ({e})");
        return;
    }
    let out = tmp.path().join("x.sqfs");
    write_image(&src, &out, &WriteOptions::default());
    let raw = fs::read(&out).expect("read");
    assert_eq!(raw[56..64], [0xff; 8], "no xattr table in the superblock");
    let img = Image::open(&out).expect("open");
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).expect("mkdir");
    img.extract_to(&dest, &no_progress()).expect("extract");
    assert_eq!(fs::read(dest.join("file")).expect("read"), b"data");
    let got = rustix::fs::lgetxattr_query(dest.join("file"), "user.x");
    assert_eq!(
        got.err(),
        Some(rustix::io::Errno::NODATA),
        "xattr is documented as lost"
    );
}

#[test]
fn long_symlink_targets_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = "x".repeat(300);
    std::os::unix::fs::symlink(&target, tmp.path().join("long")).expect("symlink");
    let r = image::write_tree(
        tmp.path(),
        Cursor::new(Vec::new()),
        &WriteOptions::default(),
        &no_progress(),
    );
    assert!(
        matches!(r, Err(FsError::Invalid(ref m)) if m.contains("255")),
        "{r:?}"
    );
}

#[test]
fn extract_roundtrip() {
    let f = fixture(TreeOpts { hard_link: false });
    let img = Image::open(&f.img).expect("open");
    let dest = f.img.with_extension("out");
    fs::create_dir(&dest).expect("mkdir");
    let stats = img.extract_to(&dest, &no_progress()).expect("extract");
    let owners = is_root();
    let may_miss: &[NodeKind] = if owners {
        &[]
    } else {
        &[NodeKind::CharDevice, NodeKind::BlockDevice]
    };
    compare_dirs(&f.src, &dest, owners, may_miss);
    assert_eq!(stats.files, f.stats.files);
    assert_eq!(stats.bytes, f.stats.bytes);
    assert_eq!(stats.dirs, f.stats.dirs);
    // A destination that is not empty is refused.
    let r = img.extract_to(&dest, &no_progress());
    assert!(matches!(r, Err(FsError::Invalid(_))), "{r:?}");
}

#[test]
fn sparse_files_stay_sparse() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let size = 64u64 << 20;
    {
        let f = fs::File::create(src.join("sparse")).expect("create");
        f.set_len(size).expect("set_len");
        std::os::unix::fs::FileExt::write_all_at(&f, b"end", size - 3).expect("write");
        std::os::unix::fs::FileExt::write_all_at(&f, b"start", 0).expect("write");
    }
    let out = tmp.path().join("sparse.sqfs");
    write_image(&src, &out, &WriteOptions::default());
    assert!(
        fs::metadata(&out).expect("stat").len() < 1 << 20,
        "holes are not stored"
    );
    let img = Image::open(&out).expect("open");
    img.verify_contents().expect("verify");
    let node = img.lookup_path(Path::new("sparse")).expect("lookup");
    let mut buf = vec![1u8; 100];
    assert_eq!(img.read_at(node, size / 2, &mut buf).expect("read"), 100);
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(img.read_at(node, size - 3, &mut buf).expect("read"), 3);
    assert_eq!(&buf[..3], b"end");
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).expect("mkdir");
    img.extract_to(&dest, &no_progress()).expect("extract");
    let md = fs::metadata(dest.join("sparse")).expect("stat");
    assert_eq!(md.len(), size);
    assert!(
        md.blocks() * 512 < size / 4,
        "extracted with holes: {} blocks",
        md.blocks()
    );
    compare_dirs(&src, &dest, is_root(), &[]);
}

#[test]
fn deep_trees() {
    // Deeper than the number of directory fds the walk and the extraction keep open.
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let mut p = src.clone();
    for i in 0..150 {
        p.push(if i % 2 == 0 { "d" } else { "e" });
    }
    fs::create_dir_all(&p).expect("mkdir");
    write(&p.join("bottom"), b"bottom\n", 0o644);
    let mut t = 1_700_000_000;
    stamp_times(&src, &mut t);
    let out = tmp.path().join("deep.sqfs");
    write_image(&src, &out, &WriteOptions::default());
    let img = Image::open(&out).expect("open");
    assert_eq!(compare_image(&img, img.root(), &src), 152);
    let rel = p.join("bottom");
    let rel = rel.strip_prefix(&src).expect("prefix");
    let node = img.lookup_path(rel).expect("lookup");
    assert_eq!(img.node_path(node).as_deref(), Some(rel));
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).expect("mkdir");
    img.extract_to(&dest, &no_progress()).expect("extract");
    compare_dirs(&src, &dest, is_root(), &[]);
}

// ---------------------------------------------------------------------------------------------
// Differential: squashfs-tools and the kernel

#[test]
fn unsquashfs_reads_our_images() {
    if !have("unsquashfs") {
        println!("skipped: unsquashfs not installed");
        return;
    }
    let f = fixture(TreeOpts { hard_link: false });
    let dest = f.img.with_extension("unsquashfs");
    run(Command::new("unsquashfs")
        .args(["-no-progress", "-no-xattrs", "-d"])
        .arg(&dest)
        .arg(&f.img));
    let may_miss: &[NodeKind] = if is_root() {
        &[NodeKind::Socket]
    } else {
        &[
            NodeKind::Socket,
            NodeKind::CharDevice,
            NodeKind::BlockDevice,
        ]
    };
    compare_dirs(&f.src, &dest, is_root(), may_miss);
    // The listing names every node with its numeric owner.
    let out = Command::new("unsquashfs")
        .args(["-lln"])
        .arg(&f.img)
        .output()
        .expect("unsquashfs -lln");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("squashfs-root/links/abs -> /etc/passwd"),
        "{listing}"
    );
    assert!(listing.contains("squashfs-root/many/f299"), "{listing}");
}

/// Unmounts on drop, even when an assertion failed.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn kernel_mounts_our_images() {
    if !is_root() {
        println!("skipped: mounting needs root");
        return;
    }
    let f = fixture(TreeOpts { hard_link: false });
    let mnt = f.img.with_extension("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let out = Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(&f.img)
        .arg(&mnt)
        .output()
        .expect("mount");
    if !out.status.success() {
        println!(
            "skipped: mount failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let guard = Mounted(mnt.clone());
    compare_dirs(&f.src, &mnt, true, &[]);
    drop(guard);
}

#[test]
fn reads_mksquashfs_images() {
    if !have("mksquashfs") {
        println!("skipped: mksquashfs not installed");
        return;
    }
    let f = fixture(TreeOpts { hard_link: true });
    let variants: &[(&str, &[&str])] = &[
        ("gzip", &[]),
        ("zstd", &["-comp", "zstd"]),
        ("lz4", &["-comp", "lz4"]),
        (
            "tail-fragments-4k",
            &["-b", "4096", "-always-use-fragments"],
        ),
        ("no-fragments", &["-no-fragments", "-comp", "zstd"]),
        ("uncompressed", &["-noI", "-noD", "-noF"]),
    ];
    for (name, extra) in variants {
        let out = f.img.with_extension(format!("mk-{name}"));
        mksquashfs(&f.src, &out, extra);
        let img = Image::open(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        compare_image(&img, img.root(), &f.src);
        img.verify_contents().expect("all readable");
        // mksquashfs keeps hard links: one inode, link count 2.
        let h1 = img.lookup_path(Path::new("h1")).expect("h1");
        let h2 = img.lookup_path(Path::new("h2")).expect("h2");
        assert_eq!((img.attr(h1).nlink, img.attr(h2).nlink), (2, 2), "{name}");
        let mut rng = Rng(7);
        let big = img.lookup_path(Path::new("big.bin")).expect("big");
        let src = fs::read(f.src.join("big.bin")).expect("read");
        for _ in 0..50 {
            let off = rng.below(src.len() as u64) as usize;
            let mut buf = vec![0u8; 10_000];
            let n = img.read_at(big, off as u64, &mut buf).expect("read");
            assert!(buf[..n] == src[off..off + n], "{name}");
        }
    }
}

#[test]
fn mksquashfs_long_symlinks_are_reported_not_read() {
    if !have("mksquashfs") {
        println!("skipped: mksquashfs not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    std::os::unix::fs::symlink("y".repeat(300), src.join("long")).expect("symlink");
    let out = tmp.path().join("long.sqfs");
    mksquashfs(&src, &out, &[]);
    let r = Image::open(&out);
    assert!(matches!(r, Err(FsError::Corrupt { .. })), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Corrupt images

type Expected = BTreeMap<PathBuf, Vec<u8>>;

/// The content of every regular file under `root`.
fn expected_files(root: &Path, rel: &Path, out: &mut Expected) {
    for name in sorted_entries(&root.join(rel)) {
        let r = rel.join(&name);
        let md = fs::symlink_metadata(root.join(&r)).expect("lstat");
        if md.is_dir() {
            expected_files(root, &r, out);
        } else if md.is_file() {
            out.insert(r.clone(), fs::read(root.join(&r)).expect("read"));
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    rejected: bool,
    read_ok: usize,
    read_err: usize,
    /// Files read in full whose bytes differ from the original at the same path.
    differing: usize,
}

/// Opens a (possibly damaged) image and reads everything in it. Never panics on its own for
/// a damaged image: any error must be `Corrupt` / `InvalidData`.
fn exercise(path: &Path, expected: &Expected) -> Outcome {
    let img = match Image::open(path) {
        Err(FsError::Corrupt { .. }) => {
            return Outcome {
                rejected: true,
                ..Outcome::default()
            };
        }
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(img) => img,
    };
    let mut out = Outcome::default();
    let mut stack = vec![(img.root(), PathBuf::new())];
    while let Some((node, rel)) = stack.pop() {
        let a = img.attr(node);
        match a.kind {
            NodeKind::Dir => {
                for (name, child) in img.children(node).expect("children of an indexed dir") {
                    stack.push((child, rel.join(name)));
                }
            }
            NodeKind::Symlink => {
                img.readlink(node).expect("symlink target is in the index");
            }
            NodeKind::File => match read_all(&img, node) {
                Ok(data) => {
                    out.read_ok += 1;
                    if expected.get(&rel) != Some(&data) {
                        out.differing += 1;
                    }
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                    out.read_err += 1;
                }
            },
            _ => {}
        }
    }
    out
}

fn corrupt_cases(name: &str, good: &Path, expected: Arc<Expected>) {
    let raw = fs::read(good).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    let len = raw.len();
    let bytes_used = u64::from_le_bytes(raw[40..48].try_into().expect("8 bytes")) as usize;
    let inode_table = u64::from_le_bytes(raw[64..72].try_into().expect("8 bytes")) as usize;
    let case = AtomicU64::new(0);
    let check = |label: String, data: Vec<u8>| -> Outcome {
        let p = dir
            .path()
            .join(format!("{}.sqfs", case.fetch_add(1, Ordering::Relaxed)));
        fs::write(&p, data).expect("write");
        let exp = Arc::clone(&expected);
        bounded(&format!("{name} {label}"), move || exercise(&p, &exp))
    };

    // Truncations: at 0, 10, the superblock, and every 1/37th.
    let mut cuts = vec![0, 10, 96, bytes_used - 1, bytes_used, len - 1];
    cuts.extend((1..37).map(|i| len * i / 37));
    let mut opened_after_cut = 0;
    for cut in cuts {
        let o = check(format!("truncated at {cut}"), raw[..cut].to_vec());
        if !o.rejected {
            // Only padding was cut: everything must read back exactly.
            assert!(
                cut >= bytes_used,
                "{name}: opened when cut at {cut} < {bytes_used}"
            );
            assert_eq!((o.read_err, o.differing), (0, 0), "{name}: cut at {cut}");
            opened_after_cut += 1;
        }
    }

    // Flipped bytes: every superblock byte, then the tables and the data.
    let mut flips: Vec<(usize, u8)> = (0..96).map(|i| (i, 0xff)).collect();
    let table_len = bytes_used - inode_table;
    flips.extend((0..96).map(|i| (inode_table + table_len * i / 96, [0x01, 0x80, 0xff][i % 3])));
    flips.extend((0..64).map(|i| (96 + (inode_table - 96) * i / 64, [0x10, 0xff][i % 2])));
    let (mut rejected, mut opened, mut read_errors, mut differing) = (0, 0, 0, 0);
    for (at, mask) in flips {
        let mut data = raw.clone();
        data[at] ^= mask;
        let o = check(format!("byte {at} ^ {mask:#x}"), data);
        if o.rejected {
            rejected += 1;
        } else {
            opened += 1;
            read_errors += o.read_err;
            differing += o.differing;
        }
    }
    println!(
        "{name}: {opened_after_cut} truncations opened (padding only); flips: {rejected} \
         rejected, {opened} opened ({read_errors} file reads failed, {differing} read \
         different bytes undetectably)"
    );
    assert!(rejected > 0);
}

#[test]
fn corrupt_images_never_panic_or_hang() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d/e")).expect("mkdir");
    let mut rng = Rng(99);
    write(&src.join("d/big"), &rng.bytes(200_000), 0o644);
    write(&src.join("d/e/small"), b"small file\n", 0o644);
    for i in 0..40 {
        write(&src.join(format!("f{i}")), &rng.bytes(1000 + i * 50), 0o644);
    }
    std::os::unix::fs::symlink("d/e/small", src.join("link")).expect("symlink");
    let mut expected = Expected::new();
    expected_files(&src, Path::new(""), &mut expected);
    let expected = Arc::new(expected);

    let ours = tmp.path().join("ours.sqfs");
    let opts = WriteOptions {
        compression_level: 3,
        block_size: 4096,
    };
    write_image(&src, &ours, &opts);
    assert_eq!(exercise(&ours, &expected).differing, 0);
    corrupt_cases("backhand/zstd", &ours, Arc::clone(&expected));

    if have("mksquashfs") {
        let theirs = tmp.path().join("theirs.sqfs");
        mksquashfs(&src, &theirs, &["-b", "4096", "-always-use-fragments"]);
        assert_eq!(exercise(&theirs, &expected).differing, 0);
        corrupt_cases("mksquashfs/gzip", &theirs, expected);
    }
}

#[test]
fn not_an_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("junk.sqfs");
    fs::write(&p, vec![0x55; 10_000]).expect("write");
    match Image::open(&p) {
        Err(FsError::Corrupt { image, reason }) => {
            assert_eq!(image, "junk.sqfs");
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let missing = Image::open(&tmp.path().join("missing"));
    assert!(matches!(missing, Err(FsError::Io { .. })), "{missing:?}");
}

// ---------------------------------------------------------------------------------------------
// Store

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).expect("read")))
}

#[test]
fn store_create_open_verify_remove() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    make_tree(&src, TreeOpts { hard_link: false });
    let dir = tmp.path().join("store");
    let store = Store::open(&dir).expect("open store");
    assert_eq!(fs::metadata(&dir).expect("stat").mode() & 0o777, 0o700);

    let a = store
        .create_from_dir(&src, &WriteOptions::default(), &no_progress())
        .expect("create");
    assert_eq!(
        a.id,
        sha256_file(&store.path(&a.id)),
        "id is the sha256 of the file"
    );
    assert_eq!(a.size, fs::metadata(store.path(&a.id)).expect("stat").len());
    let b = store
        .create_from_dir(&src, &WriteOptions::default(), &no_progress())
        .expect("create again");
    assert_eq!(a, b, "same tree, same image");
    assert_eq!(store.list().expect("list"), vec![a.id.clone()]);
    assert_eq!(store.info(&a.id).expect("info"), a);
    store.verify(&a.id).expect("verify");

    let one = store.open_image(&a.id).expect("open image");
    let two = store.open_image(&a.id).expect("open image");
    assert!(Arc::ptr_eq(&one, &two), "shared while open");
    compare_image(&one, one.root(), &src);
    assert_eq!(one.stats(), a.stats);
    drop(two);

    // Removing keeps open images readable.
    store.remove(&a.id).expect("remove");
    assert!(store.list().expect("list").is_empty());
    assert!(matches!(store.open_image(&a.id), Err(FsError::NotFound(_))));
    assert!(matches!(store.remove(&a.id), Err(FsError::NotFound(_))));
    assert!(matches!(store.info(&a.id), Err(FsError::NotFound(_))));
    let big = one.lookup_path(Path::new("big.bin")).expect("big");
    read_all(&one, big).expect("still readable");
    let left: Vec<_> = sorted_entries(&dir);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn store_detects_damage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    write(&src.join("f"), &Rng(5).bytes(100_000), 0o644);
    let store = Store::open(&tmp.path().join("store")).expect("store");
    let s = store
        .create_from_dir(&src, &WriteOptions::default(), &no_progress())
        .expect("create");
    let path = store.path(&s.id);

    // A flipped data byte: same size, so only the hash shows it.
    let mut raw = fs::read(&path).expect("read");
    raw[200] ^= 0xff;
    fs::write(&path, &raw).expect("write");
    assert!(matches!(store.verify(&s.id), Err(FsError::Corrupt { .. })));
    raw[200] ^= 0xff;
    fs::write(&path, &raw).expect("write");
    store.verify(&s.id).expect("restored");

    // A size that disagrees with the record.
    raw.push(0);
    fs::write(&path, &raw).expect("write");
    match store.open_image(&s.id) {
        Err(FsError::Corrupt { image, reason }) => {
            assert_eq!(image, s.id);
            assert!(reason.contains("bytes"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.info(&s.id), Err(FsError::Corrupt { .. })));
}

#[test]
fn store_rejects_bad_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&tmp.path().join("store")).expect("store");
    let upper = "A".repeat(64);
    let traversal = format!("../../{}", "a".repeat(58));
    for id in [
        "",
        "abc",
        upper.as_str(),
        traversal.as_str(),
        "../etc/passwd",
    ] {
        assert!(
            matches!(store.open_image(id), Err(FsError::Invalid(_))),
            "{id}"
        );
        assert!(matches!(store.info(id), Err(FsError::Invalid(_))), "{id}");
        assert!(matches!(store.verify(id), Err(FsError::Invalid(_))), "{id}");
        assert!(matches!(store.remove(id), Err(FsError::Invalid(_))), "{id}");
        assert!(
            matches!(store.checked_path(id), Err(FsError::Invalid(_))),
            "{id}"
        );
        assert!(store.path(id).starts_with(tmp.path().join("store")), "{id}");
        assert!(!store.path(id).exists());
    }
    let absent = "0".repeat(64);
    assert!(matches!(
        store.open_image(&absent),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(store.verify(&absent), Err(FsError::NotFound(_))));
}

#[test]
fn store_cleans_leftovers_and_imports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join(".deadbeef.tmp"), b"partial").expect("write");
    fs::write(dir.join("other.tmp"), b"partial").expect("write");
    let store = Store::open(&dir).expect("store");
    assert!(
        sorted_entries(&dir).is_empty(),
        "{:?}",
        sorted_entries(&dir)
    );

    if !have("mksquashfs") {
        println!("skipped import of an mksquashfs image: mksquashfs not installed");
        return;
    }
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    make_tree(&src, TreeOpts { hard_link: true });
    let ext = tmp.path().join("external.sqfs");
    mksquashfs(&src, &ext, &["-comp", "zstd"]);
    let s = store.import(&ext).expect("import");
    assert_eq!(s.id, sha256_file(&ext));
    assert_eq!(s.size, fs::metadata(&ext).expect("stat").len());
    let img = store.open_image(&s.id).expect("open");
    compare_image(&img, img.root(), &src);
    assert_eq!(img.stats(), s.stats);
    store.verify(&s.id).expect("verify");

    // A damaged image is refused and leaves nothing behind.
    let mut raw = fs::read(&ext).expect("read");
    let n = raw.len();
    raw.truncate(n / 2);
    let bad = tmp.path().join("bad.sqfs");
    fs::write(&bad, &raw).expect("write");
    match store.import(&bad) {
        Err(FsError::Corrupt { image, .. }) => assert_eq!(image, "bad.sqfs"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.list().expect("list"), vec![s.id.clone()]);
    assert!(
        sorted_entries(&dir)
            .iter()
            .all(|n| !n.as_bytes().ends_with(b".tmp")),
        "temp files left behind"
    );
}

#[test]
fn an_empty_tree_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("empty");
    std::fs::create_dir(&src).expect("mkdir");
    let img = dir.path().join("empty.sqfs");
    let out = std::fs::File::create(&img).expect("create");
    hybox_fs_layer::image::write_tree(
        &src,
        out,
        &hybox_fs_layer::image::WriteOptions::default(),
        &|_| {},
    )
    .expect("write");
    let image = hybox_fs_layer::image::Image::open(&img).expect("an empty tree is a valid image");
    use hybox_fs_layer::node::Layer;
    assert!(image.children(image.root()).expect("children").is_empty());
    assert_eq!(image.stats().files, 0);
}
