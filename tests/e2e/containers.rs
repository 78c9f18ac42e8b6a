//! The container route end to end: native tools in the sandbox's runc container next to the
//! wasm route on one workspace, sessions carried across routes, background processes with
//! their logs and waits, preview URLs (HTTP and WebSocket), the terminal, cgroup limits, the
//! network and namespace boundaries, git checkout, and the container's life across idleness
//! and server restarts.
//!
//! Every test needs root and a host that runs containers; elsewhere it says why and returns.
//! Each test has its own server (a server is cheap, and a shared one would outlive the test
//! binary with its mounts).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use hybox_tests::{Answer, Server};

/// Whether this process runs as root (namespaces, cgroups and mounts need it).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().next())
            == Some("0")
    })
}

/// Whether containers can run here at all (root), else why not.
fn precheck() -> Option<&'static str> {
    (!is_root()).then_some("the container route needs root")
}

/// Whether `s` can run containers; says why not when it cannot.
fn containers_available(s: &Server) -> bool {
    let h = s.get("/v1/health");
    if h.json["containers"]["available"] == true {
        return true;
    }
    eprintln!(
        "skipped: the container route is unavailable: {}",
        h.json["containers"]
    );
    false
}

/// A fresh server whose container route works, or `None` (with the reason printed).
fn server() -> Option<Server> {
    if let Some(why) = precheck() {
        eprintln!("skipped: {why}");
        return None;
    }
    let s = Server::start();
    containers_available(&s).then_some(s)
}

/// Creates sandbox `id` with `body`.
pub(crate) fn sandbox(s: &Server, id: &str, body: &Value) {
    let a = s.put(&format!("/v1/sandboxes/{id}"), body);
    assert_eq!(a.status, 201, "create {id}: {a:?}");
}

/// `POST /exec` with `body`: the raw answer.
pub(crate) fn exec(s: &Server, id: &str, body: &Value) -> Answer {
    s.post(&format!("/v1/sandboxes/{id}/exec"), body)
}

/// Runs `command` in the container and returns the result, which must be a 200 that ran there.
pub(crate) fn sh(s: &Server, id: &str, command: &str) -> Value {
    let a = exec(
        s,
        id,
        &json!({"command": command, "runtime": "container", "timeoutMs": 60_000}),
    );
    assert_eq!(a.status, 200, "{command}: {a:?}");
    assert_eq!(a.json["route"], "container", "{command}: {:?}", a.json);
    a.json
}

/// Runs `command` in the container; it must succeed; returns its stdout.
pub(crate) fn sh_ok(s: &Server, id: &str, command: &str) -> String {
    let v = sh(s, id, command);
    assert_eq!(v["exitCode"], 0, "{command}: {v}");
    v["stdout"].as_str().unwrap_or("").to_owned()
}

pub(crate) fn write_file(s: &Server, id: &str, path: &str, content: &str) {
    let a = s.post(
        &format!("/v1/sandboxes/{id}/files/write"),
        &json!({"path": path, "content": content}),
    );
    assert_eq!(a.status, 200, "write {path}: {a:?}");
}

pub(crate) fn read_file(s: &Server, id: &str, path: &str) -> Answer {
    s.post(
        &format!("/v1/sandboxes/{id}/files/read"),
        &json!({"path": path}),
    )
}

pub(crate) fn delete_sandbox(s: &Server, id: &str) {
    let d = s.delete(&format!("/v1/sandboxes/{id}"));
    assert_eq!(d.status, 200, "delete {id}: {d:?}");
}

/// Polls `f` every 100 ms until it is true or `within` passes; returns whether it became true.
pub(crate) fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if f() {
            return true;
        }
        if started.elapsed() >= within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `host:port` of the server.
pub(crate) fn addr(s: &Server) -> &str {
    s.base.strip_prefix("http://").expect("http base")
}

/// One HTTP/1.1 request over a fresh connection, for what the client library does not let a
/// test set (the `Host` header): (status, head, body).
pub(crate) fn raw_request(
    s: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut c = TcpStream::connect(addr(s)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {}\r\n", addr(s)));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("read answer");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Mount points at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(str::to_owned)
        .collect()
}

pub(crate) fn process(s: &Server, id: &str, body: &Value) -> Value {
    let a = s.post(&format!("/v1/sandboxes/{id}/processes"), body);
    assert_eq!(a.status, 201, "start {body}: {a:?}");
    assert_eq!(a.json["status"], "running", "{:?}", a.json);
    a.json
}

pub(crate) fn wait_port(s: &Server, id: &str, pid: &str, port: u16) {
    let a = s.post(
        &format!("/v1/sandboxes/{id}/processes/{pid}/waitForPort"),
        &json!({"port": port, "timeout": 30_000}),
    );
    assert_eq!(a.status, 200, "waitForPort {port}: {a:?}");
    assert_eq!(a.json["ready"], true);
}

pub(crate) fn expose(s: &Server, id: &str, port: u16) -> String {
    let a = s.post(
        &format!("/v1/sandboxes/{id}/ports"),
        &json!({"port": port, "name": "web"}),
    );
    assert_eq!(a.status, 201, "expose {port}: {a:?}");
    let token = a.json["token"].as_str().expect("token").to_owned();
    assert_eq!(
        a.json["previewPath"],
        format!("/preview/{id}/{port}/?token={token}")
    );
    token
}

#[test]
fn gcc_builds_and_runs_and_both_routes_share_the_workspace() {
    let Some(s) = server() else { return };
    let id = "native";
    sandbox(&s, id, &json!({}));
    write_file(
        &s,
        id,
        "hello.c",
        "#include <stdio.h>\nint main(void) { printf(\"hello from %s\\n\", \"gcc\"); return 3; }\n",
    );
    // Routed by the planner, not forced: the wasm route has no gcc.
    let a = exec(&s, id, &json!({"command": "gcc hello.c && ./a.out"}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["route"], "container", "{:?}", a.json);
    assert!(
        a.json["routeReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(a.json["stdout"], "hello from gcc\n", "{:?}", a.json);
    assert_eq!(a.json["exitCode"], 3);
    assert_eq!(a.json["success"], false);
    // The binary gcc wrote is in the workspace, seen from the host side too.
    assert!(s.workspace(id).join("a.out").is_file());

    // wasm writes, the container reads.
    let a = exec(
        &s,
        id,
        &json!({"command": "python3 -c \"open('x.txt','w').write('from wasm')\""}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["route"], "wasi", "{:?}", a.json);
    assert_eq!(a.json["exitCode"], 0, "{:?}", a.json);
    assert_eq!(sh_ok(&s, id, "cat /workspace/x.txt"), "from wasm");

    // The container writes, the file API, the host and wasm read.
    sh_ok(
        &s,
        id,
        "mkdir -p out && echo 'from the container' > out/y.txt && echo tmp-side > /tmp/t.txt",
    );
    let r = read_file(&s, id, "out/y.txt");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["content"], "from the container\n");
    assert_eq!(
        std::fs::read_to_string(s.workspace(id).join("out/y.txt")).expect("host view"),
        "from the container\n"
    );
    let a = exec(
        &s,
        id,
        &json!({"command": "cat out/y.txt /tmp/t.txt", "runtime": "wasi"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["route"], "wasi");
    assert_eq!(a.json["stdout"], "from the container\ntmp-side\n");
    // And a file the container deletes is gone for wasm.
    sh_ok(&s, id, "rm x.txt");
    let a = exec(
        &s,
        id,
        &json!({"command": "test -e x.txt && echo yes || echo no", "runtime": "wasi"}),
    );
    assert_eq!(a.json["stdout"], "no\n", "{:?}", a.json);
    delete_sandbox(&s, id);
}

#[test]
fn sessions_carry_cwd_exports_vars_and_functions_across_routes() {
    let Some(s) = server() else { return };
    let id = "sess";
    sandbox(&s, id, &json!({}));
    let a = exec(
        &s,
        id,
        &json!({"command": "cd /usr && export A=1 && B=2 && f() { echo fn; }"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["exitCode"], 0, "{:?}", a.json);
    assert_eq!(a.json["cwd"], "/usr", "{:?}", a.json);
    let a = exec(&s, id, &json!({"command": "echo $A $B $(pwd); f"}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["route"], "container", "{:?}", a.json);
    assert_eq!(a.json["stdout"], "1 2 /usr\nfn\n", "{:?}", a.json);
    // A call's own cwd and env hold for that call only.
    let a = exec(
        &s,
        id,
        &json!({"command": "echo $X $A $(pwd)", "cwd": "/etc", "env": {"X": "call", "A": "override"}}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["stdout"], "call override /etc\n", "{:?}", a.json);
    assert_eq!(
        sh_ok(&s, id, "echo ${X:-unset} $A $(pwd)"),
        "unset 1 /usr\n"
    );
    // A failed `cd` keeps the session where it was.
    let v = sh(&s, id, "cd /nonexistent");
    assert_ne!(v["exitCode"], 0, "{v}");
    assert_eq!(v["cwd"], "/usr", "{v}");
    // Back in the workspace the wasm route takes over, with the exported variable only.
    let a = exec(&s, id, &json!({"command": "cd /workspace"}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["cwd"], "/workspace");
    let a = exec(&s, id, &json!({"command": "env", "runtime": "wasi"}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["route"], "wasi");
    let env = a.json["stdout"].as_str().unwrap_or("");
    assert!(env.lines().any(|l| l == "A=1"), "A missing: {env}");
    assert!(!env.lines().any(|l| l == "B=2"), "B is not exported: {env}");
    // What wasm sets comes back into the container.
    let a = exec(
        &s,
        id,
        &json!({"command": "export C=from-wasm; mkdir -p sub; cd sub", "runtime": "wasi"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["route"], "wasi", "{:?}", a.json);
    assert_eq!(
        sh_ok(&s, id, "echo $C $B $(pwd)"),
        "from-wasm 2 /workspace/sub\n"
    );
    delete_sandbox(&s, id);
}

#[test]
fn background_http_server_behind_a_preview_with_logs_and_waits() {
    let Some(s) = server() else { return };
    let id = "web";
    sandbox(&s, id, &json!({}));
    write_file(&s, id, "index.html", "<h1>hello preview</h1>\n");
    let p = process(
        &s,
        id,
        &json!({"command": "python3 -m http.server 8080", "processId": "srv"}),
    );
    assert_eq!(p["id"], "srv");
    assert!(p["pid"].as_u64().is_some_and(|n| n > 1), "{p}");
    let dup = s.post(
        &format!("/v1/sandboxes/{id}/processes"),
        &json!({"command": "true", "processId": "srv"}),
    );
    assert_eq!(
        (dup.status, dup.json["code"].as_str()),
        (409, Some("PROCESS_EXISTS"))
    );
    wait_port(&s, id, "srv", 8080);
    let one = s.get(&format!("/v1/sandboxes/{id}/processes/srv"));
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.json["status"], "running");
    assert_eq!(one.json["command"], "python3 -m http.server 8080");
    let w = s.post(
        &format!("/v1/sandboxes/{id}/processes/srv/waitForExit"),
        &json!({"timeout": 300}),
    );
    assert_eq!(
        (w.status, w.json["code"].as_str()),
        (408, Some("TIMEOUT")),
        "{w:?}"
    );
    // A short process: its exit code and both streams are kept.
    process(
        &s,
        id,
        &json!({"command": "echo out $Z $(pwd); echo err >&2; sleep 0.2; exit 3", "processId": "short", "cwd": "/tmp", "env": {"Z": "z"}}),
    );
    let w = s.post(
        &format!("/v1/sandboxes/{id}/processes/short/waitForExit"),
        &json!({"timeout": 10_000}),
    );
    assert_eq!(w.status, 200, "{w:?}");
    assert_eq!(w.json["status"], "failed", "{w:?}");
    assert_eq!(w.json["exitCode"], 3, "{w:?}");
    assert!(w.json["endedAt"].is_string(), "{w:?}");
    let logs = s.get(&format!("/v1/sandboxes/{id}/processes/short/logs"));
    assert_eq!(
        (logs.json["stdout"].as_str(), logs.json["stderr"].as_str()),
        (Some("out z /tmp\n"), Some("err\n")),
        "{logs:?}"
    );
    let w = s.post(
        &format!("/v1/sandboxes/{id}/processes/short/waitForPort"),
        &json!({"port": 1234, "timeout": 2000}),
    );
    assert_eq!(w.status, 400, "an ended process never opens a port: {w:?}");
    // Nothing exposed yet: the same answer as a wrong token.
    let (st, _, body) = raw_request(&s, &format!("/preview/{id}/8080/?token=abc"), &[]);
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("INVALID_TOKEN"), "{body}");
    let token = expose(&s, id, 8080);
    let listed = s.get(&format!("/v1/sandboxes/{id}/ports"));
    assert_eq!(listed.json["count"], 1, "{listed:?}");
    assert_eq!(listed.json["ports"][0]["port"], 8080);
    let v = s.get(&format!(
        "/v1/sandboxes/{id}/ports/8080/validate?token={token}"
    ));
    assert_eq!(v.json["valid"], true, "{v:?}");
    let v = s.get(&format!(
        "/v1/sandboxes/{id}/ports/8080/validate?token=nope"
    ));
    assert_eq!(v.json["valid"], false, "{v:?}");

    // Path form, with the token in the query: the page, and a cookie for the next requests.
    let (st, head, body) = raw_request(
        &s,
        &format!("/preview/{id}/8080/index.html?token={token}"),
        &[],
    );
    assert_eq!(st, 200, "{head}\n{body}");
    assert!(body.contains("hello preview"), "{body}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        })
        .map(|(_, v)| v.trim().split(';').next().unwrap_or("").to_owned())
        .expect("a preview cookie");
    assert_eq!(cookie, format!("hybox_preview_8080={token}"));
    let (st, _, body) = raw_request(
        &s,
        &format!("/preview/{id}/8080/index.html"),
        &[("Cookie", &cookie)],
    );
    assert_eq!(st, 200, "by cookie: {body}");
    let (st, _, body) = raw_request(
        &s,
        &format!("/preview/{id}/8080/index.html"),
        &[("X-Hybox-Preview-Token", &token)],
    );
    assert_eq!(st, 200, "by header: {body}");
    assert!(body.contains("hello preview"));
    // Host form.
    let host = format!("8080-{id}-{token}.localhost");
    let (st, _, body) = raw_request(&s, "/index.html", &[("Host", &host)]);
    assert_eq!(st, 200, "host form: {body}");
    assert!(body.contains("hello preview"), "{body}");
    let host = format!("{host}:{}", addr(&s).rsplit(':').next().unwrap_or("80"));
    let (st, _, body) = raw_request(&s, "/index.html", &[("Host", &host)]);
    assert_eq!(st, 200, "host form with a port: {body}");
    // Wrong tokens, both forms; no token at all.
    for (path, host) in [
        (format!("/preview/{id}/8080/index.html?token=wrong"), None),
        (format!("/preview/{id}/8080/index.html"), None),
        (
            "/index.html".to_owned(),
            Some(format!("8080-{id}-wrong.localhost")),
        ),
        (
            "/index.html".to_owned(),
            Some(format!("8081-{id}-{token}.localhost")),
        ),
    ] {
        let headers: Vec<(&str, &str)> = host.iter().map(|h| ("Host", h.as_str())).collect();
        let (st, _, body) = raw_request(&s, &path, &headers);
        assert_eq!(st, 404, "{path} {host:?}: {body}");
        assert!(body.contains("INVALID_TOKEN"), "{body}");
    }
    // Exposed but nobody listens.
    let low = s.post(&format!("/v1/sandboxes/{id}/ports"), &json!({"port": 80}));
    assert_eq!(
        (low.status, low.json["code"].as_str()),
        (400, Some("PORT_RESERVED")),
        "{low:?}"
    );
    let t2 = expose(&s, id, 9999);
    let (st, _, body) = raw_request(&s, &format!("/preview/{id}/9999/?token={t2}"), &[]);
    assert_eq!(st, 502, "{body}");
    assert!(body.contains("PORT_NOT_LISTENING"), "{body}");

    // Logs: http.server logs requests on stderr.
    let w = s.post(
        &format!("/v1/sandboxes/{id}/processes/srv/waitForLog"),
        &json!({"pattern": "GET /", "timeout": 10_000}),
    );
    assert_eq!(w.status, 200, "{w:?}");
    assert_eq!(w.json["match"], "GET /");
    assert!(
        w.json["line"]
            .as_str()
            .is_some_and(|l| l.contains("GET /index.html")),
        "{w:?}"
    );
    let logs = s.get(&format!("/v1/sandboxes/{id}/processes/srv/logs"));
    assert_eq!(logs.status, 200, "{logs:?}");
    let all = format!(
        "{}{}",
        logs.json["stdout"].as_str().unwrap_or(""),
        logs.json["stderr"].as_str().unwrap_or("")
    );
    assert!(all.contains("\"GET /index.html HTTP/1.1\" 200"), "{all}");
    let w = s.post(
        &format!("/v1/sandboxes/{id}/processes/srv/waitForLog"),
        &json!({"pattern": "never-logged", "timeout": 500}),
    );
    assert_eq!((w.status, w.json["code"].as_str()), (408, Some("TIMEOUT")));

    // Streamed logs: the kept lines, then the exit once the process is killed.
    let (st, rx) = s.get_sse(&format!("/v1/sandboxes/{id}/processes/srv/logs"));
    assert_eq!(st, 200);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("GET /index.html") {
        let (name, data) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("log events before the deadline");
        assert!(name == "stdout" || name == "stderr", "{name}: {data}");
        assert!(data["timestamp"].is_string(), "{data}");
        seen.push_str(data["data"].as_str().unwrap_or(""));
    }
    let k = s.delete(&format!("/v1/sandboxes/{id}/processes/srv?signal=SIGTERM"));
    assert_eq!(k.status, 200, "{k:?}");
    let exit = loop {
        let (name, data) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("an exit event before the deadline");
        if name == "exit" {
            break data;
        }
    };
    assert_eq!(exit["id"], "srv", "{exit}");
    assert_ne!(exit["status"], "running", "{exit}");
    let list = s.get(&format!("/v1/sandboxes/{id}/processes"));
    let srv = list.json["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["id"] == "srv")
        .cloned()
        .expect("srv is listed");
    assert_eq!(srv["status"], "killed", "{srv}");
    assert!(
        srv["signal"] == 15 || srv["exitCode"] == 143,
        "exit info: {srv}"
    );
    assert!(srv["endedAt"].is_string(), "{srv}");
    let missing = s.get(&format!("/v1/sandboxes/{id}/processes/nope"));
    assert_eq!(
        (missing.status, missing.json["code"].as_str()),
        (404, Some("PROCESS_NOT_FOUND"))
    );
    // The port is still exposed but now nothing listens; unexposed, the token stops working.
    let un = s.delete(&format!("/v1/sandboxes/{id}/ports/8080"));
    assert_eq!(un.status, 200, "{un:?}");
    let (st, _, body) = raw_request(
        &s,
        &format!("/preview/{id}/8080/index.html?token={token}"),
        &[],
    );
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("INVALID_TOKEN"), "{body}");
    let un = s.delete(&format!("/v1/sandboxes/{id}/ports/8080"));
    assert_eq!(
        (un.status, un.json["code"].as_str()),
        (404, Some("PORT_NOT_EXPOSED"))
    );
    delete_sandbox(&s, id);
}

/// A WebSocket echo server in ~40 lines of the standard library (the image has no pip
/// packages): one connection at a time, frames unmasked, answered with `echo: ` prepended.
const WS_ECHO: &str = r#"import base64, hashlib, socket, struct
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 8765))
srv.listen(4)
print("ws listening", flush=True)
def read(c, n):
    out = b""
    while len(out) < n:
        d = c.recv(n - len(out))
        if not d:
            raise EOFError
        out += d
    return out
while True:
    c, _ = srv.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        d = c.recv(1)
        if not d:
            break
        head += d
    keys = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")]
    if not keys:
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        c.close()
        continue
    accept = base64.b64encode(hashlib.sha1(keys[0] + GUID).digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    try:
        while True:
            b0, b1 = read(c, 2)
            op, n = b0 & 15, b1 & 127
            if n == 126:
                n = struct.unpack(">H", read(c, 2))[0]
            elif n == 127:
                n = struct.unpack(">Q", read(c, 8))[0]
            mask = read(c, 4) if b1 & 128 else b"\0\0\0\0"
            data = bytes(x ^ mask[i % 4] for i, x in enumerate(read(c, n)))
            if op == 8:
                c.sendall(b"\x88\x00")
                break
            reply = b"echo: " + data
            size = bytes([len(reply)]) if len(reply) < 126 else b"\x7e" + struct.pack(">H", len(reply))
            c.sendall(bytes([0x80 | op]) + size + reply)
    except EOFError:
        pass
    c.close()
"#;

/// A blocking WebSocket client on `path` of the server.
fn websocket(s: &Server, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr(s)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let url = format!("ws://{}{path}", addr(s));
    let (ws, resp) = tungstenite::client::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake on {path}: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

#[test]
fn websocket_through_a_preview() {
    use tungstenite::Message;
    let Some(s) = server() else { return };
    let id = "wsbox";
    sandbox(&s, id, &json!({}));
    write_file(&s, id, "ws.py", WS_ECHO);
    process(
        &s,
        id,
        &json!({"command": "python3 ws.py", "processId": "ws"}),
    );
    wait_port(&s, id, "ws", 8765);
    let token = expose(&s, id, 8765);
    let mut ws = websocket(&s, &format!("/preview/{id}/8765/?token={token}"));
    for msg in ["hello over the preview", &"x".repeat(300)] {
        ws.send(Message::text(msg)).expect("send");
        let got = loop {
            match ws.read().expect("read an answer") {
                Message::Text(t) => break t.to_string(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(got, format!("echo: {msg}"));
    }
    let _ = ws.close(None);
    // A wrong token gets no upgrade.
    let stream = TcpStream::connect(addr(&s)).expect("connect");
    let url = format!("ws://{}/preview/{id}/8765/?token=wrong", addr(&s));
    match tungstenite::client::client(url.as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status().as_u16(), 404);
        }
        Err(e) => panic!("expected a 404 answer, got {e}"),
        Ok(_) => panic!("a wrong token upgraded"),
    }
    delete_sandbox(&s, id);
}

/// Reads the terminal until `what` shows or the shell's exit message comes.
fn read_terminal(
    ws: &mut tungstenite::WebSocket<TcpStream>,
    screen: &mut String,
    exit: &mut Option<Value>,
    what: &str,
) {
    use tungstenite::Message;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !screen.contains(what) && exit.is_none() {
        assert!(
            Instant::now() < deadline,
            "no {what:?} on the terminal: {screen:?}"
        );
        match ws.read() {
            Ok(Message::Binary(b)) => screen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if v["type"] == "exit" {
                    *exit = Some(v);
                } else {
                    screen.push_str(&t);
                }
            }
            Ok(_) => {}
            Err(e) => panic!("terminal read: {e}; screen so far {screen:?}"),
        }
    }
}

#[test]
fn terminal_over_websocket() {
    use tungstenite::Message;
    let Some(s) = server() else { return };
    let id = "term";
    sandbox(&s, id, &json!({}));
    // Not a WebSocket: refused.
    let a = s.get(&format!("/v1/sandboxes/{id}/terminal"));
    assert_eq!(a.status, 400, "{a:?}");
    // The terminal starts in the session's directory with its exported variables.
    let a = exec(
        &s,
        id,
        &json!({"command": "export TV=from-session; cd /usr"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let mut ws = websocket(&s, &format!("/v1/sandboxes/{id}/terminal?cols=80&rows=24"));
    let mut screen = String::new();
    let mut exit = None;
    ws.send(Message::binary(b"echo \"[$TV:$(pwd)]\"\n".to_vec()))
        .expect("send");
    read_terminal(&mut ws, &mut screen, &mut exit, "[from-session:/usr]");
    ws.send(Message::binary(b"echo $((6*7))\n".to_vec()))
        .expect("send");
    read_terminal(&mut ws, &mut screen, &mut exit, "42");
    assert!(exit.is_none(), "{exit:?}");
    ws.send(Message::text(
        json!({"type": "resize", "cols": 100, "rows": 40}).to_string(),
    ))
    .expect("resize");
    screen.clear();
    ws.send(Message::binary(b"stty size\n".to_vec()))
        .expect("send");
    read_terminal(&mut ws, &mut screen, &mut exit, "40 100");
    ws.send(Message::binary(b"exit 7\n".to_vec()))
        .expect("send");
    read_terminal(&mut ws, &mut screen, &mut exit, "\u{0}never");
    let exit = exit.expect("an exit message");
    assert_eq!(exit["type"], "exit");
    assert_eq!(exit["code"], 7, "{exit}");
    delete_sandbox(&s, id);
}

#[test]
fn pids_and_memory_limits_hold_and_the_sandbox_survives() {
    let Some(s) = server() else { return };
    let id = "limits";
    sandbox(&s, id, &json!({"resources": {"pids": 64, "memoryMb": 128}}));
    let v = s.get(&format!("/v1/sandboxes/{id}"));
    assert_eq!(v.json["resources"]["pids"], 64, "{v:?}");
    // 200 children asked for; the pids cgroup stops the container at 64 tasks in all. Python
    // sees the failed fork at once (bash would retry each for seconds).
    let spawn = "import os, subprocess\n\
                 kids, refused = [], 0\n\
                 for _ in range(200):\n\
                 \x20   try:\n\
                 \x20       kids.append(subprocess.Popen(['sleep', '30']))\n\
                 \x20   except OSError:\n\
                 \x20       refused += 1\n\
                 tasks = sum(len(os.listdir(f'/proc/{p}/task')) for p in os.listdir('/proc') if p.isdigit())\n\
                 print(len(kids), refused, tasks)\n\
                 for k in kids:\n\
                 \x20   k.kill()\n\
                 \x20   k.wait()\n";
    write_file(&s, id, "spawn.py", spawn);
    let out = sh_ok(&s, id, "python3 spawn.py");
    let nums: Vec<u64> = out
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [started, refused, tasks] = nums[..] else {
        panic!("unexpected output {out:?}")
    };
    assert!((10..64).contains(&started), "started {started}: {out}");
    assert_eq!(started + refused, 200, "{out}");
    assert!(tasks <= 64, "{tasks} tasks in the container: {out}");
    // Memory: 512 MiB touched in a 128 MiB container: the OOM killer ends it.
    let started_at = Instant::now();
    let v = sh(
        &s,
        id,
        "python3 -c \"x = b'x' * (512 << 20); print(len(x))\"",
    );
    assert_ne!(v["exitCode"], 0, "{v}");
    assert_eq!(v["exitCode"], 137, "killed by SIGKILL: {v}");
    assert_eq!(v["stdout"], "", "{v}");
    assert!(started_at.elapsed() < Duration::from_secs(30));
    // The server and the sandbox are fine.
    let h = s.get("/v1/health");
    assert_eq!((h.status, h.json["status"].as_str()), (200, Some("ok")));
    assert_eq!(
        sh_ok(&s, id, "echo alive; ps -e --no-headers | wc -l")
            .lines()
            .next(),
        Some("alive")
    );
    let a = exec(
        &s,
        id,
        &json!({"command": "echo wasm-too", "runtime": "wasi"}),
    );
    assert_eq!(a.json["stdout"], "wasm-too\n", "{a:?}");
    delete_sandbox(&s, id);
}

#[test]
fn network_is_off_by_default_and_on_when_asked() {
    let Some(s) = server() else { return };
    // A listener on the host: no container may open a connection to it, with or without
    // network (egress is to the internet through NAT, not to the machine it runs on).
    let listener = TcpListener::bind("0.0.0.0:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let accepted = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 0;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut c, _)) => {
                    let _ = c.write_all(b"hello-from-host\n");
                    n += 1;
                    if n == 1 {
                        return n;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        n
    });

    sandbox(&s, "offline", &json!({}));
    let links = sh_ok(&s, "offline", "ip -o link");
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(names, vec!["lo"], "{links}");
    let routes = sh_ok(&s, "offline", "cat /proc/net/route");
    assert_eq!(routes.lines().count(), 1, "only the header: {routes}");
    let v = sh(&s, "offline", "curl -sS --max-time 3 http://10.89.0.1/");
    assert_ne!(v["exitCode"], 0, "{v}");
    let v = sh(
        &s,
        "offline",
        &format!("timeout 3 bash -c 'exec 3<>/dev/tcp/10.89.0.1/{port}; cat <&3'"),
    );
    assert_ne!(v["exitCode"], 0, "{v}");
    assert!(!v["stdout"].as_str().unwrap_or("").contains("hello"), "{v}");
    let v = sh(&s, "offline", "getent hosts example.com");
    assert_ne!(v["exitCode"], 0, "no DNS: {v}");

    sandbox(&s, "online", &json!({"network": true}));
    assert_eq!(s.get("/v1/sandboxes/online").json["network"], true);
    let links = sh_ok(&s, "online", "ip -o link");
    assert!(
        links.lines().any(|l| l
            .split(':')
            .nth(1)
            .is_some_and(|n| n.trim().starts_with("eth0"))),
        "{links}"
    );
    let routes = sh_ok(&s, "online", "cat /proc/net/route");
    assert!(
        routes
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some("00000000")),
        "a default route: {routes}"
    );
    let via = sh_ok(&s, "online", "ip route show default");
    let gateway = via
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .expect("a gateway")
        .to_owned();
    let v = sh(
        &s,
        "online",
        &format!("timeout 5 bash -c 'exec 3<>/dev/tcp/{gateway}/{port}; head -n1 <&3'"),
    );
    assert_ne!(v["exitCode"], 0, "the host was reachable: {v}");
    assert!(!v["stdout"].as_str().unwrap_or("").contains("hello"), "{v}");
    assert_eq!(accepted.join().expect("listener thread"), 0);
    // Egress is set up: the container's subnet is masqueraded on the host.
    let addr = sh_ok(&s, "online", "ip -4 -o addr show dev eth0");
    let cidr = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .expect("an address")
        .to_owned();
    let guest: std::net::Ipv4Addr = cidr.trim_end_matches("/30").parse().expect("ipv4");
    let subnet = format!("{}/30", std::net::Ipv4Addr::from(u32::from(guest) & !3));
    let nat = std::process::Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .output()
        .expect("iptables");
    assert!(
        String::from_utf8_lossy(&nat.stdout).contains(&format!("-s {subnet}")),
        "no NAT for {subnet}"
    );
    // The two sandboxes do not see each other's network either way.
    let v = sh(&s, "offline", "ip -o addr");
    assert!(
        !v["stdout"].as_str().unwrap_or("").contains(&gateway),
        "{v}"
    );
    delete_sandbox(&s, "offline");
    delete_sandbox(&s, "online");
}

#[test]
fn the_container_sees_only_itself() {
    let Some(s) = server() else { return };
    let id = "iso";
    sandbox(&s, id, &json!({}));
    let ps = sh_ok(&s, id, "ps -e -o pid=,comm=");
    let procs: Vec<(u32, String)> = ps
        .lines()
        .filter_map(|l| {
            let (pid, comm) = l.trim().split_once(' ')?;
            Some((pid.parse().ok()?, comm.trim().to_owned()))
        })
        .collect();
    assert!(procs.contains(&(1, "agent".to_owned())), "{ps}");
    assert!(!ps.contains("hybox"), "{ps}");
    // Only the agent, the command's shell, the spare shell waiting for the next command and
    // ps itself (and nothing from the host).
    assert!(procs.len() <= 4, "{ps}");
    assert!(
        procs
            .iter()
            .all(|(_, c)| matches!(c.as_str(), "agent" | "bash" | "ps")),
        "{ps}"
    );
    let cmdline = sh_ok(&s, id, "tr '\\0' ' ' < /proc/1/cmdline");
    assert!(cmdline.starts_with("/.hybox/agent "), "{cmdline}");
    assert_eq!(sh_ok(&s, id, "hostname"), format!("{id}\n"));
    // The agent listens on a descriptor it was given; its socket on the host is not visible.
    let socket = s.data_dir.join("containers").join(id).join("agent.sock");
    assert!(socket.exists(), "the host side has {}", socket.display());
    let socket = socket.to_string_lossy().into_owned();
    for file in ["/proc/self/mountinfo", "/proc/net/unix", "/proc/1/environ"] {
        let text = sh_ok(&s, id, &format!("cat {file} | tr '\\0' '\\n'"));
        assert!(!text.contains(&socket), "{file}: {text}");
        assert!(!text.contains("agent.sock"), "{file}: {text}");
    }
    let found = sh_ok(
        &s,
        id,
        "ls -a /.hybox; find /.hybox /workspace /tmp -type s 2>/dev/null",
    );
    assert!(!found.contains("sock"), "{found}");
    // No mount of the host's data dir itself; the workspace is its own file system.
    let ws = sh_ok(
        &s,
        id,
        "findmnt -n -o FSTYPE /workspace || stat -f -c %T /workspace",
    );
    assert!(ws.contains("fuse"), "{ws}");
    let v = sh(&s, id, &format!("ls {}", s.data_dir.display()));
    assert_ne!(v["exitCode"], 0, "the data dir is visible: {v}");
    // Namespaces differ from the server's.
    for ns in ["pid", "mnt", "net", "uts", "ipc"] {
        let host = std::fs::read_link(format!("/proc/{}/ns/{ns}", s.pid())).expect("host ns");
        let inside = sh_ok(&s, id, &format!("readlink /proc/self/ns/{ns}"));
        assert_ne!(inside.trim(), host.to_string_lossy(), "{ns}");
    }
    delete_sandbox(&s, id);
}

#[test]
fn git_checkout_from_a_daemon_in_the_container() {
    let Some(s) = server() else { return };
    let id = "gitbox";
    sandbox(&s, id, &json!({}));
    sh_ok(
        &s,
        id,
        "set -e\n\
         export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com\n\
         git init -q --bare -b main /srv/r.git\n\
         git init -q -b main /srv/wc && cd /srv/wc\n\
         echo 'main branch' > README && git add README && git commit -q -m one\n\
         git checkout -q -b feature\n\
         echo first > feature.txt && git add feature.txt && git commit -q -m two\n\
         echo 'second version' > feature.txt && git commit -q -am three\n\
         git push -q /srv/r.git main feature\n\
         cd /workspace",
    );
    process(
        &s,
        id,
        &json!({
            "command": "git daemon --reuseaddr --base-path=/srv --export-all --listen=127.0.0.1 --port=9418",
            "processId": "gitd",
        }),
    );
    wait_port(&s, id, "gitd", 9418);
    let a = s.post(
        &format!("/v1/sandboxes/{id}/git/checkout"),
        &json!({"repoUrl": "git://127.0.0.1/r.git", "branch": "feature", "depth": 1, "targetDir": "co"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["success"], true, "{:?}", a.json);
    assert_eq!(a.json["targetDir"], "/workspace/co");
    let r = read_file(&s, id, "co/feature.txt");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["content"], "second version\n");
    assert!(s.workspace(id).join("co/README").is_file());
    assert_eq!(
        sh_ok(&s, id, "git -C co rev-list --count HEAD"),
        "1\n",
        "depth 1"
    );
    assert_eq!(
        sh_ok(&s, id, "git -C co branch --show-current"),
        "feature\n"
    );
    // A second clone into the same directory fails as git does, with its message.
    let a = s.post(
        &format!("/v1/sandboxes/{id}/git/checkout"),
        &json!({"repoUrl": "git://127.0.0.1/r.git", "targetDir": "co"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["success"], false, "{:?}", a.json);
    assert!(
        a.json["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("already exists")),
        "{:?}",
        a.json
    );
    // Options and command transports are refused before git runs.
    for bad in [
        json!({"repoUrl": "--upload-pack=touch /tmp/pwned"}),
        json!({"repoUrl": "ext::sh -c touch% /tmp/pwned"}),
        json!({"repoUrl": "git://127.0.0.1/r.git", "targetDir": "--upload-pack=touch /tmp/pwned"}),
        json!({"repoUrl": "git://127.0.0.1/r.git", "branch": "--upload-pack=touch /tmp/pwned"}),
    ] {
        let a = s.post(&format!("/v1/sandboxes/{id}/git/checkout"), &bad);
        assert_eq!(
            (a.status, a.json["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{bad}: {a:?}"
        );
    }
    let v = sh(&s, id, "test -e /tmp/pwned");
    assert_ne!(v["exitCode"], 0, "a refused URL ran a command");
    // Kill all: the daemon ends.
    let k = s.delete(&format!("/v1/sandboxes/{id}/processes?signal=SIGKILL"));
    assert_eq!(k.status, 200, "{k:?}");
    assert!(k.json["killed"].as_u64().is_some_and(|n| n >= 1), "{k:?}");
    let w = s.post(
        &format!("/v1/sandboxes/{id}/processes/gitd/waitForExit"),
        &json!({"timeout": 10_000}),
    );
    assert_eq!(w.status, 200, "{w:?}");
    assert_eq!(w.json["status"], "killed", "{w:?}");
    assert_eq!(w.json["signal"], 9, "{w:?}");
    let ps = sh_ok(&s, id, "ps -e -o args=");
    assert!(
        !ps.contains("git daemon") && !ps.contains("git-daemon"),
        "{ps}"
    );
    delete_sandbox(&s, id);
}

#[test]
fn a_restarted_server_brings_the_sandbox_back() {
    if let Some(why) = precheck() {
        eprintln!("skipped: {why}");
        return;
    }
    // Declared first so it is removed after the servers are gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let id = "keep";
    let mut s = Server::start_in(dir.path(), &[]);
    if !containers_available(&s) {
        return;
    }
    sandbox(&s, id, &json!({}));
    sandbox(&s, "awake", &json!({"keepAlive": true}));
    sh_ok(&s, id, "echo kept > /workspace/r.txt");
    process(&s, id, &json!({"command": "sleep 300", "processId": "sl"}));
    let a = s.post(
        &format!("/v1/sandboxes/{id}/ports"),
        &json!({"port": 8080, "token": "tok1"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let before = s.get(&format!("/v1/sandboxes/{id}"));
    assert_eq!(before.json["container"]["status"], "running", "{before:?}");
    let old_pid = before.json["container"]["pid"].as_u64().expect("pid");
    assert!(s.stop(), "the server stops by itself on SIGTERM");
    let left = mounts_under(dir.path());
    assert!(left.is_empty(), "mounts left after stop: {left:?}");
    assert!(
        eventually(Duration::from_secs(5), || !Path::new(&format!(
            "/proc/{old_pid}"
        ))
        .exists()),
        "the container's init {old_pid} outlived the server"
    );

    let mut s = Server::start_in(dir.path(), &[]);
    // A keepAlive sandbox's container starts with the server, unasked.
    let awake = |s: &Server| s.get("/v1/sandboxes/awake").json["container"]["status"] == "running";
    assert!(
        eventually(Duration::from_secs(10), || awake(&s)),
        "{:?}",
        s.get("/v1/sandboxes/awake")
    );
    let v = s.get(&format!("/v1/sandboxes/{id}"));
    assert_eq!(v.status, 200, "{v:?}");
    assert_eq!(v.json["container"]["status"], "stopped", "{v:?}");
    assert_eq!(sh_ok(&s, id, "cat /workspace/r.txt"), "kept\n");
    let r = read_file(&s, id, "r.txt");
    assert_eq!(r.json["content"], "kept\n", "{r:?}");
    let ports = s.get(&format!("/v1/sandboxes/{id}/ports"));
    assert_eq!(ports.json["count"], 1, "{ports:?}");
    assert_eq!(ports.json["ports"][0]["port"], 8080);
    assert_eq!(ports.json["ports"][0]["token"], "tok1");
    let list = s.get(&format!("/v1/sandboxes/{id}/processes"));
    assert_eq!(list.status, 200, "{list:?}");
    let sl = list.json["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["id"] == "sl")
        .cloned()
        .unwrap_or_else(|| panic!("the old process is listed: {list:?}"));
    assert_ne!(sl["status"], "running", "{sl}");
    assert!(
        ["lost", "killed", "failed"].contains(&sl["status"].as_str().unwrap_or("")),
        "{sl}"
    );
    // A lost process's end time is unknown; one seen ending has it.
    assert!(sl["status"] == "lost" || sl["endedAt"].is_string(), "{sl}");
    let ps = sh_ok(&s, id, "ps -e -o args=");
    assert!(!ps.contains("sleep 300"), "{ps}");
    assert!(s.stop(), "the server stops by itself on SIGTERM");
    let left = mounts_under(dir.path());
    assert!(left.is_empty(), "mounts left after stop: {left:?}");
}

#[test]
fn an_idle_container_sleeps_and_wakes_transparently() {
    if let Some(why) = precheck() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &["--sweep-interval-ms", "200"]);
    if !containers_available(&s) {
        return;
    }
    let id = "idle";
    sandbox(&s, id, &json!({"sleepAfter": 1}));
    sandbox(&s, "awake", &json!({"sleepAfter": 1, "keepAlive": true}));
    sandbox(&s, "later", &json!({"sleepAfter": "10m"}));
    assert_eq!(s.get("/v1/sandboxes/later").json["sleepAfter"], 600);
    let bad = s.put("/v1/sandboxes/bad", &json!({"sleepAfter": "soon"}));
    assert_eq!(bad.status, 400, "{bad:?}");
    let a = s.post(
        &format!("/v1/sandboxes/{id}/ports"),
        &json!({"port": 8080, "token": "tok"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let v = s.get(&format!("/v1/sandboxes/{id}"));
    assert_eq!(v.json["sleepAfter"], 1, "{v:?}");
    assert_eq!(
        v.json["container"]["status"], "stopped",
        "not started before use: {v:?}"
    );
    sh_ok(&s, id, "echo still-here > f.txt; echo tmp > /tmp/t.txt");
    let v = s.get(&format!("/v1/sandboxes/{id}"));
    assert_eq!(v.json["container"]["status"], "running", "{v:?}");
    let pid = v.json["container"]["pid"].as_u64().expect("pid");
    let status = |s: &Server| {
        s.get(&format!("/v1/sandboxes/{id}")).json["container"]["status"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        eventually(Duration::from_secs(6), || status(&s) == "stopped"),
        "still {} after sleepAfter",
        status(&s)
    );
    assert!(
        eventually(Duration::from_secs(5), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "the stopped container's init {pid} still exists"
    );
    // Preview traffic does not wake it.
    let (st, _, body) = raw_request(&s, &format!("/preview/{id}/8080/?token=tok"), &[]);
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("CONTAINER_NOT_READY"), "{body}");
    assert_eq!(status(&s), "stopped");
    // keepAlive: started with the sandbox, and never put to sleep.
    assert_eq!(
        s.get("/v1/sandboxes/awake").json["container"]["status"],
        "running"
    );
    // The next command starts it again, files kept.
    assert_eq!(sh_ok(&s, id, "cat f.txt /tmp/t.txt"), "still-here\ntmp\n");
    let v = s.get(&format!("/v1/sandboxes/{id}"));
    assert_eq!(v.json["container"]["status"], "running", "{v:?}");
    assert_ne!(
        v.json["container"]["pid"].as_u64(),
        Some(pid),
        "a new container"
    );
    let cdir = dir.path().join("containers").join(id);
    assert!(cdir.exists());
    delete_sandbox(&s, id);
    assert!(!cdir.exists(), "{} is left", cdir.display());
    delete_sandbox(&s, "awake");
    delete_sandbox(&s, "later");
    assert!(!dir.path().join("sandboxes").join(id).exists());
    let gone = s.get(&format!("/v1/sandboxes/{id}"));
    assert_eq!(gone.status, 404);
    assert!(mounts_under(&cdir).is_empty(), "{:?}", mounts_under(&cdir));
}

/// Starts a streamed exec; its events arrive on the channel as they come.
fn exec_stream(s: &Server, id: &str, body: &Value) -> std::sync::mpsc::Receiver<(String, Value)> {
    let resp = hybox_tests::agent()
        .post(format!("{}/v1/sandboxes/{id}/exec", s.base))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .send(body.to_string())
        .expect("request reached the server");
    assert_eq!(resp.status().as_u16(), 200);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        // A read error ends the stream like its end does.
        let _ = hybox_tests::read_sse(reader, |name, data| {
            tx.send((name, serde_json::from_str(data).unwrap_or(Value::Null)))
                .is_ok()
        });
    });
    rx
}

#[test]
fn exec_streams_and_a_timeout_kills_the_command() {
    let Some(s) = server() else { return };
    let id = "stream";
    sandbox(&s, id, &json!({}));
    let (status, events) = s.post_sse(
        &format!("/v1/sandboxes/{id}/exec"),
        &json!({"command": "for i in 1 2 3; do echo $i; sleep 0.3; done", "runtime": "container"}),
    );
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"), "{names:?}");
    assert_eq!(names.last(), Some(&"complete"), "{names:?}");
    assert_eq!(events[0].1["route"], "container");
    let out: String = events
        .iter()
        .filter(|(n, _, _)| n == "stdout")
        .map(|(_, d, _)| d["data"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(out, "1\n2\n3\n");
    let first_out = events
        .iter()
        .find(|(n, _, _)| n == "stdout")
        .map(|(_, _, t)| *t)
        .expect("stdout events");
    let (_, done, done_at) = events.last().expect("complete");
    assert!(
        done_at.duration_since(first_out) >= Duration::from_millis(400),
        "stdout came only at the end"
    );
    assert_eq!(done["exitCode"], 0, "{done}");

    let started = Instant::now();
    let a = exec(
        &s,
        id,
        &json!({"command": "sleep 10", "runtime": "container", "timeoutMs": 500}),
    );
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (408, Some("TIMEOUT")),
        "{a:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut ps = String::new();
    assert!(
        eventually(Duration::from_secs(3), || {
            ps = sh_ok(&s, id, "ps -e -o args=");
            !ps.contains("sleep 10")
        }),
        "the timed-out command still runs: {ps}"
    );
    // Streamed, the timeout is an `error` event.
    let (_, events) = s.post_sse(
        &format!("/v1/sandboxes/{id}/exec"),
        &json!({"command": "echo before; sleep 10", "runtime": "container", "timeoutMs": 500}),
    );
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["start", "stdout", "error"], "{events:?}");
    assert_eq!(events[2].1["code"], "TIMEOUT", "{events:?}");
    // Cancelled by id while it runs.
    let rx = exec_stream(
        &s,
        id,
        &json!({"command": "echo go; sleep 20", "runtime": "container"}),
    );
    let next = || rx.recv_timeout(Duration::from_secs(20)).expect("an event");
    let (name, start) = next();
    assert_eq!(name, "start", "{start}");
    let exec_id = start["execId"].as_str().expect("execId").to_owned();
    let (name, out) = next();
    assert_eq!(
        (name.as_str(), out["data"].as_str()),
        ("stdout", Some("go\n"))
    );
    let c = s.delete(&format!("/v1/sandboxes/{id}/exec/{exec_id}"));
    assert_eq!(c.status, 200, "{c:?}");
    let (name, end) = next();
    assert_eq!(
        (name.as_str(), end["code"].as_str()),
        ("error", Some("CANCELLED")),
        "{end}"
    );
    assert!(
        eventually(Duration::from_secs(3), || {
            ps = sh_ok(&s, id, "ps -e -o args=");
            !ps.contains("sleep 20")
        }),
        "the cancelled command still runs: {ps}"
    );
    let c = s.delete(&format!("/v1/sandboxes/{id}/exec/{exec_id}"));
    assert_eq!(
        (c.status, c.json["code"].as_str()),
        (404, Some("EXEC_NOT_FOUND"))
    );
    // The session goes on.
    assert_eq!(sh_ok(&s, id, "echo after"), "after\n");
    delete_sandbox(&s, id);
}

/// Exposures are records of the sandbox: they need no container, so this runs everywhere.
#[test]
fn exposing_is_idempotent_per_token_and_tokens_are_unique() {
    let s = Server::start();
    sandbox(&s, "ports", &json!({}));
    let ports = "/v1/sandboxes/ports/ports";
    let a = s.post(
        ports,
        &json!({"port": 8080, "token": "tok1", "name": "web"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.json["token"], "tok1");
    // The same port with the same token (or none): the same exposure.
    let again = s.post(ports, &json!({"port": 8080, "token": "tok1"}));
    assert_eq!(
        (again.status, &again.json["url"]),
        (200, &a.json["url"]),
        "{again:?}"
    );
    let again = s.post(ports, &json!({"port": 8080}));
    assert_eq!(
        (again.status, &again.json["token"]),
        (200, &a.json["token"])
    );
    // Another token for it is refused, as is one port's token for another port.
    let other = s.post(ports, &json!({"port": 8080, "token": "tok2"}));
    assert_eq!(
        (other.status, other.json["code"].as_str()),
        (409, Some("PORT_ALREADY_EXPOSED")),
        "{other:?}"
    );
    let reused = s.post(ports, &json!({"port": 9090, "token": "tok1"}));
    assert_eq!(
        (reused.status, reused.json["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{reused:?}"
    );
    let bad = s.post(ports, &json!({"port": 9090, "token": "Bad-Token"}));
    assert_eq!(bad.json["code"], "INVALID_REQUEST", "{bad:?}");
    let list = s.get(ports);
    assert_eq!(list.json["count"], 1, "{list:?}");
    let valid = s.get(&format!("{ports}/8080/validate?token=tok1"));
    assert_eq!(valid.json["valid"], true);
    let invalid = s.get(&format!("{ports}/8080/validate?token=tok2"));
    assert_eq!(invalid.json["valid"], false);
    assert_eq!(s.delete("/v1/sandboxes/ports").status, 200);
}

#[test]
fn a_command_waiting_for_its_container_keeps_its_deadline() {
    let Some(s) = server() else { return };
    let id = "deadline";
    sandbox(&s, id, &json!({}));
    // 1 ms is less than any container start: the command gives up while it starts...
    let a = exec(
        &s,
        id,
        &json!({"command": "echo never", "runtime": "container", "timeoutMs": 1}),
    );
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (408, Some("TIMEOUT")),
        "{a:?}"
    );
    assert_eq!(
        a.json["details"]["waitingFor"], "the container to start",
        "{a:?}"
    );
    // ...which goes on, so the container runs for the next one.
    assert!(eventually(Duration::from_secs(30), || {
        s.get(&format!("/v1/sandboxes/{id}")).json["container"]["status"] == "running"
    }));
    assert_eq!(sh_ok(&s, id, "echo now"), "now\n");
    delete_sandbox(&s, id);
}
