//! File API end to end: every `/files/...` operation over HTTP, its stable error codes,
//! hostile paths (lexical traversal, percent-encoding, symlinks planted in the workspace as a
//! guest would) and isolation between sandboxes. A refused operation must change nothing,
//! inside the workspace or out.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use hybox_tests::{Answer, Server};

const OUT: &str = "PATH_OUTSIDE_WORKSPACE";
const INV: &str = "INVALID_PATH";
const NF: &str = "FILE_NOT_FOUND";

/// One sandbox of a server, with the file API as methods.
struct Sb<'a> {
    s: &'a Server,
    id: String,
}

impl<'a> Sb<'a> {
    /// Creates the sandbox `id`.
    fn new(s: &'a Server, id: &str) -> Self {
        Self {
            s,
            id: s.sandbox(id),
        }
    }

    /// A handle on a sandbox that may not exist.
    fn named(s: &'a Server, id: &str) -> Self {
        Self {
            s,
            id: id.to_owned(),
        }
    }

    /// `POST .../files/{name}`.
    fn call(&self, name: &str, body: Value) -> Answer {
        let url = format!("/v1/sandboxes/{}/files/{name}", self.id);
        self.s.post(&url, &body)
    }

    /// `POST .../files/{name}` with just `{path}`.
    fn on(&self, name: &str, path: &str) -> Answer {
        self.call(name, json!({ "path": path }))
    }

    /// `POST .../files/{name}` with `{path, encoding}`.
    fn on_enc(&self, name: &str, path: &str, encoding: &str) -> Answer {
        self.call(name, json!({ "path": path, "encoding": encoding }))
    }

    /// `POST .../files/{name}` with `{path, recursive}`.
    fn on_r(&self, name: &str, path: &str, recursive: bool) -> Answer {
        self.call(name, json!({ "path": path, "recursive": recursive }))
    }

    fn write(&self, path: &str, content: &str) -> Answer {
        self.call("write", json!({ "path": path, "content": content }))
    }

    fn read(&self, path: &str) -> Answer {
        self.on("read", path)
    }

    /// The `content` of a successful read.
    fn text(&self, path: &str) -> Value {
        self.read(path).ok()["content"].clone()
    }

    fn exists(&self, path: &str) -> Value {
        self.on("exists", path).ok()["exists"].clone()
    }

    /// `GET .../files/raw?{query}`, the query sent as given.
    fn get_q(&self, query: &str) -> Answer {
        let url = format!("/v1/sandboxes/{}/files/raw?{query}", self.id);
        self.s.get(&url)
    }

    fn put_q(&self, query: &str, body: &[u8]) -> Answer {
        let url = format!("/v1/sandboxes/{}/files/raw?{query}", self.id);
        self.s.put_bytes(&url, body)
    }

    fn raw_get(&self, path: &str) -> Answer {
        self.get_q(&format!("path={}", enc(path)))
    }

    fn raw_put(&self, path: &str, body: &[u8]) -> Answer {
        self.put_q(&format!("path={}", enc(path)), body)
    }

    /// The host path behind `/workspace/{rel}`.
    fn host(&self, rel: &str) -> PathBuf {
        self.s.workspace(&self.id).join(rel)
    }

    /// Reads a host file of the workspace.
    fn host_bytes(&self, rel: &str) -> Vec<u8> {
        fs::read(self.host(rel)).unwrap_or_else(|e| panic!("host file {rel}: {e}"))
    }
}

/// Assertions on answers.
trait Check {
    /// Asserts a 200 and returns the JSON body.
    fn ok(&self) -> &Value;
    /// Asserts a 200 whose body has every top-level field of `want`; returns the body.
    fn has(&self, want: Value) -> &Value;
    /// Asserts an error status and stable code.
    fn fails(&self, status: u16, code: &str);
}

impl Check for Answer {
    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{:?}", self.json);
        &self.json
    }

    #[track_caller]
    fn has(&self, want: Value) -> &Value {
        let body = self.ok();
        for (k, v) in want.as_object().expect("want is an object") {
            assert_eq!(&body[k], v, "field {k} of {body}");
        }
        body
    }

    #[track_caller]
    fn fails(&self, status: u16, code: &str) {
        let got = (self.status, self.json["code"].as_str());
        assert_eq!(got, (status, Some(code)), "{:?}", self.json);
    }
}

/// The guest path of `rel`.
fn path(rel: &str) -> String {
    format!("/workspace/{rel}")
}

/// Percent-encodes all but unreserved characters, for the raw `?path=` query.
fn enc(path: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let one = |b: u8| {
        if keep(b) {
            char::from(b).to_string()
        } else {
            format!("%{b:02X}")
        }
    };
    path.bytes().map(one).collect()
}

fn status_of(code: &str) -> u16 {
    if code == OUT { 403 } else { 400 }
}

/// `2026-11-22T00:07:05.123Z`-shaped (RFC 3339, UTC).
fn is_rfc3339(v: &Value) -> bool {
    let Some(t) = v.as_str() else { return false };
    let shape = "dddd-dd-ddTdd:dd:dd";
    let fits = |(c, s): (u8, u8)| {
        if s == b'd' {
            c.is_ascii_digit()
        } else {
            c == s
        }
    };
    t.len() > shape.len()
        && t.starts_with("20")
        && t.ends_with('Z')
        && t.bytes().zip(shape.bytes()).all(fits)
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes()[3]
    };
    (0..len).map(|_| next()).collect()
}

fn e_name_starts(p: &Path, prefix: &str) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
}

/// Every entry under `root`: file contents, link targets, or a dir marker.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    // The server's own pool of spare interpreters changes by itself: its slot folders, and with
    // copy-on-write workspaces the slots' views (`mnt/.slot-N`) and every view's upper layer
    // (`uppers/`; the workspaces themselves are compared through their views in `mnt/`).
    let skipped = [root.join("pool"), root.join("uppers")];
    let mnt = root.join("mnt");
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).expect("read_dir in snapshot") {
            let p = e.expect("dir entry").path();
            let slot = dir == mnt && e_name_starts(&p, ".slot-");
            if skipped.contains(&p) || slot {
                continue;
            }
            let meta = fs::symlink_metadata(&p).expect("lstat in snapshot");
            let v = if meta.is_symlink() {
                let target = fs::read_link(&p).expect("readlink");
                format!("link:{}", target.display()).into_bytes()
            } else if meta.is_dir() {
                todo.push(p.clone());
                b"dir".to_vec()
            } else {
                fs::read(&p).expect("read in snapshot")
            };
            out.insert(p, v);
        }
    }
    out
}

#[test]
fn write_read_and_raw_round_trip_text_and_binary() {
    let s = Server::start();
    let b = Sb::new(&s, "box");
    let text = "héllo\nworld";
    let p = "/workspace/notes/deep/hello.txt";
    b.write("notes/deep/hello.txt", text)
        .has(json!({"path": p, "size": 12, "success": true}));
    assert_eq!(b.host_bytes("notes/deep/hello.txt"), text.as_bytes());
    let r = b.read("notes/deep/hello.txt");
    let j = r.has(json!({"path": p, "content": text, "encoding": "utf-8", "size": 12}));
    assert_eq!(j["mimeType"], "text/plain");
    assert!(is_rfc3339(&j["modifiedAt"]), "{j}");

    // Binary with NUL and 0xFF, through base64; parents created.
    let bin: &[u8] = &[0x89, b'P', b'N', b'G', 0, 0xFF, 0, 1, 0xFE, 0xFF];
    let b64 = B64.encode(bin);
    let body = json!({"path": "img/x/pic.png", "content": b64, "encoding": "base64"});
    let w = b.call("write", body);
    w.has(json!({"path": "/workspace/img/x/pic.png", "size": 10}));
    assert_eq!(b.host_bytes("img/x/pic.png"), bin);
    let r = b.on_enc("read", "img/x/pic.png", "base64");
    r.has(json!({"content": b64, "encoding": "base64", "size": 10, "mimeType": "image/png"}));
    // Asked for as text, binary comes back as base64 and says so.
    for e in [json!(null), json!("utf-8")] {
        let r = b.call("read", json!({"path": "img/x/pic.png", "encoding": e}));
        r.has(json!({"content": b64, "encoding": "base64"}));
    }
    let g = b.raw_get("/workspace/img/x/pic.png");
    assert_eq!((g.status, g.content_type.as_str()), (200, "image/png"));
    assert_eq!(g.bytes, bin);
    let g = b.raw_get("notes/deep/hello.txt");
    assert!(g.content_type.starts_with("text/plain"), "{g:?}");
    assert_eq!(g.bytes, text.as_bytes());

    // 1 MiB of noise through raw PUT, back through raw GET and JSON read.
    let big = noise(1 << 20);
    let put = b.raw_put("blob/data.bin", &big);
    put.has(json!({"path": "/workspace/blob/data.bin", "size": 1 << 20, "success": true}));
    assert!(b.host_bytes("blob/data.bin") == big, "host bytes differ");
    let g = b.raw_get("blob/data.bin");
    assert!(g.status == 200 && g.bytes == big, "raw GET differs");
    assert_eq!(g.content_type, "application/octet-stream");
    let r = b.on_enc("read", "blob/data.bin", "base64");
    let back = B64.decode(r.ok()["content"].as_str().expect("content"));
    assert!(back.expect("base64") == big, "JSON read differs");

    // Overwriting replaces the whole file.
    b.raw_put("blob/data.bin", b"short").ok();
    assert_eq!(b.host_bytes("blob/data.bin"), b"short");
    b.write("notes/deep/hello.txt", "x").ok();
    assert_eq!(b.text("notes/deep/hello.txt"), "x");
}

#[test]
fn mkdir_delete_rename_and_move() {
    let s = Server::start();
    let b = Sb::new(&s, "box");
    b.on_r("mkdir", "a/b/c", true)
        .has(json!({"path": "/workspace/a/b/c"}));
    assert!(b.host("a/b/c").is_dir());
    b.on_r("mkdir", "a/b/c", true).ok(); // like mkdir -p: an existing directory is fine
    b.on_r("mkdir", "x/y", false).fails(404, NF);
    assert!(!b.host("x").exists());
    b.on_r("mkdir", "x", false).ok();
    b.on_r("mkdir", "x", false).fails(409, "FILE_EXISTS");

    b.write("a/b/c/f.txt", "f").ok();
    b.on_r("delete", "a", false)
        .fails(409, "DIRECTORY_NOT_EMPTY");
    assert!(b.host("a/b/c/f.txt").is_file());
    b.on("delete", "a/b/c/f.txt").ok();
    assert!(!b.host("a/b/c/f.txt").exists() && b.host("a/b/c").is_dir());
    b.write("a/b/g.txt", "g").ok();
    b.on_r("delete", "a", true).ok();
    assert!(!b.host("a").exists());
    b.on("delete", "x").ok();
    assert!(!b.host("x").exists());

    // Rename, under each accepted spelling of the two fields.
    b.write("r0.txt", "renamed").ok();
    #[rustfmt::skip]
    let spellings = [("oldPath", "newPath"), ("from", "to"), ("sourcePath", "destinationPath")];
    for (i, (f, t)) in spellings.iter().enumerate() {
        let (from, to) = (format!("r{i}.txt"), format!("/workspace/r{}.txt", i + 1));
        let a = b.call("rename", json!({ *f: from, *t: to }));
        a.has(json!({"from": format!("/workspace/{from}"), "to": to, "success": true}));
        assert!(!b.host(&from).exists());
    }
    assert_eq!(b.host_bytes("r3.txt"), b"renamed");

    // Move into an existing directory keeps the name; to a new path creates parents.
    b.on("mkdir", "dest").ok();
    b.write("m.txt", "moved").ok();
    b.call("move", json!({"from": "m.txt", "to": "dest"}))
        .has(json!({"success": true}));
    assert_eq!(b.host_bytes("dest/m.txt"), b"moved");
    assert!(!b.host("m.txt").exists());
    let a = b.call("move", json!({"from": "dest/m.txt", "to": "n/e/w.txt"}));
    a.has(json!({"from": "/workspace/dest/m.txt", "to": "/workspace/n/e/w.txt"}));
    assert!(b.host("n/e/w.txt").is_file() && !b.host("dest/m.txt").exists());
    b.call("move", json!({"from": "n", "to": "n/e"}))
        .fails(400, INV);
    assert!(b.host("n/e/w.txt").is_file());
    // Replacing: a file over a non-empty directory, a directory over a non-empty one.
    b.write("full/x", "x").ok();
    let a = b.call("rename", json!({"from": "n/e/w.txt", "to": "full"}));
    a.fails(409, "IS_DIRECTORY");
    b.call("rename", json!({"from": "n", "to": "full"}))
        .fails(409, "DIRECTORY_NOT_EMPTY");
    assert!(b.host("n/e/w.txt").is_file() && b.host("full/x").is_file());
}

#[test]
fn move_into_directory_reports_the_final_path() {
    let s = Server::start();
    let b = Sb::new(&s, "box");
    b.on("mkdir", "dest").ok();
    b.write("m.txt", "moved").ok();
    let a = b.call("move", json!({"from": "m.txt", "to": "dest"}));
    assert!(b.host("dest/m.txt").is_file());
    a.has(json!({"to": "/workspace/dest/m.txt"}));
}

#[test]
fn list_exists_and_stat_describe_entries() {
    let s = Server::start();
    let b = Sb::new(&s, "box");
    #[rustfmt::skip]
    let tree = [("l/b.txt", "bbb"), ("l/a.txt", "a"), ("l/sub/c.txt", "cc"), ("l/sub/d/e", "")];
    for (p, c) in tree {
        b.write(p, c).ok();
    }
    fs::set_permissions(b.host("l/b.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let a = b.on("list", "l");
    let j = a.has(json!({"path": "/workspace/l", "count": 3}));
    let files = j["files"].as_array().expect("files");
    let names: Vec<&str> = files.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["a.txt", "b.txt", "sub"]);
    let want_b = json!({"path": "/workspace/l/b.txt", "type": "file", "size": 3, "mode": "600"});
    for (k, v) in want_b.as_object().expect("object") {
        assert_eq!(&files[1][k], v, "{k}");
    }
    assert_eq!(files[2]["type"], "directory");
    let typed = |f: &Value| is_rfc3339(&f["modifiedAt"]) && f["mode"].is_string();
    assert!(files.iter().all(typed), "{j}");

    let a = b.on_r("list", "/workspace/l", true);
    let all = a.ok()["files"].as_array().expect("files");
    let paths: Vec<&str> = all.iter().filter_map(|f| f["path"].as_str()).collect();
    let want = ["a.txt", "b.txt", "sub", "sub/c.txt", "sub/d", "sub/d/e"];
    assert_eq!(paths, want.map(|p| format!("/workspace/l/{p}")));
    let a = b.on("list", "/workspace");
    let j = a.has(json!({"path": "/workspace", "count": 1}));
    assert_eq!(j["files"][0]["name"], "l");

    assert_eq!(b.exists("l/a.txt"), true);
    assert_eq!(b.exists("/workspace/l/sub"), true);
    assert_eq!(b.exists("nope"), false);
    assert_eq!(b.exists("nope/deeper"), false);
    assert_eq!(b.exists("l/a.txt/under-a-file"), false);

    let a = b.on("stat", "l/sub/c.txt");
    let j = a.has(json!({"name": "c.txt", "path": "/workspace/l/sub/c.txt", "type": "file"}));
    assert_eq!(j["size"], 2);
    assert!(is_rfc3339(&j["modifiedAt"]), "{j}");
    b.on("stat", "/workspace")
        .has(json!({"name": "workspace", "type": "directory"}));
    b.on("stat", "l/none").fails(404, NF);
}

#[test]
fn absolute_and_relative_paths_name_the_same_file() {
    let s = Server::start();
    let b = Sb::new(&s, "box");
    b.write("/workspace/p/q.txt", "same").ok();
    #[rustfmt::skip]
    let forms = [
        "/workspace/p/q.txt", "p/q.txt", "./p/q.txt", "p/./r/../q.txt", "//workspace//p/q.txt",
        "/./workspace/p/q.txt", "/workspace/p/../p/q.txt",
    ];
    let first = b.on("stat", forms[0]).ok().clone();
    for f in forms {
        b.read(f)
            .has(json!({"content": "same", "path": "/workspace/p/q.txt"}));
        assert_eq!(b.on("stat", f).ok(), &first, "{f}");
        assert_eq!(b.raw_get(f).bytes, b"same", "{f}");
    }
    b.write("p/q.txt", "changed").ok();
    assert_eq!(b.text("/workspace/p/q.txt"), "changed");
    let entries = fs::read_dir(b.host("")).expect("workspace").count();
    assert_eq!(entries, 1, "one tree, no duplicates");
}

#[test]
fn errors_have_stable_codes_and_statuses() {
    let s = Server::start();
    let b = Sb::new(&s, "box");
    b.write("f.txt", "file").ok();
    b.on("mkdir", "dir").ok();
    let (isdir, notdir) = ("IS_DIRECTORY", "NOT_DIRECTORY");
    #[rustfmt::skip]
    let cases = [
        (b.read("missing.txt"), 404, NF),
        (b.raw_get("missing.txt"), 404, NF),
        (b.on("delete", "missing.txt"), 404, NF),
        (b.call("rename", json!({"from": "missing.txt", "to": "x.txt"})), 404, NF),
        (b.call("move", json!({"from": "missing.txt", "to": "dir"})), 404, NF),
        (b.on("list", "missing"), 404, NF),
        (b.read("dir"), 409, isdir),
        (b.raw_get("/workspace/dir"), 409, isdir),
        (b.write("dir", "x"), 409, isdir),
        (b.write("f.txt/child", "x"), 409, notdir),
        (b.raw_put("f.txt/child", b"x"), 409, notdir),
        (b.read("f.txt/child"), 409, notdir),
        (b.on_r("mkdir", "f.txt/a/b", true), 409, notdir),
        (b.on("list", "f.txt"), 409, notdir),
        // The root cannot be deleted, written or renamed.
        (b.on_r("delete", "/workspace", true), 400, INV),
        (b.write("/workspace", "x"), 400, INV),
        (b.call("rename", json!({"from": ".", "to": "r"})), 400, INV),
        (b.on("frobnicate", "f.txt"), 404, "NOT_FOUND"),
        (s.get("/v1/sandboxes/box/files/read"), 405, "METHOD_NOT_ALLOWED"),
        (s.delete("/v1/sandboxes/box/files/raw?path=f.txt"), 405, "METHOD_NOT_ALLOWED"),
        (Sb::named(&s, "%2e%2e").read("f.txt"), 400, "INVALID_SANDBOX_ID"),
    ];
    for (a, status, code) in &cases {
        a.fails(*status, code);
    }

    #[rustfmt::skip]
    let bad = [
        b.call("read", json!({"path": "f.txt", "encoding": "latin1"})),
        b.call("write", json!({"path": "g.txt", "content": "x", "encoding": "rot13"})),
        b.call("write", json!({"path": "g.txt", "content": "x", "mode": "777"})),
        b.call("read", json!({"path": "f.txt", "follow": true})),
        b.call("rename", json!({"from": "f.txt", "to": "g.txt", "force": true})),
        b.call("write", json!({"path": "g.txt", "content": "!!no", "encoding": "base64"})),
        b.call("write", json!({"content": "no path"})),
        b.call("read", json!({"path": 7})),
        b.call("write", json!("a JSON string where an object belongs")),
        s.put_bytes("/v1/sandboxes/box/files/raw", b"x"),
        s.get("/v1/sandboxes/box/files/raw"),
        b.get_q("other=f.txt"),
    ];
    bad.iter().for_each(|a| a.fails(400, "INVALID_REQUEST"));
    assert!(!b.host("g.txt").exists(), "refused writes wrote nothing");

    let ghost = Sb::named(&s, "ghost");
    let gone = [ghost.read("f"), ghost.write("f", "x"), ghost.raw_get("f")];
    gone.iter().for_each(|a| a.fails(404, "SANDBOX_NOT_FOUND"));
    ghost.raw_put("f", b"x").fails(404, "SANDBOX_NOT_FOUND");
    assert!(!s.data_dir.join("sandboxes/ghost").exists());
    assert_eq!(b.host_bytes("f.txt"), b"file");
}

/// One operation of the API aimed at a hostile path.
#[derive(Debug, Clone, Copy)]
#[rustfmt::skip]
enum Op {
    Read, Write, List, Delete, Mkdir, MkdirP, RenameFrom, RenameTo, MoveFrom, MoveTo, Exists,
    Stat, RawGet, RawPut,
}

#[rustfmt::skip]
const ALL_OPS: [Op; 14] = [
    Op::Read, Op::Write, Op::List, Op::Delete, Op::Mkdir, Op::MkdirP, Op::RenameFrom,
    Op::RenameTo, Op::MoveFrom, Op::MoveTo, Op::Exists, Op::Stat, Op::RawGet, Op::RawPut,
];

fn attempt(b: &Sb<'_>, op: Op, path: &str) -> Answer {
    match op {
        Op::Read => b.read(path),
        Op::Write => b.write(path, "pwned"),
        Op::List => b.on_r("list", path, true),
        Op::Delete => b.on_r("delete", path, true),
        Op::Mkdir => b.on("mkdir", path),
        Op::MkdirP => b.on_r("mkdir", path, true),
        Op::RenameFrom => b.call("rename", json!({"oldPath": path, "newPath": "stolen.txt"})),
        Op::RenameTo => b.call("rename", json!({"oldPath": "a.txt", "newPath": path})),
        Op::MoveFrom => b.call("move", json!({"from": path, "to": "stolen"})),
        Op::MoveTo => b.call("move", json!({"from": "a.txt", "to": path})),
        Op::Exists => b.on("exists", path),
        Op::Stat => b.on("stat", path),
        Op::RawGet => b.raw_get(path),
        Op::RawPut => b.raw_put(path, b"pwned"),
    }
}

/// Paths refused by lexical resolution alone, with their code; each is tried with every op.
fn lexical_cases() -> Vec<(String, &'static str)> {
    #[rustfmt::skip]
    let outside = [
        "..", "../x", "../../etc/passwd", "/etc/passwd", "/workspace/../etc/passwd",
        "/workspace/a/../../x", "//etc/passwd", "/workspacex/a", "/workspace2", "/workspace2/a.txt",
        "/tmp/x", "/", "a/./../..", "/../workspace/a.txt", "./../x", "~/../../x",
        "/sandboxes/other/workspace/secret.txt",
    ];
    #[rustfmt::skip]
    let invalid = [
        "a\0b".to_owned(), "/workspace/a.txt\0.png".to_owned(), "a".repeat(5000),
        "d/".repeat(2500), "n".repeat(256), String::new(),
    ];
    let mut v: Vec<(String, &str)> = outside.iter().map(|p| ((*p).to_owned(), OUT)).collect();
    v.extend(invalid.into_iter().map(|p| (p, INV)));
    v
}

/// (op, path, code) through the links [`plant_links`] makes. Mutating ops aim only at host
/// files the test owns (the data dir, its sentinel), never at `/etc`.
#[rustfmt::skip]
const LINK_CASES: &[(Op, &str, &str)] = &[
    (Op::Read, "passwd", OUT), (Op::RawGet, "passwd", OUT), (Op::Stat, "etc/passwd", OUT),
    (Op::Exists, "etc/passwd", OUT), (Op::Read, "etc/passwd", OUT), (Op::RawGet, "etc/passwd", OUT),
    (Op::List, "etc", OUT), (Op::List, "up", OUT), (Op::Read, "up/sentinel.txt", OUT),
    (Op::Write, "up/sentinel.txt", OUT), (Op::RawPut, "up/sentinel.txt", OUT),
    (Op::Delete, "up/sentinel.txt", OUT), (Op::Delete, "up/sandboxes", OUT),
    (Op::RenameFrom, "up/sentinel.txt", OUT), (Op::RenameTo, "up/planted.txt", OUT),
    (Op::MoveTo, "up", OUT), (Op::Mkdir, "up/newdir", OUT), (Op::MkdirP, "up/newdir/deeper", OUT),
    (Op::Write, "up/newdir/x.txt", OUT), (Op::Exists, "up/sentinel.txt", OUT),
    (Op::Read, "chain/sentinel.txt", OUT), (Op::Write, "chain/sentinel.txt", OUT),
    (Op::List, "chain", OUT), (Op::Read, "hopb/other/workspace/secret.txt", OUT),
    (Op::RawGet, "hopb/other/workspace/secret.txt", OUT),
    (Op::Write, "hopb/other/workspace/secret.txt", OUT),
    (Op::RawPut, "hopb/other/workspace/secret.txt", OUT),
    (Op::Write, "sentinel", OUT), (Op::RawPut, "sentinel", OUT), (Op::Read, "sentinel", OUT),
    (Op::Write, "canary", OUT), (Op::RawPut, "canary", OUT), (Op::Read, "canary", OUT),
    (Op::Write, "dangle", OUT), (Op::Read, "sibling", OUT), (Op::RawGet, "sibling", OUT),
    (Op::Write, "sibling", OUT), (Op::RawPut, "sibling", OUT), (Op::List, "sibdir", OUT),
    (Op::Read, "sibdir/secret.txt", OUT), (Op::Write, "sibdir/new.txt", OUT),
    (Op::Delete, "sibdir/secret.txt", OUT), (Op::MoveFrom, "sibdir/secret.txt", OUT),
    (Op::Stat, "sibdir/secret.txt", OUT), (Op::MoveTo, "outdir", OUT),
    (Op::Write, "outdir/planted.txt", OUT), (Op::Read, "selfabs", OUT), (Op::Write, "selfabs", OUT),
    (Op::Read, "loop1", OUT), (Op::Write, "loop1", OUT), (Op::Mkdir, "loop1/x", OUT),
];

/// Sandbox `box` (the attacker) with escaping links planted as a guest would, `other`
/// holding a secret, and a sentinel beside the sandboxes folder. Returns the canary path.
fn plant_links(s: &Server) -> PathBuf {
    let (b, other) = (Sb::new(s, "box"), Sb::new(s, "other"));
    b.write("a.txt", "mine").ok();
    other.write("secret.txt", "top secret").ok();
    fs::write(s.data_dir.join("sentinel.txt"), "sentinel").expect("sentinel");
    let since_epoch = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos());
    let unique = format!("{}-{since_epoch}", std::process::id());
    let canary = PathBuf::from(format!("/tmp/hybox-e2e-canary-{unique}"));
    fs::create_dir_all(b.host("sub/deeper")).expect("sub");
    let host_ws = b.host("").canonicalize().expect("canonical workspace");
    let data = s.data_dir.canonicalize().expect("canonical data dir");
    let links: [(&str, PathBuf); 16] = [
        ("etc", "/etc".into()),
        ("passwd", "/etc/passwd".into()),
        ("up", "../../..".into()), // the data dir
        ("chain", "sub/link2".into()),
        ("sub/link2", "../../../..".into()),
        ("sub/deeper/hopa", "..".into()),
        // Lexically the workspace root; physically (hopa is `sub`) the sandboxes folder.
        ("hopb", "sub/deeper/hopa/../../..".into()),
        ("sentinel", data.join("sentinel.txt")),
        ("canary", canary.clone()),
        ("dangle", "../../../new-canary.txt".into()),
        ("sibling", "../../other/workspace/secret.txt".into()),
        ("sibdir", "../../other/workspace".into()),
        ("outdir", data.clone()),
        // Absolute links are refused even when they land back inside.
        ("selfabs", host_ws.join("a.txt")),
        ("loop1", "loop2".into()),
        ("loop2", "loop1".into()),
    ];
    for (name, target) in links {
        symlink(target, b.host(name)).expect("plant symlink");
    }
    canary
}

#[test]
fn hostile_paths_are_refused_with_exact_codes_and_change_nothing() {
    let s = Server::start();
    let canary = plant_links(&s);
    let b = Sb::named(&s, "box");
    let passwd = fs::read("/etc/passwd").expect("read /etc/passwd");
    // The whole data dir: both workspaces, metadata, the sentinel beside `sandboxes/`.
    let before = snapshot(&s.data_dir);
    let mut cases: Vec<(Op, String, &str)> = Vec::new();
    for (path, code) in lexical_cases() {
        cases.extend(ALL_OPS.iter().map(|op| (*op, path.clone(), code)));
    }
    let link_cases = LINK_CASES
        .iter()
        .map(|(op, p, c)| (*op, (*p).to_string(), *c));
    cases.extend(link_cases);
    assert!(cases.len() >= 300, "{}", cases.len());
    for (op, path, code) in &cases {
        let case = format!("{op:?} {:?}", path.chars().take(40).collect::<String>());
        let a = attempt(&b, *op, path);
        let got = (a.status, a.json["code"].as_str());
        assert_eq!(got, (status_of(code), Some(*code)), "{case}: {:?}", a.json);
        let same = snapshot(&s.data_dir) == before;
        assert!(same, "{case} changed the data dir");
        let no_canary = fs::symlink_metadata(&canary).is_err();
        assert!(no_canary, "{case} created the canary");
    }
    let untouched = || {
        assert_eq!(fs::read("/etc/passwd").expect("/etc/passwd"), passwd);
        let sentinel = fs::read_to_string(s.data_dir.join("sentinel.txt"));
        assert_eq!(sentinel.expect("sentinel"), "sentinel");
        assert_eq!(Sb::named(&s, "other").text("secret.txt"), "top secret");
    };
    untouched();

    // Acting on an escaping link itself stays inside: it renames or deletes the link only.
    b.call("rename", json!({"from": "up", "to": "up2"})).ok();
    b.read("up2/sentinel.txt").fails(403, OUT);
    for link in ["up2", "passwd", "etc", "sibling", "sibdir"] {
        b.on_r("delete", link, true).ok();
        assert!(!b.host(link).is_symlink(), "{link} removed");
    }
    untouched();
}

#[test]
fn listing_reports_escaping_links_as_symlinks_without_following() {
    let s = Server::start();
    plant_links(&s);
    let b = Sb::named(&s, "box");
    symlink("a.txt", b.host("inlink")).expect("inside link");
    assert_eq!(b.text("inlink"), "mine"); // a link that stays inside is followed
    #[rustfmt::skip]
    let links = [
        "etc", "passwd", "up", "chain", "hopb", "canary", "sibling", "sibdir", "outdir", "loop1",
        "inlink",
    ];
    let escaped = ["etc/", "up/", "chain/", "sibdir/", "outdir/", "hopb/"];
    for recursive in [false, true] {
        let a = b.on_r("list", "/workspace", recursive);
        let files = a.ok()["files"].as_array().expect("files");
        let entry = |rel: &str| files.iter().find(|f| f["path"] == path(rel));
        for link in links {
            let kind = entry(link).map(|f| &f["type"]);
            assert_eq!(kind, Some(&json!("symlink")), "{link} {recursive}");
        }
        let up_size = entry("up").map(|f| &f["size"]);
        assert_eq!(up_size, Some(&json!(8)), "lstat size of the link itself");
        let under = |p: &str| escaped.iter().any(|l| p.starts_with(&path(l)));
        let leaked = files
            .iter()
            .filter_map(|f| f["path"].as_str())
            .filter(|p| under(p));
        assert_eq!(leaked.count(), 0, "{files:?}");
        assert_eq!(entry("sub/deeper/hopa").is_some(), recursive);
    }
    b.on("stat", "etc")
        .has(json!({"type": "symlink", "path": "/workspace/etc"}));
    assert_eq!(b.exists("canary"), true, "a dangling link exists as a link");
}

#[test]
fn odd_names_and_percent_encoding_never_escape() {
    let s = Server::start();
    let b = Sb::new(&s, "box");
    let beside = fs::read_dir(&s.data_dir).expect("data dir").count();
    // `%2e%2e` is a literal name in JSON paths.
    b.write("%2e%2e/x", "literal")
        .has(json!({"path": "/workspace/%2e%2e/x"}));
    assert_eq!(b.host_bytes("%2e%2e/x"), b"literal");
    assert_eq!(b.text("/workspace/%2e%2e/x"), "literal");
    // Backslashes are ordinary characters.
    for name in ["..\\x", "..\\..\\etc\\passwd", "a\\..\\..\\b"] {
        b.write(name, "bs").ok();
        assert_eq!(b.host_bytes(name), b"bs", "{name}");
    }
    // The raw query is percent-decoded exactly once, then resolved like any path.
    let queries: &[(&str, u16, Option<&str>)] = &[
        ("path=..%2F..%2Fetc%2Fpasswd", 403, Some(OUT)),
        ("path=%2e%2e%2fx", 403, Some(OUT)),
        ("path=%2E%2E", 403, Some(OUT)),
        ("path=%2Fetc%2Fpasswd", 403, Some(OUT)),
        ("path=%2Fworkspace%2F..%2F..%2Fx", 403, Some(OUT)),
        ("path=a%00b", 400, Some(INV)),
        ("path=", 400, Some(INV)),
        ("path=..%5Cx", 200, None),
        ("path=%252e%252e%2Fy", 200, None),
        ("path=%252e%252e%252fz", 200, None),
        ("path=%2Fworkspace%2Fq%20r.txt", 200, None),
    ];
    for (q, status, code) in queries {
        for a in [b.put_q(q, b"raw"), b.get_q(q)] {
            assert_eq!((a.status, a.json["code"].as_str()), (*status, *code), "{q}");
        }
        assert!(*status != 200 || b.get_q(q).bytes == b"raw", "{q}");
    }
    for name in ["%2e%2e/y", "%2e%2e%2fz", "q r.txt", "..\\x"] {
        assert_eq!(b.host_bytes(name), b"raw", "{name}");
    }
    let now = fs::read_dir(&s.data_dir).expect("data dir").count();
    assert_eq!(now, beside, "nothing new beside sandboxes/");
    assert!(!s.data_dir.join("sandboxes/x").exists() && !s.data_dir.join("x").exists());
}

#[test]
fn sandboxes_cannot_see_each_others_files() {
    let s = Server::start();
    let (a, b) = (Sb::new(&s, "alpha"), Sb::new(&s, "beta"));
    a.write("secret.txt", "alpha only").ok();
    a.write("dir/inner.txt", "alpha inner").ok();
    for p in ["secret.txt", "/workspace/secret.txt", "dir/inner.txt"] {
        b.read(p).fails(404, NF);
        b.raw_get(p).fails(404, NF);
        assert_eq!(b.exists(p), false, "{p}");
    }
    #[rustfmt::skip]
    let escapes = [
        "../../alpha/workspace/secret.txt", "/workspace/../../alpha/workspace/secret.txt",
        "/sandboxes/alpha/workspace/secret.txt", "../alpha/secret.txt",
    ];
    for p in escapes {
        b.read(p).fails(403, OUT);
        b.raw_get(p).fails(403, OUT);
    }
    b.on_r("list", "/workspace", true).has(json!({"count": 0}));
    // The same name in beta is a different file.
    b.write("secret.txt", "beta's").ok();
    b.on_r("delete", "dir", true).fails(404, NF);
    assert_eq!(a.text("secret.txt"), "alpha only");
    assert_eq!(b.text("secret.txt"), "beta's");
    assert_eq!(a.text("dir/inner.txt"), "alpha inner");
}
