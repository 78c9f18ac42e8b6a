//! The wasm backend adapter: loads the guest runtime once in the background (so `hybox serve`
//! answers at once on a cold start) and runs contexts and programs off the async threads.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OnceCell};

use hybox_wasi_runtime::{
    Context, EngineOptions, GuestSpec, Language, Mount, NoTools, Runtime, artifacts,
};

use crate::api::error::ApiError;
use crate::workspaces::Workspaces;

/// How long the pool waits after a take before building the replacement.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(150);

/// Memory cap of pool spares; a sandbox asking for another cap gets fresh instances.
pub const SPARE_MEMORY_MB: u64 = 1024;

/// A pair of interpreters started ahead of time against a pool slot's own (empty) workspace
/// and tmp folders. A new sandbox takes one by renaming those folders into its own directory:
/// the guests' open directory handles follow the rename, so the first context of a new sandbox
/// is ready at once instead of after an instantiation and a shim turn.
#[derive(Debug)]
pub struct Spare {
    /// The slot folder holding `tmp/` (and `workspace/` in extract mode).
    pub slot: PathBuf,
    /// The slot's number (its view is `.slot-<n>` in mount mode).
    pub n: u64,
    /// The slot workspace's layers.
    pub layout: crate::workspaces::Layout,
    /// A Python context, shim installed, in `/workspace`.
    pub python: Context,
    /// A JavaScript context in `/workspace`.
    pub js: Context,
}

#[derive(Debug)]
struct Pool {
    dir: PathBuf,
    target: usize,
    spares: Mutex<VecDeque<Spare>>,
    wake: Notify,
    next: AtomicU64,
}

/// The wasm route's runtime, loaded lazily, and its pool of spare interpreters.
#[derive(Debug)]
pub struct WasiBackend {
    cache_dir: PathBuf,
    options: EngineOptions,
    runtime: OnceCell<Result<Arc<Runtime>, String>>,
    pool: Arc<Pool>,
    workspaces: Arc<Workspaces>,
}

/// The guest view of a sandbox folder pair (its workspace and tmp).
#[must_use]
pub fn mounts(workspace: &Path, tmp: &Path) -> Vec<Mount> {
    vec![
        Mount {
            host: workspace.to_path_buf(),
            guest: "/workspace".into(),
            writable: true,
        },
        Mount {
            host: tmp.to_path_buf(),
            guest: "/tmp".into(),
            writable: true,
        },
    ]
}

fn make_spare(
    runtime: &Arc<Runtime>,
    workspaces: &Workspaces,
    n: u64,
    slot: PathBuf,
) -> anyhow::Result<Spare> {
    let tmp = slot.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let (ws, layout) = workspaces.slot(n, &slot)?;
    let spec = GuestSpec {
        cwd: "/workspace".into(),
        env: Vec::new(),
        mounts: mounts(&ws, &tmp),
        memory_limit: SPARE_MEMORY_MB << 20,
        tools: Arc::new(NoTools),
    };
    let python = Context::start(runtime, Language::Python, spec.clone())?;
    let js = Context::start(runtime, Language::JavaScript, spec)?;
    Ok(Spare {
        slot,
        n,
        layout,
        python,
        js,
    })
}

impl WasiBackend {
    /// A backend that will load its guests from `cache_dir` and keep `pool_size` spares in
    /// `pool_dir` (which must be on the same filesystem as the sandboxes).
    #[must_use]
    pub fn new(
        cache_dir: PathBuf,
        options: EngineOptions,
        pool_dir: PathBuf,
        pool_size: usize,
        workspaces: Arc<Workspaces>,
    ) -> Self {
        // Slots of an earlier run are useless (their guests died with it).
        let _ = std::fs::remove_dir_all(&pool_dir);
        Self {
            cache_dir,
            options,
            runtime: OnceCell::new(),
            pool: Arc::new(Pool {
                dir: pool_dir,
                target: pool_size,
                spares: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                next: AtomicU64::new(0),
            }),
            workspaces,
        }
    }

    /// Takes a spare, if one is ready, and asks for a replacement.
    pub fn take_spare(&self) -> Option<Spare> {
        let spare = self
            .pool
            .spares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        self.pool.wake.notify_one();
        spare
    }

    fn start_refill(&self, runtime: Arc<Runtime>) {
        let pool = self.pool.clone();
        let workspaces = self.workspaces.clone();
        if pool.target == 0 {
            return;
        }
        tokio::spawn(async move {
            loop {
                let have = pool
                    .spares
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len();
                if have >= pool.target {
                    pool.wake.notified().await;
                    // A spare is taken when a sandbox is created, and its first requests follow
                    // at once: building the replacement right then would compete with them for
                    // the CPU. Wait for the burst to pass.
                    tokio::time::sleep(REFILL_DELAY).await;
                    continue;
                }
                let n = pool.next.fetch_add(1, Ordering::Relaxed);
                let slot = pool.dir.join(format!("slot-{n}"));
                let rt = runtime.clone();
                let ws = workspaces.clone();
                match tokio::task::spawn_blocking(move || make_spare(&rt, &ws, n, slot)).await {
                    Ok(Ok(spare)) => pool
                        .spares
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push_back(spare),
                    Ok(Err(_)) if workspaces.is_closed() => return, // shutting down
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot start a spare interpreter; pool paused");
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "spare builder panicked");
                        return;
                    }
                }
            }
        });
    }

    /// The runtime, loading it on first use (fetching and compiling guests if the cache is
    /// empty, which takes minutes once; then tens of milliseconds).
    ///
    /// # Errors
    /// [`ApiError::RuntimeUnavailable`] when the guests cannot be had.
    pub async fn runtime(&self) -> Result<Arc<Runtime>, ApiError> {
        let loaded = self
            .runtime
            .get_or_init(|| async {
                let cache = self.cache_dir.clone();
                let options = self.options.clone();
                let started = std::time::Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let say = |line: &str| tracing::info!(step = line, "preparing the wasm route");
                    let files = artifacts::ensure(&cache, &say)?;
                    Runtime::new(files, &cache, options, &say)
                })
                .await;
                match result {
                    Ok(Ok(rt)) => {
                        for (name, compiled, ms) in &rt.load_report.modules {
                            tracing::info!(module = %name, compiled, ms, "guest loaded");
                        }
                        tracing::info!(
                            ms = started.elapsed().as_secs_f64() * 1e3,
                            "wasm route ready"
                        );
                        let rt = Arc::new(rt);
                        self.start_refill(rt.clone());
                        Ok(rt)
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "wasm route unavailable");
                        Err(e.to_string())
                    }
                    Err(e) => Err(format!("loader panicked: {e}")),
                }
            })
            .await;
        loaded.clone().map_err(ApiError::RuntimeUnavailable)
    }

    /// Whether the runtime has finished loading (successfully or not).
    #[must_use]
    pub fn state(&self) -> &'static str {
        match self.runtime.get() {
            None => "loading",
            Some(Ok(_)) => "ready",
            Some(Err(_)) => "failed",
        }
    }
}
