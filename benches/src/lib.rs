//! Shared setup of hybox's criterion benches (`benches/benches/*.rs`): the wasm runtime over the
//! guest cache, a sandbox-like workspace to give guests, and (in [`http`]) a real `hybox serve`
//! with a keep-alive HTTP/1.1 connection to it.
//!
//! Everything here is setup: the benches call it outside their timed closures.
//!
//! The guest cache is the one the tests use (`HYBOX_CACHE_DIR`, default `~/.cache/hybox`). A
//! cold cache is filled by the first bench that needs it (minutes: the guests are fetched,
//! verified and compiled), before anything is timed.

pub mod http;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hybox_wasi_runtime::shell::{Script, ShellPlan, plan, programs};
use hybox_wasi_runtime::{
    ContextRun, EngineOptions, GuestSpec, Mount, NoTools, Runtime, artifacts,
};

/// The guest cache: `HYBOX_CACHE_DIR`, default `~/.cache/hybox`.
///
/// # Panics
/// When neither `HYBOX_CACHE_DIR` nor `HOME` is set.
#[must_use]
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HYBOX_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache/hybox"),
        PathBuf::from,
    )
}

/// The process's one runtime (engine, pooling allocator, both interpreters and the toolbox
/// loaded), built on first use with [`EngineOptions::default()`], as `hybox serve` does.
///
/// # Panics
/// When the guest artifacts cannot be had or the engine cannot load them.
#[must_use]
pub fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        let cache = cache_dir();
        let files = artifacts::ensure(&cache, &|l| eprintln!("{l}")).expect("guest artifacts");
        let rt = Runtime::new(files, &cache, EngineOptions::default(), &|l| {
            eprintln!("{l}");
        })
        .expect("wasm runtime");
        Arc::new(rt)
    })
    .clone()
}

/// A sandbox's workspace: a temporary folder mounted writable at `/workspace`, removed on drop.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A new, empty workspace.
    ///
    /// # Panics
    /// When no temporary folder can be made.
    #[must_use]
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("workspace tempdir"),
        }
    }

    /// The host folder.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// What a guest of this workspace is given: cwd `/workspace`, no environment, the
    /// workspace mounted writable, a 1 GiB memory cap, no tools.
    #[must_use]
    pub fn spec(&self) -> GuestSpec {
        GuestSpec {
            cwd: "/workspace".into(),
            env: vec![],
            mounts: vec![Mount {
                host: self.dir.path().to_path_buf(),
                guest: "/workspace".into(),
                writable: true,
            }],
            memory_limit: 1 << 30,
            tools: Arc::new(NoTools),
        }
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// Plans `line` as the server does (toolbox commands when `runtime` has the toolbox,
/// interpreters, builtins).
///
/// # Panics
/// When the line is declined: a bench must time the wasm route, not a decline.
#[must_use]
pub fn planned(runtime: &Runtime, line: &str) -> Script {
    let has_toolbox = runtime.has_toolbox();
    match plan(line, &|name| programs::provides(name, has_toolbox)) {
        ShellPlan::Run(script) => script,
        ShellPlan::Decline(why) => panic!("{line:?} is declined: {why}"),
    }
}

/// The `text/plain` of a run's first result, for checking a run before it is timed.
///
/// # Panics
/// When the run failed or has no text result.
#[must_use]
pub fn first_text(run: &ContextRun) -> String {
    assert!(
        run.outcome.error.is_none() && run.outcome.trap.is_none(),
        "run failed: {:?}",
        run.outcome
    );
    run.outcome
        .results
        .first()
        .and_then(|r| r.get("text/plain"))
        .and_then(serde_json::Value::as_str)
        .expect("a text/plain result")
        .to_owned()
}
