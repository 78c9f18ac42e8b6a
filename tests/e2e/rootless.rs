//! The container route without root: `hybox serve` run by an ordinary user, its containers in
//! a user namespace on the image served by fs-layer's FUSE view (no loop mount, no overlay),
//! with the limits of a cgroup delegated to that user.
//!
//! The test runs as root and starts the server as the user named by
//! `HYBOX_TEST_ROOTLESS_USER`, which `scripts/test.sh` creates (with the cgroup delegation of
//! `scripts/delegate-cgroups.sh`). Without that variable it says why and returns; with it, a
//! missing user or a route that does not come up is a failure.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use hybox_tests::Server;

use super::containers::{
    delete_sandbox, eventually, exec, expose, is_root, process, raw_request, read_file, sandbox,
    sh, sh_ok, wait_port, write_file,
};

/// `(uid, gid)` of `user`, from `id`.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// `src` into `dst` for `owner`: directories made and handed to it (the server may add
/// files), files readable by all hard-linked (the guests and the image are not copied), the
/// others (the private `.cwasm`) copied and handed to it; names in `skip` left out.
fn mirror(src: &Path, dst: &Path, owner: (u32, u32), skip: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    let own = |p: &Path| std::os::unix::fs::chown(p, Some(owner.0), Some(owner.1)).expect("chown");
    std::fs::create_dir_all(dst).expect("mkdir");
    own(dst);
    let Ok(entries) = std::fs::read_dir(src) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("entry");
        if skip.iter().any(|n| entry.file_name() == **n) {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            mirror(&from, &to, owner, &[]);
        } else if meta.is_file() {
            if meta.permissions().mode() & 0o004 != 0 && std::fs::hard_link(&from, &to).is_ok() {
                continue;
            }
            std::fs::copy(&from, &to).expect("copy");
            own(&to);
        }
    }
}

/// A server run by the rootless test user, in a temp dir it owns, or `None` when the suite was
/// not set up for it.
fn rootless_server(env: &[(&str, &str)]) -> Option<(Server, tempfile::TempDir, (u32, u32))> {
    let Ok(user) = std::env::var("HYBOX_TEST_ROOTLESS_USER") else {
        eprintln!("skipped: HYBOX_TEST_ROOTLESS_USER is not set (scripts/test.sh sets it)");
        return None;
    };
    assert!(
        is_root(),
        "the rootless test starts its server as {user}: run it as root"
    );
    let owner = ids_of(&user).unwrap_or_else(|| panic!("no user {user}: run scripts/test.sh"));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // The user cannot reach root's target dir or cache: its own copies (the binary) and links.
    let bin = root.join("hybox");
    std::fs::copy(hybox_tests::hybox_bin(), &bin).expect("copy hybox");
    let cache = root.join("cache");
    mirror(
        &hybox_tests::cache_dir(),
        &cache,
        owner,
        &["target", "target-doc", "images"],
    );
    let images = root.join("images");
    mirror(&hybox_tests::image_dir(), &images, owner, &[]);
    let data = root.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    for dir in [root, &data] {
        std::os::unix::fs::chown(dir, Some(owner.0), Some(owner.1)).expect("chown");
    }
    let mut cmd = Command::new(&bin);
    cmd.uid(owner.0)
        .gid(owner.1)
        .current_dir(root)
        .env("HOME", root)
        .env("HYBOX_CACHE_DIR", &cache)
        .env("HYBOX_IMAGE_DIR", &images)
        .env_remove("XDG_RUNTIME_DIR")
        .envs(env.iter().copied());
    let s = Server::launch(cmd, &data, &[]);
    Some((s, dir, owner))
}

/// Starts 100 `sleep`s in the container of `id` (limited to 64 tasks): between 10 and 63 must
/// start. Then allocates 600 MiB (limited to 256): returns how that command ended.
fn storm_and_hog(s: &Server, id: &str) -> serde_json::Value {
    let out = sh_ok(
        s,
        id,
        "python3 -c \"import subprocess\nk=[]\nfor _ in range(100):\n  try: k.append(subprocess.Popen(['sleep','30']))\n  except OSError: pass\nprint(len(k))\nfor p in k: p.kill()\"",
    );
    let started: u32 = out.trim().parse().expect("a count");
    assert!((10..64).contains(&started), "{out}");
    sh(
        s,
        id,
        "python3 -c \"x = b'x' * (600 << 20); print(len(x))\"",
    )
}

fn container_dir(s: &Server, id: &str) -> PathBuf {
    s.data_dir.join("containers").join(id)
}

#[test]
fn an_ordinary_user_runs_the_container_route() {
    let Some((s, _dir, (uid, gid))) = rootless_server(&[]) else {
        return;
    };
    // The server really is that user, and says its containers are rootless with cgroup limits.
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).expect("status");
    let real_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().next())
        .and_then(|u| u.parse::<u32>().ok());
    assert_eq!(real_uid, Some(uid), "{status}");
    let h = s.get("/v1/health");
    let c = &h.json["containers"];
    assert_eq!(c["available"], true, "{h:?}");
    assert_eq!(c["rootless"], true, "{c}");
    assert_eq!(c["limits"], "cgroup", "{c}");

    let id = "rootless";
    sandbox(&s, id, &json!({"resources": {"pids": 64, "memoryMb": 256}}));
    // Native tools: gcc builds and runs; files cross between the host's file API, the wasm
    // route and the container.
    write_file(
        &s,
        id,
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"hello rootless\"); return 0; }\n",
    );
    assert_eq!(
        sh_ok(&s, id, "gcc hello.c -o hello && ./hello"),
        "hello rootless\n"
    );
    let a = exec(
        &s,
        id,
        &json!({"command": "echo from-wasm > crossed.txt", "runtime": "wasi"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(sh_ok(&s, id, "cat crossed.txt"), "from-wasm\n");
    sh_ok(&s, id, "echo from-container > back.txt");
    let r = read_file(&s, id, "back.txt");
    assert_eq!(r.json["content"], "from-container\n", "{r:?}");

    // Root inside is the user outside, and nobody else is mapped.
    assert_eq!(sh_ok(&s, id, "id -u; id -g"), "0\n0\n");
    let map = sh_ok(&s, id, "cat /proc/self/uid_map /proc/self/gid_map");
    let rows: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [["0", &*uid.to_string(), "1"], ["0", &*gid.to_string(), "1"]],
        "{map}"
    );
    // The rootfs is the image behind fs-layer's view (FUSE), writable through its own layer,
    // owned by root inside; the server mounted nothing with the kernel's squashfs or overlay.
    assert!(sh_ok(&s, id, "stat -f -c %T /").contains("fuse"));
    assert_eq!(
        sh_ok(&s, id, "stat -c %u:%g /usr/bin/gcc /etc"),
        "0:0\n0:0\n"
    );
    sh_ok(
        &s,
        id,
        "echo kept > /etc/hybox-rootless && rm /usr/bin/xargs",
    );
    assert!(
        container_dir(&s, id)
            .join("upper-view/etc/hybox-rootless")
            .is_file()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let data = s.data_dir.to_string_lossy().into_owned();
    for line in mounts.lines().filter(|l| l.contains(&data)) {
        let fstype = line.split(" - ").nth(1).unwrap_or("");
        assert!(fstype.starts_with("fuse"), "a non-FUSE mount: {line}");
    }
    // Only the container's own processes; the host's pid namespace is not its own.
    let ps = sh_ok(&s, id, "ps -e -o comm=");
    assert!(
        ps.lines().next().is_some_and(|l| l.trim() == "agent"),
        "{ps}"
    );
    assert!(!ps.contains("hybox"), "{ps}");
    for ns in ["pid", "mnt", "net", "user"] {
        let host = std::fs::read_link(format!("/proc/{}/ns/{ns}", s.pid())).expect("host ns");
        let inside = sh_ok(&s, id, &format!("readlink /proc/self/ns/{ns}"));
        assert_ne!(inside.trim(), host.to_string_lossy(), "{ns}");
    }
    // Loopback only; and a sandbox cannot ask for more here.
    assert_eq!(sh_ok(&s, id, "ls /sys/class/net"), "lo\n");
    let a = s.put("/v1/sandboxes/wants-net", &json!({"network": true}));
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (501, Some("UNSUPPORTED")),
        "{a:?}"
    );

    // The delegated cgroup holds the limits: a fork storm stops at 64 tasks.
    let cg = sh_ok(&s, id, "cat /proc/self/cgroup");
    assert!(cg.contains(&format!("hybox-{uid}/{id}")), "{cg}");
    let v = storm_and_hog(&s, id);
    assert_eq!(v["exitCode"], 137, "killed for memory: {v}");

    // A background server reached through its preview URL (spliced by the agent).
    write_file(&s, id, "site/index.html", "rootless preview\n");
    let p = process(
        &s,
        id,
        &json!({"command": "python3 -m http.server 8080 --directory site", "processId": "web"}),
    );
    assert_eq!(p["id"], "web");
    wait_port(&s, id, "web", 8080);
    let token = expose(&s, id, 8080);
    let (status, _, body) = raw_request(&s, &format!("/preview/{id}/8080/?token={token}"), &[]);
    assert_eq!((status, body.as_str()), (200, "rootless preview\n"));

    // DELETE removes the container, its writable layer and its view.
    delete_sandbox(&s, id);
    assert!(eventually(Duration::from_secs(10), || !container_dir(
        &s, id
    )
    .exists()));
    let h = s.get("/v1/health");
    assert_eq!(h.json["status"], "ok", "{h:?}");
}

#[test]
fn without_a_delegated_cgroup_rlimits_stop_a_fork_storm_and_a_memory_hog() {
    // A cgroup parent nobody delegated: the server falls back to rlimits, and says so.
    let Some((s, _dir, _)) = rootless_server(&[("HYBOX_CGROUP_PARENT", "hybox-not-delegated")])
    else {
        return;
    };
    let h = s.get("/v1/health");
    assert_eq!(h.json["containers"]["limits"], "rlimit", "{h:?}");
    let id = "rlimits";
    sandbox(&s, id, &json!({"resources": {"pids": 64, "memoryMb": 256}}));
    let cg = sh_ok(&s, id, "cat /proc/self/cgroup");
    assert!(!cg.contains(id), "no cgroup of its own: {cg}");
    assert_eq!(
        sh_ok(&s, id, "ulimit -u; ulimit -v"),
        format!("64\n{}\n", 256 << 10)
    );
    // RLIMIT_NPROC counts the container's processes (its user namespace's), so a storm stops.
    // RLIMIT_AS: an allocation past the limit fails in the process.
    let v = storm_and_hog(&s, id);
    assert_ne!(v["exitCode"], 0, "{v}");
    assert!(
        v["stderr"].as_str().unwrap_or("").contains("MemoryError"),
        "{v}"
    );
    assert_eq!(sh_ok(&s, id, "echo alive"), "alive\n");
    delete_sandbox(&s, id);
}
