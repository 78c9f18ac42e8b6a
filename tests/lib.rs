//! The end-to-end harness: starts a real `hybox serve` on loopback (port 0, a fresh data dir)
//! and talks to it over HTTP, as a client would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `hybox` binary next to the test binary (`target/<profile>/hybox`), or `HYBOX_BIN`.
///
/// # Panics
/// When the binary has not been built (`cargo build --release --bins` first).
#[must_use]
pub fn hybox_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HYBOX_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join("hybox");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release --bins` first",
        bin.display()
    );
    bin
}

/// The shared cache of guest artifacts and `.cwasm` (`HYBOX_CACHE_DIR`, default
/// `~/.cache/hybox`), so each test server does not compile the guests again.
#[must_use]
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HYBOX_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/hybox"),
        PathBuf::from,
    )
}

/// The container image store the test servers share (`HYBOX_IMAGE_DIR`, default
/// `<cache dir>/images`): the default image is built once there (`hybox image build`, which
/// `scripts/setup.sh` runs), never per test server.
#[must_use]
pub fn image_dir() -> PathBuf {
    std::env::var_os("HYBOX_IMAGE_DIR").map_or_else(|| cache_dir().join("images"), PathBuf::from)
}

/// An HTTP client for tests: error statuses are answers, not errors, and no request waits
/// longer than ten minutes.
#[must_use]
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// A running server, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
    agent: ureq::Agent,
    /// Bearer token sent with every request (from `--token` in the extra arguments).
    pub token: Option<String>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body as JSON (`Null` when not JSON).
    pub json: Value,
    /// Raw body.
    pub bytes: Vec<u8>,
    /// Content-Type header.
    pub content_type: String,
}

impl Server {
    /// Starts a server on a fresh data dir and waits until the wasm route is ready.
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut s = Self::start_in(&path, &[]);
        s._owned = Some(dir);
        s
    }

    /// Starts a server on `data_dir` with extra arguments.
    #[must_use]
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(hybox_bin());
        cmd.env("HYBOX_CACHE_DIR", cache_dir())
            .env("HYBOX_IMAGE_DIR", image_dir());
        Self::launch(cmd, data_dir, extra)
    }

    /// Starts `cmd` (a `hybox` binary with its environment, user and so on set) as
    /// `serve` on `data_dir` with extra arguments, and waits until the wasm route is ready.
    #[must_use]
    pub fn launch(mut cmd: Command, data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("HYBOX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hybox serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read readiness line");
        let base = line
            .trim()
            .strip_prefix("hybox listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let agent = agent();
        let server = Self {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            _owned: None,
            agent,
            token: extra
                .iter()
                .position(|a| *a == "--token")
                .and_then(|i| extra.get(i + 1))
                .map(|t| (*t).to_owned()),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let h = self.get("/v1/health");
            match h.json["wasi"].as_str() {
                Some("ready") => return,
                Some("failed") => panic!("wasm route failed to load: {:?}", h.json),
                _ => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "server not ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answer(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut resp = resp.expect("request reached the server");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(512 << 20)
            .read_to_vec()
            .expect("read body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            json,
            bytes,
            content_type,
        }
    }

    fn auth(&self) -> String {
        self.token
            .as_ref()
            .map_or_else(String::new, |t| format!("Bearer {t}"))
    }

    /// `GET path`.
    #[must_use]
    pub fn get(&self, path: &str) -> Answer {
        self.get_with_auth(path, &self.auth())
    }

    /// `GET path` with an explicit `Authorization` header value (empty: none).
    #[must_use]
    pub fn get_with_auth(&self, path: &str, auth: &str) -> Answer {
        let mut r = self.agent.get(format!("{}{path}", self.base));
        if !auth.is_empty() {
            r = r.header("authorization", auth);
        }
        Self::answer(r.call())
    }

    /// `DELETE path`.
    #[must_use]
    pub fn delete(&self, path: &str) -> Answer {
        Self::answer(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("authorization", self.auth())
                .call(),
        )
    }

    /// `POST path` with a JSON body.
    #[must_use]
    pub fn post(&self, path: &str, body: &Value) -> Answer {
        Self::answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .header("authorization", self.auth())
                .send(body.to_string()),
        )
    }

    /// `POST path` with raw bytes (`application/octet-stream`).
    #[must_use]
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> Answer {
        Self::answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/octet-stream")
                .header("authorization", self.auth())
                .send(body),
        )
    }

    /// `PUT path` with raw bytes.
    #[must_use]
    pub fn put_bytes(&self, path: &str, body: &[u8]) -> Answer {
        Self::answer(
            self.agent
                .put(format!("{}{path}", self.base))
                .header("authorization", self.auth())
                .send(body),
        )
    }

    /// `PUT path` with a JSON body.
    #[must_use]
    pub fn put(&self, path: &str, body: &Value) -> Answer {
        self.put_bytes(path, body.to_string().as_bytes())
    }

    /// `POST path` asking for an event stream; returns (event, data, arrival time) in order.
    #[must_use]
    pub fn post_sse(&self, path: &str, body: &Value) -> (u16, Vec<(String, Value, Instant)>) {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .header("authorization", self.auth())
            .send(body.to_string())
            .expect("request reached the server");
        let status = resp.status().as_u16();
        let mut events = Vec::new();
        read_sse(BufReader::new(resp.body_mut().as_reader()), |name, data| {
            let data = serde_json::from_str(data).expect("event data is JSON");
            events.push((name, data, Instant::now()));
            true
        })
        .expect("read stream");
        (status, events)
    }

    /// Opens a `GET` event stream; events arrive on the returned channel as (event, data) until
    /// the stream ends (dropping the receiver does not close the connection: the stream ends
    /// when the server closes it or the server stops).
    #[must_use]
    pub fn get_sse(&self, path: &str) -> (u16, std::sync::mpsc::Receiver<(String, Value)>) {
        let resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("accept", "text/event-stream")
            .header("authorization", self.auth())
            .call();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            let _ = tx.send((
                "error".to_owned(),
                serde_json::from_str(&body).unwrap_or(Value::Null),
            ));
            return (status, rx);
        }
        std::thread::spawn(move || {
            // A read error ends the stream like its end does.
            let _ = read_sse(
                BufReader::new(resp.into_body().into_reader()),
                |name, data| {
                    let data = serde_json::from_str(data).unwrap_or(Value::Null);
                    tx.send((name, data)).is_ok()
                },
            );
        });
        (status, rx)
    }

    /// The PID of the server process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates (or gets) a sandbox and returns its id.
    #[must_use]
    pub fn sandbox(&self, id: &str) -> String {
        let a = self.put(&format!("/v1/sandboxes/{id}"), &serde_json::json!({}));
        assert!(a.status == 200 || a.status == 201, "{a:?}");
        id.to_owned()
    }

    /// Names of the server's threads (`/proc/PID/task/*/comm`).
    #[must_use]
    pub fn thread_names(&self) -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return Vec::new();
        };
        tasks
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .collect()
    }

    /// CPU time the server has used, in clock ticks (utime + stime of `/proc/PID/stat`).
    #[must_use]
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the `(comm)`, which may contain spaces.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        num(11) + num(12)
    }

    /// The host directory behind a sandbox's `/workspace`: its copy-on-write view in the
    /// server's FUSE mount (`<data>/mnt/<id>`) or, with plain-directory workspaces, its folder.
    #[must_use]
    pub fn workspace(&self, id: &str) -> PathBuf {
        let view = self.data_dir.join("mnt").join(id);
        if self.mounted() {
            view
        } else {
            self.data_dir.join("sandboxes").join(id).join("workspace")
        }
    }

    /// Whether the server's workspace mount is up.
    #[must_use]
    pub fn mounted(&self) -> bool {
        let mnt = self.data_dir.join("mnt");
        std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap_or("")))
        })
    }

    /// Kills the server (as a crash would) and waits for it. The FUSE mount it leaves behind
    /// stays (a new server on the same data dir must recover it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server as an operator would (SIGTERM), waiting up to 10 s before killing it.
    /// Returns whether it exited by itself.
    pub fn stop(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        // A crashed server leaves its mount behind: detach it so the temp dir can go.
        if self.mounted() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.data_dir.join("mnt"))
                .status();
        }
    }
}

/// Reads Server-Sent Events, calling `each(event name, data)` for each until it returns false or
/// the stream ends.
///
/// # Errors
/// A failed read of the stream.
pub fn read_sse(
    reader: impl BufRead,
    mut each: impl FnMut(String, &str) -> bool,
) -> std::io::Result<()> {
    let mut name = String::new();
    for line in reader.lines() {
        let line = line?;
        if let Some(v) = line.strip_prefix("event: ") {
            name = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ")
            && !each(std::mem::take(&mut name), v)
        {
            break;
        }
    }
    Ok(())
}

/// Runs the `hybox` CLI against `server`, returning (exit code, stdout, stderr).
#[must_use]
pub fn cli(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(hybox_bin())
        .args(args)
        .env("HYBOX_SERVER", &server.base)
        .env("HYBOX_LOG", "warn")
        .output()
        .expect("run hybox cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
