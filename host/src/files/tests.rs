//! Functional tests for every workspace operation, on real temp directories.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::files::{EntryKind, FileError, RelPath, Result, Workspace};

/// A temp dir holding `ws/` (the workspace) and `sentinel/` (stands for the rest of the
/// host, which no operation may touch).
pub(super) struct Fixture {
    pub tmp: tempfile::TempDir,
    pub ws: Workspace,
}

/// What we remember about one host path outside the workspace.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Snap {
    Dir(u32),
    File(Vec<u8>, u32),
    Link(PathBuf),
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("create temp dir");
        fs::create_dir(tmp.path().join("ws")).expect("create workspace");
        let sentinel = tmp.path().join("sentinel");
        fs::create_dir_all(sentinel.join("sub")).expect("create sentinel");
        fs::write(sentinel.join("secret.txt"), b"top secret").expect("write sentinel");
        fs::write(sentinel.join("sub/deep.txt"), b"deep").expect("write sentinel");
        let ws = Workspace::open(&tmp.path().join("ws")).expect("open workspace");
        Self { tmp, ws }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("ws")
    }

    pub fn host(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn sentinel(&self) -> PathBuf {
        self.tmp.path().join("sentinel")
    }

    pub fn file(&self, rel: &str, data: &[u8]) {
        let path = self.host(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(path, data).expect("write fixture file");
    }

    pub fn link(&self, rel: &str, target: impl AsRef<Path>) {
        symlink(target, self.host(rel)).expect("create fixture symlink");
    }

    pub fn p(&self, path: &str) -> RelPath {
        self.ws
            .resolve(path, "/workspace")
            .expect("resolvable path")
    }

    /// Everything in the temp dir except the workspace's contents.
    pub fn snapshot_outside(&self) -> BTreeMap<PathBuf, Snap> {
        let mut out = BTreeMap::new();
        snap_walk(self.tmp.path(), Path::new(""), &mut out, &self.root());
        out
    }

    /// Everything in the temp dir, workspace included.
    pub fn snapshot_all(&self) -> BTreeMap<PathBuf, Snap> {
        let mut out = BTreeMap::new();
        snap_walk(self.tmp.path(), Path::new(""), &mut out, Path::new(""));
        out
    }
}

fn snap_walk(dir: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Snap>, skip: &Path) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let mode = meta.permissions().mode();
        if path == skip {
            out.insert(rel, Snap::Dir(mode));
        } else if meta.file_type().is_symlink() {
            out.insert(rel, Snap::Link(fs::read_link(&path).expect("readlink")));
        } else if meta.is_dir() {
            out.insert(rel.clone(), Snap::Dir(mode));
            snap_walk(&path, &rel, out, skip);
        } else {
            out.insert(rel, Snap::File(fs::read(&path).expect("read"), mode));
        }
    }
}

pub(super) fn code<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

#[test]
fn open_missing_root_fails() {
    let fx = Fixture::new();
    let err = Workspace::open(&fx.tmp.path().join("nope")).map(|_| ());
    assert_eq!(code(err), "FILE_NOT_FOUND");
}

#[test]
fn resolve_uses_cwd() {
    let fx = Fixture::new();
    let p = fx.ws.resolve("../b/c", "/workspace/a").expect("inside");
    assert_eq!(p.as_str(), "b/c");
    assert_eq!(p.guest_path(), "/workspace/b/c");
    assert!(!p.is_root());
    assert!(fx.ws.resolve("/workspace", "/").expect("root").is_root());
}

#[test]
fn write_with_parents_then_read() {
    let fx = Fixture::new();
    fx.ws
        .write(&fx.p("a/b/c.txt"), b"hello world", true)
        .expect("write");
    assert_eq!(
        fs::read(fx.host("a/b/c.txt")).expect("host read"),
        b"hello world"
    );

    let data = fx
        .ws
        .read(&fx.p("/workspace/a/b/c.txt"), 1024)
        .expect("read");
    assert_eq!(data.bytes, b"hello world");
    assert_eq!(data.size, 11);
    assert_eq!(data.mime, "text/plain");
    assert!(data.modified.is_some());
    assert_eq!(
        data.mode & 0o600,
        0o600,
        "owner can read and write: {:o}",
        data.mode
    );
    assert_eq!(data.mode & !0o7777, 0);
}

#[test]
fn write_without_parents_needs_existing_dir() {
    let fx = Fixture::new();
    assert_eq!(
        code(fx.ws.write(&fx.p("no/such/f"), b"x", false)),
        "FILE_NOT_FOUND"
    );
    assert!(!fx.host("no").exists());
}

#[test]
fn write_replaces_and_keeps_mode_without_leftovers() {
    let fx = Fixture::new();
    fx.file("f.sh", b"old contents that are longer");
    fs::set_permissions(fx.host("f.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
    fx.ws.write(&fx.p("f.sh"), b"new", false).expect("write");
    assert_eq!(fs::read(fx.host("f.sh")).expect("read"), b"new");
    let mode = fs::metadata(fx.host("f.sh"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o750);
    let names: Vec<_> = fs::read_dir(fx.root())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("f.sh")],
        "no temp files left"
    );
}

#[test]
fn write_strips_special_mode_bits() {
    let fx = Fixture::new();
    fx.file("tool", b"#!/bin/sh\n");
    fs::set_permissions(fx.host("tool"), fs::Permissions::from_mode(0o6755)).expect("chmod");
    fx.ws
        .write(&fx.p("tool"), b"replaced", false)
        .expect("write");
    let mode = fs::metadata(fx.host("tool"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn workspace_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Workspace>();
    assert_send_sync::<RelPath>();
    assert_send_sync::<FileError>();
}

#[test]
fn write_errors() {
    let fx = Fixture::new();
    fx.file("d/x", b"");
    fx.file("plain", b"");
    assert_eq!(code(fx.ws.write(&fx.p("d"), b"x", false)), "IS_DIRECTORY");
    assert_eq!(
        code(fx.ws.write(&fx.p("plain/x"), b"x", false)),
        "NOT_DIRECTORY"
    );
    assert_eq!(
        code(fx.ws.write(&fx.p("plain/x"), b"x", true)),
        "NOT_DIRECTORY"
    );
    assert_eq!(
        code(fx.ws.write(&fx.p("/workspace"), b"x", true)),
        "INVALID_PATH"
    );
    assert_eq!(fs::read(fx.host("plain")).expect("read"), b"");
}

#[test]
fn write_through_inside_symlinks() {
    let fx = Fixture::new();
    fx.file("real/target.txt", b"before");
    fx.link("link.txt", "real/target.txt");
    fx.link("dirlink", "real");
    fx.ws
        .write(&fx.p("link.txt"), b"after", false)
        .expect("write via link");
    assert_eq!(
        fs::read(fx.host("real/target.txt")).expect("read"),
        b"after"
    );
    assert!(
        fs::symlink_metadata(fx.host("link.txt"))
            .expect("lstat")
            .is_symlink()
    );

    let via_link = fx.ws.read(&fx.p("link.txt"), 100).expect("read via link");
    assert_eq!(via_link.bytes, b"after");
    fx.link("chain", "link.txt");
    fx.ws
        .write(&fx.p("chain"), b"chained", false)
        .expect("write via chain");
    assert_eq!(
        fs::read(fx.host("real/target.txt")).expect("read"),
        b"chained"
    );

    fx.ws
        .write(&fx.p("dirlink/new.txt"), b"n", false)
        .expect("write via dir link");
    assert_eq!(fs::read(fx.host("real/new.txt")).expect("read"), b"n");

    fx.link("dangling", "real/created.txt");
    fx.ws
        .write(&fx.p("dangling"), b"c", false)
        .expect("write via dangling link");
    assert_eq!(fs::read(fx.host("real/created.txt")).expect("read"), b"c");

    fx.link("to_dir", "real");
    assert_eq!(
        code(fx.ws.write(&fx.p("to_dir"), b"x", false)),
        "IS_DIRECTORY"
    );
}

#[test]
fn read_limits_and_errors() {
    let fx = Fixture::new();
    fx.file("ten", b"0123456789");
    fx.file("d/x", b"");
    assert_eq!(fx.ws.read(&fx.p("ten"), 10).expect("exact limit").size, 10);
    let err = fx.ws.read(&fx.p("ten"), 9).expect_err("over limit");
    assert_eq!(err.code(), "FILE_TOO_LARGE");
    assert!(matches!(
        err,
        FileError::FileTooLarge {
            size: 10,
            limit: 9,
            ..
        }
    ));
    assert_eq!(code(fx.ws.read(&fx.p("d"), 100)), "IS_DIRECTORY");
    assert_eq!(code(fx.ws.read(&fx.p("/workspace"), 100)), "IS_DIRECTORY");
    assert_eq!(code(fx.ws.read(&fx.p("missing"), 100)), "FILE_NOT_FOUND");
    assert_eq!(code(fx.ws.read(&fx.p("ten/x"), 100)), "NOT_DIRECTORY");
    assert_eq!(
        fx.ws.read(&fx.p("ten"), u64::MAX).expect("no limit").bytes,
        b"0123456789"
    );
}

#[test]
fn read_refuses_fifo_without_blocking() {
    let fx = Fixture::new();
    let status = std::process::Command::new("mkfifo")
        .arg(fx.host("pipe"))
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    assert_eq!(code(fx.ws.read(&fx.p("pipe"), 100)), "INVALID_PATH");
    let listed = fx.ws.list(&fx.p("."), false, 10).expect("list");
    assert_eq!(listed[0].kind, EntryKind::Other);
}

#[test]
fn read_guesses_mime() {
    let fx = Fixture::new();
    fx.file("a.json", b"{}");
    fx.file("b.png", b"\x89PNG");
    fx.file("Makefile", b"all:\n");
    fx.file("blob", b"\xff\xfe\x00");
    fx.file("weird.zzqx", b"text");
    let mime = |p: &str| fx.ws.read(&fx.p(p), 100).expect("read").mime;
    assert_eq!(mime("a.json"), "application/json");
    assert_eq!(mime("b.png"), "image/png");
    assert_eq!(mime("Makefile"), "text/plain");
    assert_eq!(mime("blob"), "application/octet-stream");
    assert_eq!(mime("weird.zzqx"), "application/octet-stream");
}

#[test]
fn mkdir_variants() {
    let fx = Fixture::new();
    fx.ws.mkdir(&fx.p("one"), false).expect("mkdir");
    assert!(fx.host("one").is_dir());
    assert_eq!(code(fx.ws.mkdir(&fx.p("one"), false)), "FILE_EXISTS");
    fx.ws.mkdir(&fx.p("one"), true).expect("mkdir -p existing");
    assert_eq!(code(fx.ws.mkdir(&fx.p("x/y"), false)), "FILE_NOT_FOUND");
    fx.ws.mkdir(&fx.p("x/y/z"), true).expect("mkdir -p");
    assert!(fx.host("x/y/z").is_dir());
    fx.file("f", b"");
    assert_eq!(code(fx.ws.mkdir(&fx.p("f"), true)), "NOT_DIRECTORY");
    assert_eq!(code(fx.ws.mkdir(&fx.p("f"), false)), "FILE_EXISTS");
    assert_eq!(code(fx.ws.mkdir(&fx.p("f/g"), true)), "NOT_DIRECTORY");
    assert_eq!(code(fx.ws.mkdir(&fx.p("/workspace"), false)), "FILE_EXISTS");
    fx.ws.mkdir(&fx.p("/workspace"), true).expect("root exists");
}

#[test]
fn delete_variants() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    fx.file("full/a/b", b"x");
    fx.file("keep/k", b"k");
    fs::create_dir(fx.host("empty")).expect("mkdir");
    fx.link("full/a/link_to_keep", "../../keep");
    fx.link("flink", "keep/k");

    fx.ws.delete(&fx.p("f"), false).expect("delete file");
    assert!(!fx.host("f").exists());
    fx.ws
        .delete(&fx.p("empty"), false)
        .expect("delete empty dir");
    assert!(!fx.host("empty").exists());
    assert_eq!(
        code(fx.ws.delete(&fx.p("full"), false)),
        "DIRECTORY_NOT_EMPTY"
    );
    assert!(fx.host("full/a/b").exists());
    fx.ws.delete(&fx.p("full"), true).expect("delete recursive");
    assert!(!fx.host("full").exists());
    assert_eq!(
        fs::read(fx.host("keep/k")).expect("link target survives"),
        b"k"
    );

    fx.ws.delete(&fx.p("flink"), false).expect("delete symlink");
    assert!(fs::symlink_metadata(fx.host("flink")).is_err());
    assert!(fx.host("keep/k").exists());

    assert_eq!(code(fx.ws.delete(&fx.p("missing"), true)), "FILE_NOT_FOUND");
    assert_eq!(
        code(fx.ws.delete(&fx.p("/workspace"), true)),
        "INVALID_PATH"
    );
    assert!(fx.root().is_dir());
}

#[test]
fn rename_variants() {
    let fx = Fixture::new();
    fx.file("a", b"A");
    fx.file("b", b"B");
    fx.file("d/inner", b"I");
    fx.link("l", "a");

    fx.ws.rename(&fx.p("a"), &fx.p("a2")).expect("rename file");
    assert_eq!(fs::read(fx.host("a2")).expect("read"), b"A");
    fx.ws.rename(&fx.p("a2"), &fx.p("b")).expect("replace file");
    assert_eq!(fs::read(fx.host("b")).expect("read"), b"A");
    fx.ws.rename(&fx.p("d"), &fx.p("e")).expect("rename dir");
    assert_eq!(fs::read(fx.host("e/inner")).expect("read"), b"I");
    fx.ws.rename(&fx.p("l"), &fx.p("l2")).expect("rename link");
    assert_eq!(
        fs::read_link(fx.host("l2")).expect("still a link"),
        Path::new("a")
    );

    assert_eq!(
        code(fx.ws.rename(&fx.p("nope"), &fx.p("x"))),
        "FILE_NOT_FOUND"
    );
    assert_eq!(
        code(fx.ws.rename(&fx.p("b"), &fx.p("no/dir/x"))),
        "FILE_NOT_FOUND"
    );
    assert_eq!(
        code(fx.ws.rename(&fx.p("e"), &fx.p("e/sub"))),
        "INVALID_PATH"
    );
    assert_eq!(code(fx.ws.rename(&fx.p("b"), &fx.p("e"))), "IS_DIRECTORY");
    assert_eq!(
        code(fx.ws.rename(&fx.p("b"), &fx.p("/workspace"))),
        "INVALID_PATH"
    );
    assert!(fx.host("b").exists());
}

#[test]
fn move_variants() {
    let fx = Fixture::new();
    fx.file("a.txt", b"A");
    fx.file("b.txt", b"B");
    fx.file("dir/x", b"");
    fx.file("real/y", b"");
    fx.link("dirlink", "real");

    let landed = fx
        .ws
        .move_path(&fx.p("a.txt"), &fx.p("dir"))
        .expect("move into dir");
    assert_eq!(landed.guest_path(), "/workspace/dir/a.txt");
    assert_eq!(fs::read(fx.host("dir/a.txt")).expect("read"), b"A");
    fx.ws
        .move_path(&fx.p("dir/a.txt"), &fx.p("new/deep/renamed.txt"))
        .expect("move creating parents");
    assert_eq!(
        fs::read(fx.host("new/deep/renamed.txt")).expect("read"),
        b"A"
    );
    fx.ws
        .move_path(&fx.p("b.txt"), &fx.p("dirlink"))
        .expect("move into linked dir");
    assert_eq!(fs::read(fx.host("real/b.txt")).expect("read"), b"B");
    assert!(
        fs::symlink_metadata(fx.host("dirlink"))
            .expect("lstat")
            .is_symlink()
    );
    fx.ws
        .move_path(&fx.p("real/b.txt"), &fx.p("/workspace"))
        .expect("move to root");
    assert_eq!(fs::read(fx.host("b.txt")).expect("read"), b"B");

    assert_eq!(
        code(fx.ws.move_path(&fx.p("dir"), &fx.p("dir"))),
        "INVALID_PATH"
    );
    assert_eq!(
        code(fx.ws.move_path(&fx.p("dir"), &fx.p("dir/sub/x"))),
        "INVALID_PATH"
    );
    assert_eq!(
        code(fx.ws.move_path(&fx.p("missing"), &fx.p("dir"))),
        "FILE_NOT_FOUND"
    );
    assert!(
        !fx.host("dir/sub").exists(),
        "no parents created for a refused move"
    );
    assert_eq!(
        code(fx.ws.move_path(&fx.p("/workspace"), &fx.p("dir"))),
        "INVALID_PATH"
    );
}

#[test]
fn list_recursive_kinds_sizes() {
    let fx = Fixture::new();
    fx.file("a.txt", b"12345");
    fx.file("sub/b.bin", b"xy");
    fx.file("sub/deeper/c", b"");
    fx.file("other/hidden", b"h");
    fx.link("sub/link", "../other");
    fs::set_permissions(fx.host("a.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");

    let flat = fx.ws.list(&fx.p("/workspace"), false, 100).expect("list");
    let paths: Vec<_> = flat.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/workspace/a.txt", "/workspace/other", "/workspace/sub"]
    );

    let all = fx.ws.list(&fx.p("."), true, 100).expect("list -r");
    let summary: Vec<_> = all
        .iter()
        .map(|e| (e.path.as_str(), e.name.as_str(), e.kind))
        .collect();
    assert_eq!(
        summary,
        [
            ("/workspace/a.txt", "a.txt", EntryKind::File),
            ("/workspace/other", "other", EntryKind::Directory),
            ("/workspace/other/hidden", "hidden", EntryKind::File),
            ("/workspace/sub", "sub", EntryKind::Directory),
            ("/workspace/sub/b.bin", "b.bin", EntryKind::File),
            ("/workspace/sub/deeper", "deeper", EntryKind::Directory),
            ("/workspace/sub/deeper/c", "c", EntryKind::File),
            ("/workspace/sub/link", "link", EntryKind::Symlink),
        ]
    );
    assert_eq!(all[0].size, 5);
    assert_eq!(all[0].mode, 0o640);
    assert_eq!(all[4].size, 2);
    assert!(all.iter().all(|e| e.modified.is_some()));

    let sub = fx.ws.list(&fx.p("sub"), true, 100).expect("list sub");
    assert_eq!(sub.len(), 4, "does not descend through sub/link: {sub:?}");
    let via_link = fx
        .ws
        .list(&fx.p("sub/link"), false, 100)
        .expect("list via link");
    assert_eq!(via_link[0].path, "/workspace/sub/link/hidden");
}

#[test]
fn list_limits_and_errors() {
    let fx = Fixture::new();
    for i in 0..5 {
        fx.file(&format!("d/f{i}"), b"");
    }
    assert_eq!(fx.ws.list(&fx.p("."), true, 6).expect("at limit").len(), 6);
    let err = fx.ws.list(&fx.p("."), true, 5).expect_err("over limit");
    assert_eq!(err.code(), "TOO_MANY_ENTRIES");
    assert_eq!(code(fx.ws.list(&fx.p("d/f0"), false, 10)), "NOT_DIRECTORY");
    assert_eq!(code(fx.ws.list(&fx.p("nope"), false, 10)), "FILE_NOT_FOUND");
    assert!(fx.ws.list(&fx.p("d"), false, 0).is_err());
    fs::create_dir(fx.host("empty")).expect("mkdir");
    assert!(
        fx.ws
            .list(&fx.p("empty"), true, 0)
            .expect("empty")
            .is_empty()
    );
}

#[test]
fn exists_and_stat() {
    let fx = Fixture::new();
    fx.file("f", b"abc");
    fx.link("dangling", "nowhere");
    assert!(fx.ws.exists(&fx.p("f")).expect("exists"));
    assert!(fx.ws.exists(&fx.p("/workspace")).expect("root"));
    assert!(fx.ws.exists(&fx.p("dangling")).expect("link itself"));
    assert!(!fx.ws.exists(&fx.p("missing")).expect("missing"));
    assert!(!fx.ws.exists(&fx.p("f/under")).expect("under a file"));

    let st = fx.ws.stat(&fx.p("f")).expect("stat");
    assert_eq!(
        (st.name.as_str(), st.kind, st.size),
        ("f", EntryKind::File, 3)
    );
    assert_eq!(st.path, "/workspace/f");
    let link = fx.ws.stat(&fx.p("dangling")).expect("stat link");
    assert_eq!(link.kind, EntryKind::Symlink);
    let root = fx.ws.stat(&fx.p("/workspace")).expect("stat root");
    assert_eq!(
        (root.name.as_str(), root.kind),
        ("workspace", EntryKind::Directory)
    );
    assert_eq!(code(fx.ws.stat(&fx.p("missing"))), "FILE_NOT_FOUND");
}

#[test]
fn entry_kind_serde_names() {
    use serde::Deserialize;
    use serde::de::value::{Error, StrDeserializer};
    for (name, kind) in [
        ("file", EntryKind::File),
        ("directory", EntryKind::Directory),
        ("symlink", EntryKind::Symlink),
        ("other", EntryKind::Other),
    ] {
        let parsed = EntryKind::deserialize(StrDeserializer::<Error>::new(name));
        assert_eq!(parsed.expect("known kind name"), kind);
    }
}
