//! Tests of the copy-on-write views through real FUSE mounts.
//!
//! Every test mounts under its own temporary directory and unmounts by dropping the `Mount`.
//! When FUSE cannot be used here (`probe()` fails), each test prints why and passes.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use hybox_fs_layer::cow::{self, DirLayer, Mount, ViewSpec, Views};
use hybox_fs_layer::events::{EventSink, FsEvent, FsEventKind};
use hybox_fs_layer::node::Layer;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Prints why and returns true when FUSE cannot be used here.
fn skip(test: &str) -> bool {
    match cow::probe() {
        Ok(()) => false,
        Err(why) => {
            eprintln!("skipping {test}: FUSE unavailable: {why}");
            true
        }
    }
}

#[derive(Debug, Default)]
struct RecSink {
    events: Mutex<Vec<(String, FsEvent)>>,
}

impl EventSink for RecSink {
    fn event(&self, view: &str, event: FsEvent) {
        self.events.lock().unwrap().push((view.to_owned(), event));
    }
}

impl RecSink {
    fn take(&self) -> Vec<(String, FsEvent)> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

/// A mounted namespace in a temporary directory. Fields drop in order: the mount first.
struct Fx {
    mount: Option<Mount>,
    views: Arc<Views>,
    sink: Arc<RecSink>,
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let sink = Arc::new(RecSink::default());
        let views = Views::new(sink.clone());
        let mount = views.mount(&tmp.path().join("mnt")).unwrap();
        Fx {
            mount: Some(mount),
            views,
            sink,
            tmp,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn mnt(&self) -> PathBuf {
        self.mount.as_ref().unwrap().path().to_path_buf()
    }

    /// Adds view `name` over the given layer directories (top first) with upper `up-<name>`.
    fn view(&self, name: &str, layers: &[&Path]) -> PathBuf {
        let layers: Vec<Arc<dyn Layer>> = layers
            .iter()
            .map(|p| Arc::new(DirLayer::new(*p).unwrap()) as Arc<dyn Layer>)
            .collect();
        let upper = self.tmp.path().join(format!("up-{name}"));
        self.views
            .insert(
                name,
                ViewSpec {
                    upper,
                    layers,
                    read_only: false,
                },
            )
            .unwrap();
        self.mnt().join(name)
    }

    fn upper(&self, name: &str) -> PathBuf {
        self.tmp.path().join(format!("up-{name}"))
    }
}

fn set_mtime(p: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn write_file(p: &Path, data: &[u8], mode: u32) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn errno<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

// ---------------------------------------------------------------------------------------------
// Directed tests

#[test]
fn copy_up_preserves_metadata() {
    if skip("copy_up_preserves_metadata") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("d/sub/f.txt"), b"hello", 0o640);
    fs::set_permissions(low.join("d/sub"), fs::Permissions::from_mode(0o750)).unwrap();
    rustix::fs::chown(
        low.join("d/sub/f.txt"),
        Some(rustix::fs::Uid::from_raw(1234)),
        Some(rustix::fs::Gid::from_raw(4321)),
    )
    .unwrap();
    set_mtime(&low.join("d/sub/f.txt"), 1_500_000_000);
    set_mtime(&low.join("d/sub"), 1_400_000_000);
    let v = fx.view("v", &[&low]);

    let before = fs::metadata(v.join("d/sub/f.txt")).unwrap();
    assert_eq!(before.mode() & 0o7777, 0o640);
    assert_eq!((before.uid(), before.gid()), (1234, 4321));
    assert_eq!(before.mtime(), 1_500_000_000);
    let ino = before.ino();

    // Open for writing without writing: copy-up only.
    drop(
        fs::OpenOptions::new()
            .write(true)
            .open(v.join("d/sub/f.txt"))
            .unwrap(),
    );
    let up = fx.upper("v").join("d/sub/f.txt");
    let m = fs::metadata(&up).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.uid(), m.gid()), (1234, 4321));
    assert_eq!(m.mtime(), 1_500_000_000);
    assert_eq!(fs::read(&up).unwrap(), b"hello");
    let dm = fs::metadata(fx.upper("v").join("d/sub")).unwrap();
    assert_eq!(dm.mode() & 0o7777, 0o750);
    assert_eq!(
        dm.mtime(),
        1_400_000_000,
        "parent copied up with the layer mtime"
    );

    let after = fs::metadata(v.join("d/sub/f.txt")).unwrap();
    assert_eq!(after.ino(), ino, "inode number is stable across copy-up");
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!(after.mtime(), 1_500_000_000);
    // No temporary names left behind.
    assert_eq!(names(&fx.upper("v").join("d/sub")), vec!["f.txt"]);

    // chmod copies up and changes only the mode.
    write_file(&low.join("g"), b"gg", 0o644);
    let v2 = fx.view("v2", &[&low]);
    fs::set_permissions(v2.join("g"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(v2.join("g")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fs::read(fx.upper("v2").join("g")).unwrap(), b"gg");
    // Nanosecond timestamps on upper files.
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    let f = fs::File::options().write(true).open(v2.join("g")).unwrap();
    f.set_modified(t).unwrap();
    drop(f);
    let m = fs::metadata(v2.join("g")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
    // The layer is untouched.
    assert_eq!(fs::metadata(low.join("g")).unwrap().mode() & 0o7777, 0o644);
}

#[test]
fn whiteout_hides_lower_file() {
    if skip("whiteout_hides_lower_file") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("a"), b"a", 0o644);
    write_file(&low.join("b"), b"b", 0o644);
    write_file(&low.join("dir/x"), b"x", 0o644);
    let v = fx.view("v", &[&low]);
    fs::remove_file(v.join("a")).unwrap();
    assert_eq!(errno(fs::metadata(v.join("a"))), libc::ENOENT);
    assert_eq!(names(&v), vec!["b", "dir"]);
    assert!(fx.upper("v").join(".wh.a").exists());
    // Whiteout names are never visible and cannot be created.
    assert_eq!(errno(fs::metadata(v.join(".wh.a"))), libc::ENOENT);
    assert_eq!(errno(fs::write(v.join(".wh.zz"), b"")), libc::EPERM);
    assert_eq!(errno(fs::create_dir(v.join(".wh..wh..opq"))), libc::EPERM);
    // Re-creating the name shows the new file, and the whiteout goes away.
    fs::write(v.join("a"), b"new").unwrap();
    assert_eq!(fs::read(v.join("a")).unwrap(), b"new");
    assert!(!fx.upper("v").join(".wh.a").exists());
    fs::remove_file(v.join("a")).unwrap();
    assert_eq!(errno(fs::metadata(v.join("a"))), libc::ENOENT);
    // ls does not show .wh. names.
    let out = std::process::Command::new("ls")
        .arg("-a")
        .arg(&v)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(!out.contains(".wh."), "ls shows {out}");

    // Whiteouts and opaque dirs inside a layer (an old upper squashed).
    let bottom = fx.dir("bottom");
    let top = fx.dir("top");
    write_file(&bottom.join("gone"), b"1", 0o644);
    write_file(&bottom.join("keep"), b"1", 0o644);
    write_file(&bottom.join("op/old"), b"1", 0o644);
    write_file(&top.join(".wh.gone"), b"", 0o644);
    write_file(&top.join("op/.wh..wh..opq"), b"", 0o644);
    write_file(&top.join("op/new"), b"1", 0o644);
    let w = fx.view("w", &[&top, &bottom]);
    assert_eq!(names(&w), vec!["keep", "op"]);
    assert_eq!(names(&w.join("op")), vec!["new"]);
    assert_eq!(errno(fs::metadata(w.join("gone"))), libc::ENOENT);
    assert_eq!(errno(fs::metadata(w.join("op/old"))), libc::ENOENT);
}

#[test]
fn opaque_dir_after_rm_rf_and_mkdir() {
    if skip("opaque_dir_after_rm_rf_and_mkdir") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("d/a"), b"a", 0o644);
    write_file(&low.join("d/sub/b"), b"b", 0o644);
    let v = fx.view("v", &[&low]);
    assert_eq!(errno(fs::remove_dir(v.join("d"))), libc::ENOTEMPTY);
    fs::remove_dir_all(v.join("d")).unwrap();
    assert_eq!(errno(fs::metadata(v.join("d"))), libc::ENOENT);
    fs::create_dir(v.join("d")).unwrap();
    assert!(names(&v.join("d")).is_empty());
    assert!(fx.upper("v").join("d/.wh..wh..opq").exists());
    fs::write(v.join("d/c"), b"c").unwrap();
    assert_eq!(names(&v.join("d")), vec!["c"]);
    assert_eq!(errno(fs::metadata(v.join("d/sub/b"))), libc::ENOENT);
}

#[test]
fn rename_lower_directory_with_contents() {
    if skip("rename_lower_directory_with_contents") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("src/a"), b"a", 0o644);
    write_file(&low.join("src/deep/b"), b"bb", 0o600);
    std::os::unix::fs::symlink("deep/b", low.join("src/link")).unwrap();
    write_file(&low.join("empty/.keep"), b"", 0o644);
    let v = fx.view("v", &[&low]);
    // Mix in an upper file and a whiteout inside the merged directory.
    fs::write(v.join("src/up"), b"up").unwrap();
    fs::remove_file(v.join("src/a")).unwrap();
    let fd = fs::File::open(v.join("src/deep/b")).unwrap();

    fs::rename(v.join("src"), v.join("dst")).unwrap();
    assert_eq!(errno(fs::metadata(v.join("src"))), libc::ENOENT);
    assert_eq!(names(&v.join("dst")), vec!["deep", "link", "up"]);
    assert_eq!(fs::read(v.join("dst/deep/b")).unwrap(), b"bb");
    assert_eq!(
        fs::metadata(v.join("dst/deep/b")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        fs::read_link(v.join("dst/link")).unwrap(),
        Path::new("deep/b")
    );
    assert_eq!(fs::read(v.join("dst/up")).unwrap(), b"up");
    // An open file keeps working.
    let mut s = String::new();
    (&fd).read_to_string(&mut s).unwrap();
    assert_eq!(s, "bb");
    // Re-creating the old name gives an empty directory.
    fs::create_dir(v.join("src")).unwrap();
    assert!(names(&v.join("src")).is_empty());
    // Over an empty merged directory (its layer content deleted): replaces it.
    fs::remove_file(v.join("empty/.keep")).unwrap();
    fs::rename(v.join("dst"), v.join("empty")).unwrap();
    assert_eq!(names(&v.join("empty")), vec!["deep", "link", "up"]);
    // POSIX errors.
    fs::create_dir(v.join("full")).unwrap();
    fs::write(v.join("full/x"), b"").unwrap();
    fs::write(v.join("file"), b"").unwrap();
    assert_eq!(
        errno(fs::rename(v.join("empty"), v.join("full"))),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno(fs::rename(v.join("empty"), v.join("file"))),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(fs::rename(v.join("file"), v.join("full"))),
        libc::EISDIR
    );
    assert_eq!(
        errno(fs::rename(v.join("empty"), v.join("empty/deep/x"))),
        libc::EINVAL
    );
    // RENAME_NOREPLACE.
    let r = rustix::fs::renameat_with(
        rustix::fs::CWD,
        v.join("file"),
        rustix::fs::CWD,
        v.join("full/x"),
        rustix::fs::RenameFlags::NOREPLACE,
    );
    assert_eq!(r.map_err(|e| e.raw_os_error()), Err(libc::EEXIST));
    let r = rustix::fs::renameat_with(
        rustix::fs::CWD,
        v.join("file"),
        rustix::fs::CWD,
        v.join("file2"),
        rustix::fs::RenameFlags::NOREPLACE,
    );
    assert!(r.is_ok());
    // Nothing temporary left in the upper directory.
    for e in walk(&fx.upper("v")) {
        assert!(!e.to_string_lossy().contains(".wh..wh.tmp"), "{e:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        out.push(p.clone());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn hard_links() {
    if skip("hard_links") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("f"), b"lower", 0o644);
    let v = fx.view("v", &[&low]);
    fs::hard_link(v.join("f"), v.join("g")).unwrap();
    let (mf, mg) = (
        fs::metadata(v.join("f")).unwrap(),
        fs::metadata(v.join("g")).unwrap(),
    );
    assert_eq!(mf.nlink(), 2);
    assert_eq!(mg.nlink(), 2);
    assert_eq!(mf.ino(), mg.ino());
    fs::OpenOptions::new()
        .append(true)
        .open(v.join("g"))
        .unwrap()
        .write_all(b"+more")
        .unwrap();
    assert_eq!(fs::read(v.join("f")).unwrap(), b"lower+more");
    fs::remove_file(v.join("f")).unwrap();
    assert_eq!(fs::metadata(v.join("g")).unwrap().nlink(), 1);
    assert_eq!(fs::read(v.join("g")).unwrap(), b"lower+more");
    assert_eq!(errno(fs::metadata(v.join("f"))), libc::ENOENT);
    assert_eq!(
        errno(fs::hard_link(v.join("g"), v.join(".wh.x"))),
        libc::EPERM
    );
}

#[test]
fn fsync_and_unlinked_open_file() {
    if skip("fsync_and_unlinked_open_file") {
        return;
    }
    let fx = Fx::new();
    let v = fx.view("v", &[]);
    let mut f = fs::File::create(v.join("f")).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    fs::File::open(&v).unwrap().sync_all().unwrap();
    assert_eq!(fs::read(fx.upper("v").join("f")).unwrap(), b"data");
    // statfs reports the upper directory's filesystem.
    let (a, b) = (
        rustix::fs::statvfs(&v).unwrap(),
        rustix::fs::statvfs(fx.upper("v")).unwrap(),
    );
    assert_eq!(
        (a.f_blocks, a.f_bsize, a.f_files),
        (b.f_blocks, b.f_bsize, b.f_files)
    );
    // An unlinked file stays usable through its descriptor.
    fs::remove_file(v.join("f")).unwrap();
    f.write_all(b"+").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = Vec::new();
    let mut r = fs::File::open(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&f)
    ))
    .unwrap();
    r.read_to_end(&mut s).unwrap();
    assert_eq!(s, b"data+");
    assert_eq!(f.metadata().unwrap().len(), 5);
}

#[test]
fn replace_is_visible_through_an_old_root_fd() {
    if skip("replace_is_visible_through_an_old_root_fd") {
        return;
    }
    let fx = Fx::new();
    let l1 = fx.dir("l1");
    let l2 = fx.dir("l2");
    write_file(&l1.join("f"), b"one", 0o644);
    write_file(&l1.join("only1"), b"", 0o644);
    write_file(&l2.join("f"), b"two", 0o644);
    write_file(&l2.join("only2"), b"", 0o644);
    let v = fx.view("v", &[&l1]);
    let root = fs::File::open(&v).unwrap();
    let root_ino = root.metadata().unwrap().ino();
    let read_at = |name: &str| -> Vec<u8> {
        let fd = rustix::fs::openat(
            &root,
            name,
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let mut v = Vec::new();
        fs::File::from(fd).read_to_end(&mut v).unwrap();
        v
    };
    assert_eq!(read_at("f"), b"one");
    assert_eq!(fs::read(v.join("f")).unwrap(), b"one");
    fs::write(v.join("new"), b"n").unwrap();
    let old_fd = fs::File::open(v.join("f")).unwrap();

    let old = fx
        .views
        .replace(
            "v",
            ViewSpec {
                upper: fx.upper("v2"),
                layers: vec![Arc::new(DirLayer::new(&l2).unwrap())],
                read_only: false,
            },
        )
        .unwrap();
    assert_eq!(old.upper, fx.upper("v"));
    assert_eq!(read_at("f"), b"two");
    assert_eq!(fs::read(v.join("f")).unwrap(), b"two");
    assert_eq!(names(&v), vec!["f", "only2"]);
    let r = rustix::fs::statat(&root, "only1", rustix::fs::AtFlags::empty());
    assert_eq!(
        r.map(|_| ()).map_err(|e| e.raw_os_error()),
        Err(libc::ENOENT)
    );
    assert_eq!(errno(fs::metadata(v.join("new"))), libc::ENOENT);
    assert_eq!(fs::metadata(&v).unwrap().ino(), root_ino);
    assert_eq!(root.metadata().unwrap().ino(), root_ino);
    // A file opened before keeps its old contents.
    let mut s = String::new();
    (&old_fd).read_to_string(&mut s).unwrap();
    assert_eq!(s, "one");
}

#[test]
fn rename_view_keeps_root_fd() {
    if skip("rename_view_keeps_root_fd") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("f"), b"x", 0o644);
    let v = fx.view("a", &[&low]);
    let root = fs::File::open(&v).unwrap();
    let ino = root.metadata().unwrap().ino();
    assert_eq!(names(&fx.mnt()), vec!["a"]);
    fx.views.rename("a", "b").unwrap();
    assert_eq!(names(&fx.mnt()), vec!["b"]);
    assert_eq!(errno(fs::metadata(fx.mnt().join("a"))), libc::ENOENT);
    assert_eq!(fs::metadata(fx.mnt().join("b")).unwrap().ino(), ino);
    let fd = rustix::fs::openat(
        &root,
        "f",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).unwrap();
    assert_eq!(s, "x");
    // Through the mount: renaming at the root renames views; other root changes are refused.
    fs::rename(fx.mnt().join("b"), fx.mnt().join("c")).unwrap();
    assert_eq!(fx.views.names(), vec!["c".to_string()]);
    assert_eq!(fs::metadata(fx.mnt().join("c")).unwrap().ino(), ino);
    assert_eq!(errno(fs::create_dir(fx.mnt().join("x"))), libc::EPERM);
    assert_eq!(errno(fs::write(fx.mnt().join("x"), b"")), libc::EPERM);
    assert_eq!(errno(fs::remove_dir(fx.mnt().join("c"))), libc::EPERM);
    assert!(matches!(
        fx.views.rename("zz", "y"),
        Err(hybox_fs_layer::FsError::NotFound(_))
    ));
    fx.views
        .insert(
            "d",
            ViewSpec {
                upper: fx.upper("d"),
                layers: Vec::new(),
                read_only: false,
            },
        )
        .unwrap();
    assert!(matches!(
        fx.views.rename("c", "d"),
        Err(hybox_fs_layer::FsError::AlreadyExists(_))
    ));
    assert!(matches!(
        fx.views.rename("c", "a/b"),
        Err(hybox_fs_layer::FsError::Invalid(_))
    ));
    fx.views.remove("c").unwrap();
    assert_eq!(names(&fx.mnt()), vec!["d"]);
    assert_eq!(errno(fs::metadata(fx.mnt().join("c"))), libc::ENOENT);
}

#[test]
fn read_only_view_refuses_changes() {
    if skip("read_only_view_refuses_changes") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("f"), b"x", 0o644);
    fx.views
        .insert(
            "ro",
            ViewSpec {
                upper: fx.upper("ro"),
                layers: vec![Arc::new(DirLayer::new(&low).unwrap())],
                read_only: true,
            },
        )
        .unwrap();
    let v = fx.mnt().join("ro");
    assert_eq!(fs::read(v.join("f")).unwrap(), b"x");
    assert_eq!(
        errno(fs::OpenOptions::new().write(true).open(v.join("f"))),
        libc::EROFS
    );
    assert_eq!(errno(fs::write(v.join("g"), b"")), libc::EROFS);
    assert_eq!(errno(fs::create_dir(v.join("d"))), libc::EROFS);
    assert_eq!(errno(fs::remove_file(v.join("f"))), libc::EROFS);
    assert_eq!(errno(fs::rename(v.join("f"), v.join("g"))), libc::EROFS);
    assert_eq!(
        errno(fs::set_permissions(
            v.join("f"),
            fs::Permissions::from_mode(0o600)
        )),
        libc::EROFS
    );
    assert_eq!(names(&fx.upper("ro")), Vec::<String>::new());
}

#[test]
fn events_for_each_kind_of_change() {
    if skip("events_for_each_kind_of_change") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("lower.txt"), b"x", 0o644);
    let v = fx.view("ev", &[&low]);
    let _ = fx.sink.take();
    let ev = |kind, path: &str, old: Option<&str>, is_dir| {
        (
            "ev".to_string(),
            FsEvent {
                kind,
                path: path.to_string(),
                old_path: old.map(str::to_string),
                is_dir,
                replaced: false,
            },
        )
    };
    fs::create_dir(v.join("d")).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Create, "d", None, true)]
    );
    let mut f = fs::File::create(v.join("d/f")).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Create, "d/f", None, false)]
    );
    f.write_all(b"abc").unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Modify, "d/f", None, false)]
    );
    drop(f);
    f = fs::OpenOptions::new()
        .write(true)
        .open(v.join("lower.txt"))
        .unwrap();
    f.set_len(0).unwrap();
    drop(f);
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Modify, "lower.txt", None, false)]
    );
    fs::set_permissions(v.join("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Modify, "d/f", None, false)]
    );
    std::os::unix::fs::symlink("f", v.join("d/s")).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Create, "d/s", None, false)]
    );
    fs::hard_link(v.join("d/f"), v.join("h")).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Create, "h", None, false)]
    );
    rustix::fs::mknodat(
        rustix::fs::CWD,
        v.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Create, "fifo", None, false)]
    );
    assert!(
        fs::symlink_metadata(v.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    fs::rename(v.join("d"), v.join("e")).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Rename, "e", Some("d"), true)]
    );
    fs::remove_file(v.join("e/s")).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![ev(FsEventKind::Delete, "e/s", None, false)]
    );
    fs::remove_file(v.join("e/f")).unwrap();
    fs::remove_dir(v.join("e")).unwrap();
    assert_eq!(
        fx.sink.take(),
        vec![
            ev(FsEventKind::Delete, "e/f", None, false),
            ev(FsEventKind::Delete, "e", None, true)
        ]
    );
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn freeze_blocks_writers_until_dropped() {
    if skip("freeze_blocks_writers_until_dropped") {
        return;
    }
    let fx = Fx::new();
    let v = fx.view("v", &[]);
    fs::write(v.join("f"), b"0").unwrap();
    fs::create_dir(v.join("w")).unwrap();
    let files: Vec<fs::File> = (0..3)
        .map(|i| fs::File::create(v.join(format!("g{i}"))).unwrap())
        .collect();
    let guard = fx.views.freeze("v").unwrap();
    let (tx, rx) = mpsc::channel();
    let mut writers = Vec::new();
    // More blocked writers than FUSE threads: creates in a subdirectory (the kernel holds
    // that directory's lock meanwhile) and writes to open files.
    for i in 0..3 {
        let (tx, p) = (tx.clone(), v.clone());
        writers.push(std::thread::spawn(move || {
            fs::write(p.join(format!("w/n{i}")), b"x").unwrap();
            tx.send(format!("create {i}")).unwrap();
        }));
    }
    for (i, f) in files.into_iter().enumerate() {
        let tx = tx.clone();
        writers.push(std::thread::spawn(move || {
            f.write_at(b"data", 0).unwrap();
            tx.send(format!("write {i}")).unwrap();
        }));
    }
    // Reads are still served.
    for _ in 0..20 {
        assert_eq!(fs::read(v.join("f")).unwrap(), b"0");
        assert_eq!(names(&v), vec!["f", "g0", "g1", "g2", "w"]);
    }
    let early = rx.recv_timeout(Duration::from_millis(300));
    let upper_w = names(&fx.upper("v").join("w"));
    let upper_g = fs::read(fx.upper("v").join("g0")).unwrap();
    drop(guard);
    let mut done = Vec::new();
    for _ in 0..6 {
        done.push(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("writer still blocked after thaw"),
        );
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        early.is_err(),
        "a change went through while frozen: {early:?}"
    );
    assert!(upper_w.is_empty(), "created while frozen: {upper_w:?}");
    assert!(upper_g.is_empty(), "written while frozen");
    assert_eq!(names(&v.join("w")), vec!["n0", "n1", "n2"]);
    assert_eq!(fs::read(v.join("g1")).unwrap(), b"data");
}

/// Helper for `cleanup_stale_mounts_after_sigkill`: run in a child process, mounts and sleeps.
#[test]
#[ignore = "helper run by cleanup_stale_mounts_after_sigkill in a child process"]
fn stale_mount_child() {
    let Some(dir) = std::env::var_os("HYBOX_COW_STALE_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let views = Views::new(Arc::new(hybox_fs_layer::events::NoEvents));
    views
        .insert(
            "v",
            ViewSpec {
                upper: dir.join("up"),
                layers: Vec::new(),
                read_only: false,
            },
        )
        .unwrap();
    let m = views.mount(&dir.join("mnt/inner")).unwrap();
    fs::write(dir.join("ready"), b"1").unwrap();
    std::thread::sleep(Duration::from_secs(120));
    drop(m);
}

#[test]
fn cleanup_stale_mounts_after_sigkill() {
    if skip("cleanup_stale_mounts_after_sigkill") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("with space");
    fs::create_dir_all(&dir).unwrap();
    let inner = dir.join("mnt/inner");
    let mounted = |p: &Path| {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let esc = p.to_string_lossy().replace(' ', "\\040");
        info.lines()
            .filter(|l| l.split(' ').nth(4) == Some(esc.as_str()))
            .count()
    };
    // A child process mounts, then dies without unmounting.
    let crash = || {
        let _ = fs::remove_file(dir.join("ready"));
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "stale_mount_child", "--ignored", "--nocapture"])
            .env("HYBOX_COW_STALE_DIR", &dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("ready").exists() {
            assert!(Instant::now() < deadline, "child did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    };
    crash();
    assert_eq!(mounted(&inner), 1, "the stale mount should still be there");
    assert_eq!(errno(fs::read_dir(&inner)), libc::ENOTCONN);
    let n = cow::cleanup_stale_mounts(&dir.join("mnt")).unwrap();
    assert_eq!(n, 1);
    assert_eq!(mounted(&inner), 0);
    assert_eq!(cow::cleanup_stale_mounts(&dir.join("mnt")).unwrap(), 0);
    // Mounting over a stale mount detaches it first.
    crash();
    assert_eq!(mounted(&inner), 1);
    let views = Views::new(Arc::new(hybox_fs_layer::events::NoEvents));
    let m = views.mount(&inner).unwrap();
    assert_eq!(mounted(&inner), 1);
    assert!(names(&inner).is_empty());
    m.unmount().unwrap();
    assert_eq!(mounted(&inner), 0);
}

#[test]
fn forget_keeps_the_inode_table_bounded() {
    if skip("forget_keeps_the_inode_table_bounded") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    for d in 0..100 {
        for f in 0..100 {
            write_file(&low.join(format!("d{d}/f{f}")), b"", 0o644);
        }
    }
    let v = fx.view("v", &[&low]);
    let base = fx.views.inode_count();
    let mut n = 0;
    for d in fs::read_dir(&v).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            fs::symlink_metadata(f.unwrap().path()).unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 10_000);
    let peak = fx.views.inode_count();
    assert!(peak >= 10_000, "peak {peak}");
    // Make the kernel drop its dentries and inodes: it sends FORGETs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = fs::write("/proc/sys/vm/drop_caches", b"2");
        let c = fx.views.inode_count();
        if c <= base + 200 {
            break;
        }
        if Instant::now() > deadline {
            panic!("inode table still holds {c} entries (base {base}, peak {peak})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Everything can be looked up again.
    assert_eq!(fs::read(v.join("d7/f7")).unwrap(), b"");
}

#[test]
fn perf_sanity() {
    if skip("perf_sanity") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    for d in 0..100 {
        for f in 0..100 {
            write_file(&low.join(format!("d{d}/f{f}")), b"x", 0o644);
        }
    }
    let mut big = vec![0u8; 50 << 20];
    let mut x = 0x1234_5678_9abc_def0u64;
    for c in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    fs::write(low.join("big"), &big).unwrap();
    let img = fx.tmp.path().join("low.sqfs");
    hybox_fs_layer::image::write_tree(
        &low,
        fs::File::create_new(&img).unwrap(),
        &Default::default(),
        &|_| {},
    )
    .unwrap();
    let dir_layer: Arc<dyn Layer> = Arc::new(DirLayer::new(&low).unwrap());
    let image_layer: Arc<dyn Layer> = hybox_fs_layer::image::Image::open(&img).unwrap();
    for (name, layer) in [("dirlayer", dir_layer), ("squashfs", image_layer)] {
        fx.views
            .insert(
                name,
                ViewSpec {
                    upper: fx.upper(name),
                    layers: vec![layer],
                    read_only: false,
                },
            )
            .unwrap();
        let v = fx.mnt().join(name);
        let paths: Vec<PathBuf> = (0..10_000)
            .map(|i| v.join(format!("d{}/f{}", i / 100, i % 100)))
            .collect();
        let t = Instant::now();
        for p in &paths {
            fs::symlink_metadata(p).unwrap();
        }
        let cold = t.elapsed();
        let t = Instant::now();
        for p in &paths {
            fs::symlink_metadata(p).unwrap();
        }
        let warm = t.elapsed();
        let read_all = || {
            let t = Instant::now();
            let mut f = fs::File::open(v.join("big")).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0;
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, big.len());
            t.elapsed()
        };
        let (first, again) = (read_all(), read_all());
        eprintln!(
            "perf ({name}): lstat 10k lower files {:.0}/s first, {:.0}/s cached; \
             sequential read 50 MB {:.0} MB/s first, {:.0} MB/s page-cached",
            10_000.0 / cold.as_secs_f64(),
            10_000.0 / warm.as_secs_f64(),
            50.0 / first.as_secs_f64(),
            50.0 / again.as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Randomized model test: the same operations on a view and on a plain directory.

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max + 1) as usize;
        (0..n).map(|_| b'a' + (self.below(26) as u8)).collect()
    }
    fn name(&mut self) -> String {
        format!("n{}", self.below(40))
    }
}

enum Ent {
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
    Dir {
        mode: u32,
        children: BTreeMap<String, Ent>,
    },
    Link(String),
}

const FILE_MODES: [u32; 5] = [0o644, 0o600, 0o755, 0o640, 0o444];
const DIR_MODES: [u32; 4] = [0o755, 0o750, 0o700, 0o775];

fn gen_tree(rng: &mut Rng, depth: u32) -> BTreeMap<String, Ent> {
    let mut out = BTreeMap::new();
    let n = rng.below(6);
    for _ in 0..n {
        let name = rng.name();
        let e = match rng.below(10) {
            0..=5 => Ent::File {
                data: rng.bytes(3000),
                mode: *rng.pick(&FILE_MODES),
                mtime: 1_500_000_000 + rng.below(100_000_000) as i64,
            },
            6..=8 if depth < 3 => Ent::Dir {
                mode: *rng.pick(&DIR_MODES),
                children: gen_tree(rng, depth + 1),
            },
            _ => Ent::Link(random_target(rng)),
        };
        out.insert(name, e);
    }
    out
}

fn random_target(rng: &mut Rng) -> String {
    // Never absolute, never "..": resolving stays inside the tree.
    match rng.below(3) {
        0 => rng.name(),
        1 => format!("{}/{}", rng.name(), rng.name()),
        _ => "missing".into(),
    }
}

/// Writes the merged tree to `model`, and splits it over layers `l1` (top) and `l2`, with
/// decoys in `l2` hidden by whiteouts, files and opaque directories in `l1`.
#[allow(clippy::too_many_arguments, reason = "test helper")]
fn materialize(
    rng: &mut Rng,
    tree: &BTreeMap<String, Ent>,
    model: &Path,
    l1: &Path,
    l2: &Path,
    l2_ok: bool,
    ghost: &mut u32,
) {
    // Ghosts: in l2, hidden by a whiteout in l1.
    if l2_ok && rng.chance(40) {
        *ghost += 1;
        let g = format!("ghost{ghost}");
        if rng.chance(50) {
            write_file(&l2.join(&g), b"ghost", 0o644);
        } else {
            write_file(&l2.join(&g).join("inner"), b"ghost", 0o644);
        }
        write_file(&l1.join(format!(".wh.{g}")), b"", 0o644);
    }
    for (name, e) in tree {
        let (m, p1, p2) = (model.join(name), l1.join(name), l2.join(name));
        match e {
            Ent::File { data, mode, mtime } => {
                write_file(&m, data, *mode);
                set_mtime(&m, *mtime);
                let place = if l2_ok { rng.below(4) } else { 0 };
                let (top, bottom) = match place {
                    0 => (true, None),
                    1 => (false, Some(0)),
                    2 => (true, Some(1)),
                    _ => (true, Some(2)),
                };
                match bottom {
                    Some(0) => {
                        write_file(&p2, data, *mode);
                        set_mtime(&p2, *mtime);
                    }
                    Some(1) => write_file(&p2, b"decoy contents", 0o600),
                    Some(_) => write_file(&p2.join("decoy"), b"decoy", 0o600),
                    None => {}
                }
                if top {
                    write_file(&p1, data, *mode);
                    set_mtime(&p1, *mtime);
                }
            }
            Ent::Link(t) => {
                std::os::unix::fs::symlink(t, &m).unwrap();
                if l2_ok && rng.chance(50) {
                    std::os::unix::fs::symlink(t, &p2).unwrap();
                } else {
                    if l2_ok && rng.chance(30) {
                        write_file(&p2, b"decoy", 0o644);
                    }
                    std::os::unix::fs::symlink(t, &p1).unwrap();
                }
            }
            Ent::Dir { mode, children } => {
                fs::create_dir(&m).unwrap();
                let opaque = rng.chance(15);
                let in_l2 = l2_ok && rng.chance(75);
                if in_l2 {
                    fs::create_dir(&p2).unwrap();
                    if opaque {
                        write_file(&p2.join("hidden-by-opaque"), b"junk", 0o644);
                    }
                } else if l2_ok && rng.chance(30) {
                    write_file(&p2, b"decoy file under a dir", 0o644);
                }
                fs::create_dir(&p1).unwrap();
                if opaque {
                    write_file(&p1.join(".wh..wh..opq"), b"", 0o644);
                }
                materialize(rng, children, &m, &p1, &p2, in_l2 && !opaque, ghost);
                fs::set_permissions(&m, fs::Permissions::from_mode(*mode)).unwrap();
                fs::set_permissions(&p1, fs::Permissions::from_mode(*mode)).unwrap();
                if in_l2 {
                    fs::set_permissions(&p2, fs::Permissions::from_mode(*mode)).unwrap();
                }
            }
        }
    }
}

/// Everything under `root`, sorted, with its kind ('f', 'd', 'l', 'p').
fn entries(root: &Path) -> Vec<(PathBuf, char)> {
    fn rec(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, char)>) {
        let mut names: Vec<OsString> = match fs::read_dir(root.join(rel)) {
            Ok(rd) => rd.map(|e| e.unwrap().file_name()).collect(),
            Err(_) => return,
        };
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let md = fs::symlink_metadata(root.join(&r)).unwrap();
            let ft = md.file_type();
            let k = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else {
                'p'
            };
            out.push((r.clone(), k));
            if k == 'd' {
                rec(root, &r, out);
            }
        }
    }
    let mut out = Vec::new();
    rec(root, Path::new(""), &mut out);
    out
}

/// A comparable description of the tree under `root`.
fn snapshot(root: &Path) -> Vec<String> {
    entries(root)
        .into_iter()
        .map(|(rel, k)| {
            let p = root.join(&rel);
            let md = fs::symlink_metadata(&p).unwrap();
            match k {
                'f' => format!(
                    "{} f {:o} size={} nlink={} data={:x}",
                    rel.display(),
                    md.mode() & 0o7777,
                    md.len(),
                    md.nlink(),
                    fnv(&fs::read(&p).unwrap())
                ),
                'l' => format!(
                    "{} l -> {}",
                    rel.display(),
                    fs::read_link(&p).unwrap().display()
                ),
                'd' => format!("{} d {:o}", rel.display(), md.mode() & 0o7777),
                _ => format!("{} {k} {:o}", rel.display(), md.mode() & 0o7777),
            }
        })
        .collect()
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn diff(a: &[String], b: &[String]) -> String {
    let mut out = String::new();
    for l in a {
        if !b.contains(l) {
            out += &format!("  view only:  {l}\n");
        }
    }
    for l in b {
        if !a.contains(l) {
            out += &format!("  model only: {l}\n");
        }
    }
    out
}

/// One random operation, described and applied to a root.
#[derive(Debug, Clone)]
enum Op {
    Write(PathBuf, Vec<u8>),
    WriteAt(PathBuf, u64, Vec<u8>),
    Append(PathBuf, Vec<u8>),
    Truncate(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
    Mkdir(PathBuf),
    Rmdir(PathBuf),
    Link(PathBuf, PathBuf),
    Symlink(String, PathBuf),
    Chmod(PathBuf, u32),
    Utimens(PathBuf, i64, u32),
    Read(PathBuf),
}

fn gen_op(rng: &mut Rng, model: &Path) -> Op {
    let all = entries(model);
    let dirs: Vec<PathBuf> = std::iter::once(PathBuf::new())
        .chain(all.iter().filter(|e| e.1 == 'd').map(|e| e.0.clone()))
        .collect();
    let files: Vec<PathBuf> = all
        .iter()
        .filter(|e| e.1 == 'f')
        .map(|e| e.0.clone())
        .collect();
    let any = |rng: &mut Rng| -> PathBuf {
        if all.is_empty() || rng.chance(10) {
            rng.pick(&dirs).join(rng.name())
        } else {
            rng.pick(&all).0.clone()
        }
    };
    let file = |rng: &mut Rng| -> PathBuf {
        if files.is_empty() || rng.chance(15) {
            any(rng)
        } else {
            rng.pick(&files).clone()
        }
    };
    let fresh = |rng: &mut Rng| -> PathBuf {
        if rng.chance(10) && !all.is_empty() {
            // Sometimes through a non-directory, or an existing name.
            rng.pick(&all).0.join(rng.name())
        } else {
            rng.pick(&dirs).join(rng.name())
        }
    };
    let dir = |rng: &mut Rng| -> PathBuf {
        if dirs.len() <= 1 || rng.chance(10) {
            any(rng)
        } else {
            rng.pick(&dirs[1..]).clone()
        }
    };
    match rng.below(17) {
        0 | 1 => Op::Write(
            if rng.chance(50) {
                fresh(rng)
            } else {
                file(rng)
            },
            rng.bytes(2000),
        ),
        2 => Op::WriteAt(file(rng), rng.below(4000), rng.bytes(500)),
        3 => Op::Append(file(rng), rng.bytes(500)),
        4 => Op::Truncate(file(rng), rng.below(4000)),
        5 => Op::Rename(
            file(rng),
            if rng.chance(50) { fresh(rng) } else { any(rng) },
        ),
        6 | 7 => Op::Rename(dir(rng), if rng.chance(60) { fresh(rng) } else { any(rng) }),
        8 => Op::Unlink(any(rng)),
        9 => Op::Mkdir(fresh(rng)),
        10 => Op::Rmdir(dir(rng)),
        11 => Op::Link(file(rng), fresh(rng)),
        12 => Op::Symlink(random_target(rng), fresh(rng)),
        13 => Op::Chmod(any(rng), *rng.pick(&FILE_MODES)),
        14 => Op::Utimens(
            any(rng),
            1_000_000_000 + rng.below(1_000_000_000) as i64,
            rng.below(1_000_000_000) as u32,
        ),
        _ => Op::Read(file(rng)),
    }
}

/// Applies `op` under `root`; returns what a caller can observe (data read, mtime) or errno.
fn apply(op: &Op, root: &Path) -> Result<String, i32> {
    let e = |r: std::io::Error| r.raw_os_error().unwrap_or(-1);
    let rx = |r: rustix::io::Errno| r.raw_os_error();
    match op {
        Op::Write(p, d) => fs::write(root.join(p), d)
            .map(|()| String::new())
            .map_err(e),
        Op::WriteAt(p, off, d) => {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(root.join(p))
                .map_err(e)?;
            f.write_all_at(d, *off).map_err(e)?;
            Ok(String::new())
        }
        Op::Append(p, d) => {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(root.join(p))
                .map_err(e)?;
            f.write_all(d).map_err(e)?;
            Ok(String::new())
        }
        Op::Truncate(p, n) => {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(root.join(p))
                .map_err(e)?;
            f.set_len(*n).map_err(e)?;
            Ok(String::new())
        }
        Op::Rename(a, b) => fs::rename(root.join(a), root.join(b))
            .map(|()| String::new())
            .map_err(e),
        Op::Unlink(p) => fs::remove_file(root.join(p))
            .map(|()| String::new())
            .map_err(e),
        Op::Mkdir(p) => fs::create_dir(root.join(p))
            .map(|()| String::new())
            .map_err(e),
        Op::Rmdir(p) => fs::remove_dir(root.join(p))
            .map(|()| String::new())
            .map_err(e),
        Op::Link(a, b) => {
            fs::hard_link(root.join(a), root.join(b)).map_err(e)?;
            let m = fs::symlink_metadata(root.join(b)).map_err(e)?;
            Ok(format!("nlink={}", m.nlink()))
        }
        Op::Symlink(t, p) => std::os::unix::fs::symlink(t, root.join(p))
            .map(|()| String::new())
            .map_err(e),
        Op::Chmod(p, m) => {
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(*m)).map_err(e)?;
            let md = fs::metadata(root.join(p)).map_err(e)?;
            Ok(format!("mode={:o}", md.mode() & 0o7777))
        }
        Op::Utimens(p, s, ns) => {
            let ts = rustix::fs::Timespec {
                tv_sec: *s,
                tv_nsec: i64::from(*ns) as _,
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                root.join(p),
                &rustix::fs::Timestamps {
                    last_access: ts,
                    last_modification: ts,
                },
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(rx)?;
            let md = fs::symlink_metadata(root.join(p)).map_err(e)?;
            Ok(format!("mtime={}.{:09}", md.mtime(), md.mtime_nsec()))
        }
        Op::Read(p) => {
            let d = fs::read(root.join(p)).map_err(e)?;
            Ok(format!("read {} bytes {:x}", d.len(), fnv(&d)))
        }
    }
}

#[test]
fn model_randomized() {
    if skip("model_randomized") {
        return;
    }
    let seeds: u64 = std::env::var("HYBOX_COW_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let ops: usize = std::env::var("HYBOX_COW_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let fx = Fx::new();
    // A second namespace re-reads each finished view from disk (no cached state).
    let check_views = Views::new(Arc::new(hybox_fs_layer::events::NoEvents));
    let check_mount = check_views.mount(&fx.tmp.path().join("check")).unwrap();
    let mut stats: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for seed in 1..=seeds {
        let mut rng = Rng::new(seed);
        let base = fx.dir(&format!("seed{seed}"));
        let (model, l1, l2) = (base.join("model"), base.join("l1"), base.join("l2"));
        for d in [&model, &l1, &l2] {
            fs::create_dir_all(d).unwrap();
        }
        let tree = gen_tree(&mut rng, 0);
        let mut ghost = 0;
        materialize(&mut rng, &tree, &model, &l1, &l2, true, &mut ghost);
        let name = format!("s{seed}");
        let v = fx.view(&name, &[&l1, &l2]);
        let (a, b) = (snapshot(&v), snapshot(&model));
        assert!(
            a == b,
            "seed {seed}: initial trees differ:\n{}",
            diff(&a, &b)
        );
        for i in 0..ops {
            let op = gen_op(&mut rng, &model);
            let got = apply(&op, &v);
            let want = apply(&op, &model);
            assert_eq!(got, want, "seed {seed} op {i}: {op:?} (view vs model)");
            let kind = format!("{op:?}")
                .split('(')
                .next()
                .unwrap_or("")
                .to_string();
            let s = stats.entry(kind).or_default();
            if got.is_ok() {
                s.0 += 1;
            } else {
                s.1 += 1;
            }
            if i % 25 == 24 || i + 1 == ops {
                let (a, b) = (snapshot(&v), snapshot(&model));
                assert!(
                    a == b,
                    "seed {seed} after op {i} ({op:?}): trees differ:\n{}",
                    diff(&a, &b)
                );
            }
        }
        check_views
            .insert(
                &name,
                ViewSpec {
                    upper: fx.upper(&name),
                    layers: vec![
                        Arc::new(DirLayer::new(&l1).unwrap()),
                        Arc::new(DirLayer::new(&l2).unwrap()),
                    ],
                    read_only: true,
                },
            )
            .unwrap();
        let (a, b) = (snapshot(&check_mount.path().join(&name)), snapshot(&model));
        assert!(
            a == b,
            "seed {seed}: the upper directory read afresh differs:\n{}",
            diff(&a, &b)
        );
        for e in walk(&fx.upper(&name)) {
            assert!(
                !e.to_string_lossy().contains(".wh..wh.tmp"),
                "seed {seed}: leftover {e:?}"
            );
        }
    }
    drop(check_mount);
    eprintln!("model: {seeds} seeds x {ops} ops, (ok, err) per op: {stats:?}");
}

// ---------------------------------------------------------------------------------------------
// Threads, unmounting, probe

/// A layer whose reads of `slow` take a while.
#[derive(Debug)]
struct SlowLayer {
    inner: DirLayer,
    slow: Mutex<Option<u64>>,
}

impl Layer for SlowLayer {
    fn root(&self) -> u64 {
        self.inner.root()
    }
    fn lookup(&self, dir: u64, name: &std::ffi::OsStr) -> Option<u64> {
        let id = self.inner.lookup(dir, name)?;
        if name == "slow" {
            *self.slow.lock().unwrap() = Some(id);
        }
        Some(id)
    }
    fn attr(&self, node: u64) -> hybox_fs_layer::NodeAttr {
        self.inner.attr(node)
    }
    fn children(&self, dir: u64) -> std::io::Result<Vec<(OsString, u64)>> {
        self.inner.children(dir)
    }
    fn readlink(&self, node: u64) -> std::io::Result<PathBuf> {
        self.inner.readlink(node)
    }
    fn read_at(&self, node: u64, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if *self.slow.lock().unwrap() == Some(node) {
            std::thread::sleep(Duration::from_millis(1500));
        }
        self.inner.read_at(node, offset, buf)
    }
}

#[test]
fn a_slow_read_does_not_block_others() {
    if skip("a_slow_read_does_not_block_others") {
        return;
    }
    let fx = Fx::new();
    let low = fx.dir("low");
    write_file(&low.join("slow"), b"slow data", 0o644);
    for i in 0..50 {
        write_file(&low.join(format!("f{i}")), b"fast", 0o644);
    }
    let layer = Arc::new(SlowLayer {
        inner: DirLayer::new(&low).unwrap(),
        slow: Mutex::new(None),
    });
    fx.views
        .insert(
            "v",
            ViewSpec {
                upper: fx.upper("v"),
                layers: vec![layer],
                read_only: false,
            },
        )
        .unwrap();
    let v = fx.mnt().join("v");
    let p = v.join("slow");
    let started = Instant::now();
    let slow = std::thread::spawn(move || fs::read(p).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    for i in 0..50 {
        assert_eq!(fs::read(v.join(format!("f{i}"))).unwrap(), b"fast");
    }
    fs::write(v.join("new"), b"x").unwrap();
    let fast = t.elapsed();
    assert_eq!(slow.join().unwrap(), b"slow data");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(
        fast < Duration::from_millis(1000),
        "other requests waited for the slow read: {fast:?}"
    );
}

#[test]
fn unmount_while_busy_does_not_hang_and_remount_works() {
    if skip("unmount_while_busy_does_not_hang_and_remount_works") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let views = Views::new(Arc::new(hybox_fs_layer::events::NoEvents));
    let low = tmp.path().join("low");
    write_file(&low.join("f"), b"x", 0o644);
    views
        .insert(
            "v",
            ViewSpec {
                upper: tmp.path().join("up"),
                layers: vec![Arc::new(DirLayer::new(&low).unwrap())],
                read_only: false,
            },
        )
        .unwrap();
    let mnt = tmp.path().join("mnt");
    let m = views.mount(&mnt).unwrap();
    assert!(matches!(
        views.mount(&tmp.path().join("other")),
        Err(hybox_fs_layer::FsError::AlreadyExists(_))
    ));
    let busy = fs::File::open(mnt.join("v/f")).unwrap();
    let t = Instant::now();
    m.unmount().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "unmount took {:?}",
        t.elapsed()
    );
    let mut s = String::new();
    assert!((&busy).read_to_string(&mut s).is_err() || s == "x");
    drop(busy);
    // The same namespace mounts again, with fresh kernel state.
    let m = views.mount(&mnt).unwrap();
    assert_eq!(fs::read(mnt.join("v/f")).unwrap(), b"x");
    fs::write(mnt.join("v/g"), b"y").unwrap();
    drop(m);
    assert_eq!(fs::read(tmp.path().join("up/g")).unwrap(), b"y");
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&*mnt.to_string_lossy())
    );
}

#[test]
#[ignore = "helper run by probe_honours_hybox_no_fuse in a child process"]
fn probe_child() {
    if std::env::var_os("HYBOX_NO_FUSE").is_none() {
        return;
    }
    assert_eq!(cow::probe(), Err("disabled by HYBOX_NO_FUSE".to_string()));
    let views = Views::new(Arc::new(hybox_fs_layer::events::NoEvents));
    let tmp = tempfile::tempdir().unwrap();
    let r = views.mount(&tmp.path().join("mnt"));
    assert!(
        matches!(r, Err(hybox_fs_layer::FsError::FuseUnavailable(_))),
        "{r:?}"
    );
}

#[test]
fn probe_honours_hybox_no_fuse() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe_child", "--ignored"])
        .env("HYBOX_NO_FUSE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

#[test]
fn model_concurrent_subtrees() {
    if skip("model_concurrent_subtrees") {
        return;
    }
    // Four threads run the model test at once, each in its own subtree of one view (sharing
    // the view's namespace lock, inode table and caches).
    let fx = Fx::new();
    let base = fx.dir("conc");
    let (l1, l2) = (base.join("l1"), base.join("l2"));
    let mut models = Vec::new();
    for t in 0..4u64 {
        let mut rng = Rng::new(1000 + t);
        let sub = format!("t{t}");
        let model = base.join("model").join(&sub);
        for d in [&model, &l1.join(&sub), &l2.join(&sub)] {
            fs::create_dir_all(d).unwrap();
        }
        let tree = gen_tree(&mut rng, 0);
        let mut ghost = 0;
        materialize(
            &mut rng,
            &tree,
            &model,
            &l1.join(&sub),
            &l2.join(&sub),
            true,
            &mut ghost,
        );
        models.push((rng, sub, model));
    }
    let v = fx.view("v", &[&l1, &l2]);
    let threads: Vec<_> = models
        .into_iter()
        .map(|(mut rng, sub, model)| {
            let root = v.join(&sub);
            std::thread::spawn(move || {
                for i in 0..300 {
                    let op = gen_op(&mut rng, &model);
                    let got = apply(&op, &root);
                    let want = apply(&op, &model);
                    assert_eq!(got, want, "{sub} op {i}: {op:?} (view vs model)");
                }
                let (a, b) = (snapshot(&root), snapshot(&model));
                assert!(a == b, "{sub}: trees differ:\n{}", diff(&a, &b));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn upper_inside_the_mount_is_refused() {
    if skip("upper_inside_the_mount_is_refused") {
        return;
    }
    let fx = Fx::new();
    let v = fx.view("v", &[]);
    let r = fx.views.insert(
        "bad",
        ViewSpec {
            upper: v.join("nested-upper"),
            layers: Vec::new(),
            read_only: false,
        },
    );
    assert!(
        matches!(r, Err(hybox_fs_layer::FsError::Invalid(_))),
        "{r:?}"
    );
}

#[test]
fn model_over_squashfs_layers() {
    if skip("model_over_squashfs_layers") {
        return;
    }
    // The same model test with the layers written as squashfs images (whiteouts included).
    let fx = Fx::new();
    for seed in 500..505u64 {
        let mut rng = Rng::new(seed);
        let base = fx.dir(&format!("sq{seed}"));
        let (model, l1, l2) = (base.join("model"), base.join("l1"), base.join("l2"));
        for d in [&model, &l1, &l2] {
            fs::create_dir_all(d).unwrap();
        }
        let tree = gen_tree(&mut rng, 0);
        let mut ghost = 0;
        materialize(&mut rng, &tree, &model, &l1, &l2, true, &mut ghost);
        // Neither image is empty (the image module refuses to open an image of an empty tree).
        write_file(&l2.join("hidden"), b"x", 0o644);
        write_file(&l1.join(".wh.hidden"), b"", 0o644);
        let mut layers: Vec<Arc<dyn Layer>> = Vec::new();
        for (dir, img) in [(&l1, base.join("l1.sqfs")), (&l2, base.join("l2.sqfs"))] {
            let out = fs::File::create_new(&img).unwrap();
            hybox_fs_layer::image::write_tree(dir, out, &Default::default(), &|_| {}).unwrap();
            layers.push(hybox_fs_layer::image::Image::open(&img).unwrap());
        }
        let name = format!("sq{seed}");
        fx.views
            .insert(
                &name,
                ViewSpec {
                    upper: fx.upper(&name),
                    layers,
                    read_only: false,
                },
            )
            .unwrap();
        let v = fx.mnt().join(&name);
        let (a, b) = (snapshot(&v), snapshot(&model));
        assert!(
            a == b,
            "seed {seed}: initial trees differ:\n{}",
            diff(&a, &b)
        );
        for i in 0..150 {
            let op = gen_op(&mut rng, &model);
            let got = apply(&op, &v);
            let want = apply(&op, &model);
            assert_eq!(got, want, "seed {seed} op {i}: {op:?} (view vs model)");
        }
        let (a, b) = (snapshot(&v), snapshot(&model));
        assert!(a == b, "seed {seed}: trees differ:\n{}", diff(&a, &b));
    }
}
