//! Snapshots, restore, fork, export/import and file watching, end to end: in the default mode
//! (copy-on-write FUSE views when the machine allows, as here) and with `--fs-mode extract`
//! (plain directories). Both routes' writes (the host file API and a wasm guest) are covered.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use hybox_tests::{Server, cli};

fn write(s: &Server, sb: &str, path: &str, content: &str) {
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/files/write"),
        &json!({ "path": path, "content": content }),
    );
    assert_eq!(a.status, 200, "write {path}: {a:?}");
}

fn read(s: &Server, sb: &str, path: &str) -> Option<String> {
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/files/read"),
        &json!({ "path": path }),
    );
    match a.status {
        200 => Some(a.json["content"].as_str().expect("content").to_owned()),
        404 => None,
        _ => panic!("read {path}: {a:?}"),
    }
}

fn py(s: &Server, sb: &str, code: &str) -> Value {
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/exec"),
        &json!({ "command": format!("python3 -c {}", shell_quote(code)) }),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["exitCode"], 0, "{}", a.json);
    a.json
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn snapshot(s: &Server, sb: &str, body: &Value) -> Value {
    let a = s.post(&format!("/v1/sandboxes/{sb}/snapshots"), body);
    assert_eq!(a.status, 201, "{a:?}");
    a.json
}

fn restore(s: &Server, sb: &str, snap: &str) -> Value {
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/snapshots/{snap}/restore"),
        &json!({}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    a.json
}

/// The full life of a snapshot in one mode: create, change, restore (same and other sandbox),
/// incremental stacking with deletions, list/get/delete and their errors.
fn lifecycle(s: &Server, expect_mode: &str) {
    assert_eq!(
        s.get("/v1/health").json["workspaces"]["restoreMode"],
        expect_mode
    );
    let sb = s.sandbox("snap");
    write(s, &sb, "src/main.rs", "fn main() {}\n");
    write(s, &sb, "notes.txt", "v1\n");
    // The wasm route writes too: a file from Python lands in the same tree.
    py(
        s,
        &sb,
        "open('/workspace/from_py.txt','w').write('guest\\n')",
    );
    let s1 = snapshot(s, &sb, &json!({ "name": "first" }));
    assert!(s1["id"].as_str().expect("id").starts_with("snap-"));
    assert_eq!(s1["files"], 3, "{s1}");
    assert_eq!(s1["name"], "first");
    assert!(s1["size"].as_u64().expect("size") > 0);

    // Change everything: modify, delete, add.
    write(s, &sb, "notes.txt", "v2\n");
    let d = s.post(
        &format!("/v1/sandboxes/{sb}/files/delete"),
        &json!({ "path": "src", "recursive": true }),
    );
    assert_eq!(d.status, 200, "{d:?}");
    write(s, &sb, "new.txt", "new\n");
    let s2 = snapshot(s, &sb, &json!({}));
    if expect_mode == "mount" {
        assert!(
            s2["layerCount"].as_u64() >= s1["layerCount"].as_u64(),
            "{s1} {s2}"
        );
    }

    let r = restore(s, &sb, s1["id"].as_str().expect("id"));
    assert_eq!(r["restoreMode"], expect_mode);
    assert_eq!(read(s, &sb, "notes.txt").as_deref(), Some("v1\n"));
    assert_eq!(
        read(s, &sb, "src/main.rs").as_deref(),
        Some("fn main() {}\n")
    );
    assert_eq!(read(s, &sb, "new.txt"), None);
    // The guest sees the restored tree at once, through the same open workspace.
    let out = py(s, &sb, "import os; print(sorted(os.listdir('/workspace')))");
    assert_eq!(
        out["stdout"], "['from_py.txt', 'notes.txt', 'src']\n",
        "{out}"
    );

    // The second snapshot (with its deletions) restores into another sandbox.
    let other = s.sandbox("snap-other");
    write(s, &other, "junk.txt", "to be replaced\n");
    restore(s, &other, s2["id"].as_str().expect("id"));
    assert_eq!(read(s, &other, "notes.txt").as_deref(), Some("v2\n"));
    assert_eq!(
        read(s, &other, "src/main.rs"),
        None,
        "deleted dir stays deleted"
    );
    assert_eq!(read(s, &other, "junk.txt"), None);
    assert_eq!(read(s, &other, "new.txt").as_deref(), Some("new\n"));
    // Writes after a restore do not touch the snapshot.
    write(s, &other, "notes.txt", "v3\n");
    restore(s, &other, s2["id"].as_str().expect("id"));
    assert_eq!(read(s, &other, "notes.txt").as_deref(), Some("v2\n"));

    // A subdirectory snapshot restores into that directory only.
    write(s, &sb, "src/lib.rs", "pub fn f() {}\n");
    let sub = snapshot(s, &sb, &json!({ "dir": "/workspace/src" }));
    assert_eq!(sub["dir"], "/workspace/src");
    write(s, &sb, "src/lib.rs", "changed\n");
    write(s, &sb, "outside.txt", "kept\n");
    restore(s, &sb, sub["id"].as_str().expect("id"));
    assert_eq!(
        read(s, &sb, "src/lib.rs").as_deref(),
        Some("pub fn f() {}\n")
    );
    assert_eq!(read(s, &sb, "outside.txt").as_deref(), Some("kept\n"));

    // Listing, get, delete and the errors.
    let list = s.get(&format!("/v1/sandboxes/{sb}/snapshots")).json;
    assert_eq!(list["count"], 3, "{list}");
    assert_eq!(s.get("/v1/snapshots").json["count"], 3);
    let id1 = s1["id"].as_str().expect("id");
    assert_eq!(s.get(&format!("/v1/snapshots/{id1}")).json["name"], "first");
    assert_eq!(s.delete(&format!("/v1/snapshots/{id1}")).status, 200);
    let gone = s.get(&format!("/v1/snapshots/{id1}"));
    assert_eq!(
        (gone.status, gone.json["code"].as_str()),
        (404, Some("SNAPSHOT_NOT_FOUND"))
    );
    let bad = s.post(
        &format!("/v1/sandboxes/{sb}/snapshots/{id1}/restore"),
        &json!({}),
    );
    assert_eq!(bad.json["code"], "SNAPSHOT_NOT_FOUND");
    let bad = s.post(
        &format!("/v1/sandboxes/{sb}/snapshots/snap-..%2Fx/restore"),
        &json!({}),
    );
    assert_eq!(bad.status, 404);
    let bad = s.post(
        &format!("/v1/sandboxes/{sb}/snapshots"),
        &json!({ "dir": "/etc" }),
    );
    assert_eq!(bad.json["code"], "PATH_OUTSIDE_WORKSPACE", "{bad:?}");
    let bad = s.post(
        &format!("/v1/sandboxes/{sb}/snapshots"),
        &json!({ "bogus": 1 }),
    );
    assert_eq!(bad.json["code"], "INVALID_REQUEST");
    let bad = s.post("/v1/sandboxes/nope/snapshots", &json!({}));
    assert_eq!(bad.json["code"], "SANDBOX_NOT_FOUND");
    // The deleted snapshot's images went, the others' stayed (the second still restores).
    restore(s, &other, s2["id"].as_str().expect("id"));
    assert_eq!(read(s, &other, "new.txt").as_deref(), Some("new\n"));
}

#[test]
fn snapshot_lifecycle_with_copy_on_write_views() {
    let s = Server::start();
    assert!(
        s.mounted(),
        "this machine has /dev/fuse and root: the views must be mounted"
    );
    lifecycle(&s, "mount");
}

#[test]
fn snapshot_lifecycle_with_plain_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &["--fs-mode", "extract"]);
    assert!(!s.mounted());
    lifecycle(&s, "extract");
    let w = s.get("/v1/sandboxes/snap/watch");
    assert_eq!(
        (w.status, w.json["code"].as_str()),
        (501, Some("UNSUPPORTED"))
    );
}

fn fork_case(s: &Server) {
    let sb = s.sandbox("origin");
    write(s, &sb, "data/a.txt", "a\n");
    py(s, &sb, "open('/workspace/data/b.txt','w').write('b\\n')");
    let f = s.post(&format!("/v1/sandboxes/{sb}/fork"), &json!({ "count": 3 }));
    assert_eq!(f.status, 201, "{f:?}");
    let forks: Vec<String> = f.json["sandboxes"]
        .as_array()
        .expect("sandboxes")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(forks.len(), 3);
    for (i, k) in forks.iter().enumerate() {
        assert_eq!(read(s, k, "data/a.txt").as_deref(), Some("a\n"));
        assert_eq!(read(s, k, "data/b.txt").as_deref(), Some("b\n"));
        write(s, k, "data/a.txt", &format!("fork {i}\n"));
    }
    // Each copy is its own: writes stay where they were made.
    assert_eq!(read(s, &sb, "data/a.txt").as_deref(), Some("a\n"));
    for (i, k) in forks.iter().enumerate() {
        assert_eq!(read(s, k, "data/a.txt"), Some(format!("fork {i}\n")));
        let out = py(s, k, "print(open('/workspace/data/a.txt').read(), end='')");
        assert_eq!(out["stdout"], format!("fork {i}\n"));
    }
    write(s, &sb, "data/c.txt", "after\n");
    assert_eq!(read(s, &forks[0], "data/c.txt"), None);
    // Named forks, and the errors.
    let named = s.post(
        &format!("/v1/sandboxes/{sb}/fork"),
        &json!({ "ids": ["twin-a", "twin-b"] }),
    );
    assert_eq!(named.status, 201, "{named:?}");
    assert_eq!(read(s, "twin-b", "data/c.txt").as_deref(), Some("after\n"));
    let dup = s.post(
        &format!("/v1/sandboxes/{sb}/fork"),
        &json!({ "ids": ["twin-a"] }),
    );
    assert_eq!(dup.json["code"], "SANDBOX_EXISTS");
    let zero = s.post(&format!("/v1/sandboxes/{sb}/fork"), &json!({ "count": 0 }));
    assert_eq!(zero.json["code"], "INVALID_REQUEST");
    // Deleting the origin leaves the forks whole.
    assert_eq!(s.delete(&format!("/v1/sandboxes/{sb}")).status, 200);
    assert_eq!(read(s, &forks[1], "data/b.txt").as_deref(), Some("b\n"));
}

#[test]
fn fork_shares_layers_and_isolates_writes() {
    let s = Server::start();
    fork_case(&s);
}

#[test]
fn fork_with_plain_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &["--fs-mode", "extract"]);
    fork_case(&s);
}

#[test]
fn export_and_import_move_a_snapshot_as_one_sqfs_file() {
    let s = Server::start();
    let sb = s.sandbox("exp");
    write(&s, &sb, "a/one.txt", "1\n");
    let s1 = snapshot(&s, &sb, &json!({}));
    write(&s, &sb, "a/two.txt", "2\n");
    let _ = s.post(
        &format!("/v1/sandboxes/{sb}/files/delete"),
        &json!({ "path": "a/one.txt" }),
    );
    let s2 = snapshot(&s, &sb, &json!({}));
    let _ = s1;
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("snap.sqfs");
    let id2 = s2["id"].as_str().expect("id");
    let (code, stdout, stderr) = cli(
        &s,
        &["snapshot", "export", id2, file.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{stdout} {stderr}");
    let bytes = std::fs::read(&file).expect("exported");
    assert_eq!(&bytes[..4], b"hsqs", "a squashfs image");
    // Any squashfs tool reads it: the merged tree, without whiteouts.
    if let Ok(o) = std::process::Command::new("unsquashfs")
        .arg("-l")
        .arg(&file)
        .output()
    {
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(listing.contains("a/two.txt"), "{listing}");
        assert!(!listing.contains("one.txt"), "{listing}");
        assert!(!listing.contains(".wh."), "{listing}");
    }
    let (code, stdout, stderr) = cli(
        &s,
        &[
            "snapshot",
            "import",
            file.to_str().expect("utf-8"),
            "--name",
            "moved",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stdout} {stderr}");
    let imported: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(imported["name"], "moved");
    let target = s.sandbox("imp");
    restore(&s, &target, imported["id"].as_str().expect("id"));
    assert_eq!(read(&s, &target, "a/two.txt").as_deref(), Some("2\n"));
    assert_eq!(read(&s, &target, "a/one.txt"), None);
    // A corrupt upload is refused with a stable code and nothing is listed.
    // (Images are padded to 4 KiB: cut into the superblock's tables, not into the padding.)
    let mut broken = bytes.clone();
    broken.truncate(200);
    let bad_file = out.path().join("bad.sqfs");
    std::fs::write(&bad_file, &broken).expect("write");
    let before = s.get("/v1/snapshots").json["count"].clone();
    let (code, _, stderr) = cli(
        &s,
        &["snapshot", "import", bad_file.to_str().expect("utf-8")],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("SNAPSHOT_CORRUPT"), "{stderr}");
    assert_eq!(s.get("/v1/snapshots").json["count"], before);
    // The CLI lists and removes.
    let (code, stdout, _) = cli(&s, &["snapshot", "ls"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("moved"), "{stdout}");
    let (code, _, _) = cli(
        &s,
        &["snapshot", "rm", imported["id"].as_str().expect("id")],
    );
    assert_eq!(code, 0);
    // Created from the CLI (streamed: progress, then the snapshot) and over SSE directly.
    let (code, stdout, stderr) = cli(
        &s,
        &["snapshot", "create", &sb, "--name", "from-cli", "--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let made: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        (made["name"].as_str(), made["files"].as_u64()),
        (Some("from-cli"), Some(1))
    );
    let (st, events) = s.post_sse(
        &format!("/v1/sandboxes/{sb}/snapshots"),
        &json!({ "name": "sse" }),
    );
    assert_eq!(st, 200);
    let (last, data, _) = events.last().expect("events");
    assert_eq!(
        (last.as_str(), data["name"].as_str()),
        ("complete", Some("sse")),
        "{events:?}"
    );
    assert!(events.iter().any(|(n, _, _)| n == "progress"), "{events:?}");
    let (code, stdout, stderr) = cli(&s, &["fork", &sb, "--count", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}

/// Waits for the next event named `name` (skipping heartbeats and others).
fn next_named(rx: &Receiver<(String, Value)>, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((n, v)) if n == name => return v,
            Ok(_) => {}
            Err(e) => panic!("no {name} event: {e}"),
        }
    }
}

/// All events that arrive within `quiet` of each other, after the last wanted one.
fn drain(rx: &Receiver<(String, Value)>, quiet: Duration) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.recv_timeout(quiet) {
        if ev.0 != "heartbeat" {
            out.push(ev);
        }
    }
    out
}

#[test]
fn watch_streams_changes_from_both_routes_with_filters_and_cursors() {
    let s = Server::start();
    let sb = s.sandbox("w");
    write(&s, &sb, "src/keep.py", "x = 1\n");
    let (st, rx) = s.get_sse(&format!(
        "/v1/sandboxes/{sb}/watch?path=/workspace/src&include=*.py"
    ));
    assert_eq!(st, 200);
    let hello = next_named(&rx, "watching");
    assert_eq!(hello["path"], "/workspace/src");
    // Host file API.
    write(&s, &sb, "src/a.py", "print(1)\n");
    let c = next_named(&rx, "create");
    assert_eq!(
        (c["path"].as_str(), c["isDirectory"].as_bool()),
        (Some("/workspace/src/a.py"), Some(false))
    );
    // The wasm guest: append, rename, delete; a .txt and a file outside src are filtered out.
    py(
        &s,
        &sb,
        "import os\nopen('/workspace/src/note.txt','w').write('x')\nopen('/workspace/other.py','w').write('x')\nopen('/workspace/src/keep.py','a').write('y = 2\\n')\nos.rename('/workspace/src/a.py','/workspace/src/b.py')\nos.remove('/workspace/src/b.py')",
    );
    // Collect until the delete of b.py: everything seen passed the filter.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let cursor = loop {
        let (name, ev) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("events");
        if name == "heartbeat" {
            continue;
        }
        let p = ev["path"].as_str().unwrap_or("").to_owned();
        assert!(
            p.ends_with(".py") && p.starts_with("/workspace/src/"),
            "{name} {ev}"
        );
        seen.push((
            name.clone(),
            p.clone(),
            ev["oldPath"].as_str().map(str::to_owned),
        ));
        if name == "delete" && p == "/workspace/src/b.py" {
            break ev["cursor"].as_str().expect("cursor").to_owned();
        }
    };
    assert!(
        seen.contains(&("modify".into(), "/workspace/src/keep.py".into(), None)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(
            "rename".into(),
            "/workspace/src/b.py".into(),
            Some("/workspace/src/a.py".into())
        )),
        "{seen:?}"
    );
    let extra = drain(&rx, Duration::from_millis(300));
    assert!(extra.is_empty(), "unexpected {extra:?}");
    // Reconnect with the cursor: what happened in between is replayed.
    py(&s, &sb, "open('/workspace/src/late.py','w').write('z')");
    let (_, rx2) = s.get_sse(&format!(
        "/v1/sandboxes/{sb}/watch?path=/workspace/src&cursor={cursor}"
    ));
    let _ = next_named(&rx2, "watching");
    let late = next_named(&rx2, "create");
    assert_eq!(late["path"], "/workspace/src/late.py");
    // A cursor from another server run cannot be answered: reset.
    let (_, rx3) = s.get_sse(&format!("/v1/sandboxes/{sb}/watch?cursor=deadbeef-3"));
    let _ = next_named(&rx3, "watching");
    let _ = next_named(&rx3, "reset");
    // A restore tells watchers to rescan.
    let snap = snapshot(&s, &sb, &json!({}));
    restore(&s, &sb, snap["id"].as_str().expect("id"));
    let reset = next_named(&rx3, "reset");
    assert_eq!(reset["reason"], "workspace restored");
    // Bad requests.
    let both = s.get(&format!(
        "/v1/sandboxes/{sb}/watch?include=*.py&exclude=*.txt"
    ));
    assert_eq!(both.json["code"], "INVALID_REQUEST");
    let out = s.get(&format!("/v1/sandboxes/{sb}/watch?path=/etc"));
    assert_eq!(out.json["code"], "PATH_OUTSIDE_WORKSPACE");
    let rec = s.get(&format!("/v1/sandboxes/{sb}/watch?recursive=maybe"));
    assert_eq!(rec.json["code"], "INVALID_REQUEST");
}

#[test]
fn restart_after_a_crash_recovers_the_mount_and_the_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), &[]);
    let sb = s.sandbox("crash");
    write(&s, &sb, "keep.txt", "before\n");
    let snap = snapshot(&s, &sb, &json!({}));
    write(&s, &sb, "keep.txt", "after\n");
    // A big tree so that a snapshot is still being written when the server dies.
    py(
        &s,
        &sb,
        "import os\nos.makedirs('/workspace/big', exist_ok=True)\nfor i in range(40):\n    open(f'/workspace/big/f{i}','wb').write(os.urandom(1<<20))",
    );
    let base = s.base.clone();
    let t = std::thread::spawn(move || {
        let _ = hybox_tests::agent()
            .post(format!("{base}/v1/sandboxes/crash/snapshots"))
            .header("content-type", "application/json")
            .send("{}");
    });
    std::thread::sleep(Duration::from_millis(150));
    s.kill();
    let _ = t.join();
    assert!(s.mounted(), "a killed server leaves its mount behind");
    let s2 = Server::start_in(dir.path(), &[]);
    assert!(s2.mounted());
    assert_eq!(read(&s2, &sb, "keep.txt").as_deref(), Some("after\n"));
    // Every listed snapshot restores; the one being written either finished or is not listed.
    let list = s2.get("/v1/snapshots").json;
    for sn in list["snapshots"].as_array().expect("list") {
        let target = s2.sandbox("verify");
        restore(&s2, &target, sn["id"].as_str().expect("id"));
    }
    restore(&s2, &sb, snap["id"].as_str().expect("id"));
    assert_eq!(read(&s2, &sb, "keep.txt").as_deref(), Some("before\n"));
}

#[test]
fn restore_repeated_leaks_no_mounts_or_descriptors() {
    let s = Server::start();
    let sb = s.sandbox("rep");
    write(&s, &sb, "f.txt", "one\n");
    let snap = snapshot(&s, &sb, &json!({}));
    let id = snap["id"].as_str().expect("id").to_owned();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
            .expect("fds")
            .count()
    };
    // Mounts at or under this server's data dir (other tests mount elsewhere meanwhile).
    let data = s.data_dir.display().to_string();
    let mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&data)))
            .count()
    };
    // Warm up: the first restores open the image, and the pool refills its spares (which hold
    // descriptors of their own) meanwhile.
    for _ in 0..20 {
        restore(&s, &sb, &id);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (fd0, m0) = (fds(), mounts());
    for i in 0..100 {
        write(&s, &sb, "f.txt", &format!("changed {i}\n"));
        restore(&s, &sb, &id);
        assert_eq!(read(&s, &sb, "f.txt").as_deref(), Some("one\n"));
    }
    assert!(fds() <= fd0 + 4, "descriptors grew from {fd0} to {}", fds());
    assert_eq!(mounts(), m0, "mounts leaked");
    // Old upper layers are removed.
    std::thread::sleep(Duration::from_millis(500));
    let uppers = std::fs::read_dir(s.data_dir.join("uppers"))
        .expect("uppers")
        .count();
    assert!(uppers <= 8, "{uppers} upper dirs left");
}

#[test]
fn snapshots_expire_after_their_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &["--sweep-interval-ms", "200"]);
    let sb = s.sandbox("ttl");
    write(&s, &sb, "a.txt", "a\n");
    let short = snapshot(&s, &sb, &json!({ "ttl": 1 }));
    let long = snapshot(&s, &sb, &json!({ "ttl": 3600 }));
    assert!(short["expiresAt"].is_string());
    let started = Instant::now();
    loop {
        let a = s.get(&format!(
            "/v1/snapshots/{}",
            short["id"].as_str().expect("id")
        ));
        if a.status == 404 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "not expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s.get(&format!(
            "/v1/snapshots/{}",
            long["id"].as_str().expect("id")
        ))
        .status,
        200
    );
}

fn shared_volume_case(s: &Server) {
    let v = s.put("/v1/volumes/cache", &json!({}));
    assert_eq!(v.status, 201, "{v:?}");
    assert_eq!(s.put("/v1/volumes/cache", &json!({})).status, 200);
    let mk = |id: &str, ro: bool| {
        let a = s.put(
            &format!("/v1/sandboxes/{id}"),
            &json!({ "volumes": [{ "name": "cache", "path": "/data", "readOnly": ro }] }),
        );
        assert_eq!(a.status, 201, "{a:?}");
    };
    mk("writer", false);
    mk("reader", true);
    py(
        s,
        "writer",
        "open('/data/shared.txt','w').write('from writer\\n')",
    );
    let out = py(
        s,
        "reader",
        "print(open('/data/shared.txt').read(), end='')",
    );
    assert_eq!(out["stdout"], "from writer\n");
    // The toolbox sees it too, and the read-only mount refuses writes.
    let cat = s.post(
        "/v1/sandboxes/reader/exec",
        &json!({ "command": "cat /data/shared.txt" }),
    );
    assert_eq!(cat.json["stdout"], "from writer\n", "{cat:?}");
    let w = s.post(
        "/v1/sandboxes/reader/exec",
        &json!({ "command": "python3 -c \"open('/data/x','w')\"" }),
    );
    assert_ne!(w.json["exitCode"], 0, "{w:?}");
    assert!(
        w.json["stderr"].as_str().unwrap_or("").contains("Error"),
        "{w:?}"
    );
    // Bad requests.
    for (body, code) in [
        (
            json!({ "volumes": [{ "name": "nope", "path": "/data" }] }),
            "VOLUME_NOT_FOUND",
        ),
        (
            json!({ "volumes": [{ "name": "cache", "path": "/workspace/x" }] }),
            "INVALID_REQUEST",
        ),
        (
            json!({ "volumes": [{ "name": "cache", "path": "relative" }] }),
            "INVALID_REQUEST",
        ),
        (
            json!({ "volumes": [{ "name": "cache", "path": "/a" }, { "name": "cache", "path": "/a" }] }),
            "INVALID_REQUEST",
        ),
    ] {
        let a = s.put("/v1/sandboxes/bad-vol", &body);
        assert_eq!(a.json["code"], code, "{body} {a:?}");
    }
    let busy = s.delete("/v1/volumes/cache");
    assert_eq!(busy.json["code"], "VOLUME_IN_USE");
    assert_eq!(s.get("/v1/volumes").json["count"], 1);
    assert_eq!(s.delete("/v1/sandboxes/writer").status, 200);
    assert_eq!(s.delete("/v1/sandboxes/reader").status, 200);
    assert_eq!(s.delete("/v1/volumes/cache").status, 200);
    assert_eq!(s.get("/v1/volumes/cache").json["code"], "VOLUME_NOT_FOUND");
}

#[test]
fn shared_volumes_are_seen_by_several_sandboxes() {
    let s = Server::start();
    shared_volume_case(&s);
}

#[test]
fn shared_volumes_with_plain_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &["--fs-mode", "extract"]);
    shared_volume_case(&s);
}
