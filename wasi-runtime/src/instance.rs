//! Building one guest instance: its WASI context (args, env, stdio, preopens), its store (limits,
//! epoch callback), and the mapping of how a call ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Instance, Store, UpdateDeadline};
use wasmtime_wasi::cli::StdinStream;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, I32Exit, WasiCtxBuilder};

use crate::door::ToolHost;
use crate::engine::{Guest, GuestState, MemoryCap, Runtime, StopTrap};
use crate::error::{Error, Result};
use crate::output::{OutputSink, WriteFn};
use crate::run::{RunShared, StopReason, Stream};

/// A host directory a guest sees at a guest path.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The folder on the host.
    pub host: PathBuf,
    /// Where the guest sees it (`/workspace`).
    pub guest: String,
    /// Whether the guest may write.
    pub writable: bool,
}

/// What every guest instance of a sandbox is given.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// Working directory, a guest path (`/workspace`).
    pub cwd: String,
    /// Environment, already merged by precedence.
    pub env: Vec<(String, String)>,
    /// Folders the guest may see, beyond the interpreter's own.
    pub mounts: Vec<Mount>,
    /// Memory cap in bytes.
    pub memory_limit: u64,
    /// Tools offered through the door.
    pub tools: Arc<dyn ToolHost>,
}

/// A monotonic clock whose origin the host knows, so an absolute-time `poll_oneoff` from the
/// guest can be turned into a wait.
struct OriginClock(Instant);

impl HostMonotonicClock for OriginClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// How one call into the guest ended.
#[derive(Debug)]
pub(crate) enum CallEnd<T> {
    /// It returned.
    Returned(T),
    /// The guest called `proc_exit`.
    Exited(i32),
    /// The host stopped it.
    Stopped(StopReason),
    /// It trapped (the instance must not be used again).
    Trapped(String),
}

/// Interprets a call's result against the run's state.
pub(crate) fn call_end<T>(result: wasmtime::Result<T>, run: &RunShared) -> CallEnd<T> {
    match result {
        Ok(v) => CallEnd::Returned(v),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return CallEnd::Exited(exit.0);
            }
            if let Some(reason) = run.lock().stop {
                return CallEnd::Stopped(reason);
            }
            if e.downcast_ref::<StopTrap>().is_some() {
                return CallEnd::Stopped(StopReason::Cancelled);
            }
            CallEnd::Trapped(format!("{e:#}"))
        }
    }
}

/// A live instance with its store.
pub(crate) struct Live {
    pub store: Store<GuestState>,
    pub instance: Instance,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

/// A guest's standard streams.
pub(crate) struct Stdio {
    /// Where stdout goes.
    pub stdout: WriteFn,
    /// Where stderr goes.
    pub stderr: WriteFn,
    /// stdin, empty when `None`.
    pub stdin: Option<Box<dyn StdinStream>>,
}

/// How one instance is launched, beyond the sandbox-wide [`GuestSpec`].
pub(crate) struct Launch<'a> {
    /// WASI argv.
    pub args: &'a [String],
    /// Mounted before the spec's: the interpreter's own read-only folders, whose order the
    /// Python snapshot depends on.
    pub extra_mounts: &'a [Mount],
    /// Where stdout goes.
    pub stdout: WriteFn,
    /// Where stderr goes.
    pub stderr: WriteFn,
    /// stdin, empty when `None`.
    pub stdin: Option<Box<dyn StdinStream>>,
}

/// Instantiates `guest` for `spec` as `launch` says, sharing `run` with its streams.
pub(crate) fn instantiate(
    runtime: &Runtime,
    guest: &Guest,
    spec: &GuestSpec,
    launch: Launch<'_>,
    run: RunShared,
) -> Result<Live> {
    let Launch {
        args,
        extra_mounts,
        stdout,
        stderr,
        stdin,
    } = launch;
    let origin = Instant::now();
    let mut b = WasiCtxBuilder::new();
    b.args(args)
        .envs(&spec.env)
        .stdout(OutputSink(stdout))
        .stderr(OutputSink(stderr))
        .monotonic_clock(OriginClock(origin))
        .allow_blocking_current_thread(true);
    if let Some(stdin) = stdin {
        b.stdin(StdinBox(stdin));
    }
    for m in extra_mounts.iter().chain(&spec.mounts) {
        let perms = if m.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(&m.host, &m.guest, perms).map_err(|e| {
            Error::engine(format!(
                "cannot open {} for the guest: {e}",
                m.host.display()
            ))
        })?;
    }
    let state = GuestState {
        wasi: b.build_p1(),
        limiter: MemoryCap {
            limit: spec.memory_limit.min(runtime.options.max_memory),
            hit: false,
        },
        run: run.clone(),
        tools: spec.tools.clone(),
        clock_origin: origin,
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        if ctx.data().run.should_stop().is_some() {
            return Err(wasmtime::Error::new(StopTrap));
        }
        Ok(UpdateDeadline::Continue(1))
    });
    let instance = guest.pre.instantiate(&mut store).map_err(|e| {
        let text = format!("{e:#}");
        // The pooling allocator's refusal when every slot is taken.
        if text.contains("concurrent") && text.contains("limit") {
            Error::Capacity(text)
        } else {
            Error::engine(format!("instantiate: {text}"))
        }
    })?;
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
        init.call(&mut store, ())
            .map_err(|e| Error::engine(format!("_initialize: {e:#}")))?;
    }
    Ok(Live { store, instance })
}

/// The default stdout/stderr writers: straight into the run state.
pub(crate) fn run_writers(run: &RunShared) -> (WriteFn, WriteFn) {
    let out = run.clone();
    let err = run.clone();
    (
        Arc::new(move |b: &[u8]| {
            out.write(Stream::Stdout, b);
            Ok(())
        }),
        Arc::new(move |b: &[u8]| {
            err.write(Stream::Stderr, b);
            Ok(())
        }),
    )
}

/// `WasiCtxBuilder::stdin` takes a concrete type; this forwards to a boxed one.
struct StdinBox(Box<dyn StdinStream>);

impl wasmtime_wasi::cli::IsTerminal for StdinBox {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for StdinBox {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        self.0.async_stream()
    }
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::InputStream> {
        self.0.p2_stream()
    }
}
