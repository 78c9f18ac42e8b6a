//! Runs a planned script: builtins that change the session (`cd`, `export`, `unset`, `exit`) and
//! the cheap ones (`echo`, `pwd`, `true`, `false`, `:`) in the host, as bash does; every other
//! command as a guest; a pipeline as concurrent guests connected by bounded pipes.
//!
//! All guests of one script share one run: one deadline, one cancel, one output cap, and what
//! reaches the script's stdout and stderr streams live to the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{InputFile, StdinStream};

use super::expand::{self, Scope};
use super::fs::{GuestFs, absolute};
use super::plan::{Connector, Pipeline, Redirect, Script, SimpleCommand};
use super::programs::{self, Stage};
use crate::context::Program;
use crate::engine::{GUEST_THREAD_STACK, Runtime};
use crate::error::{Error, Result};
use crate::instance::{CallEnd, GuestSpec, Launch, Stdio, call_end, instantiate};
use crate::output::{SinkError, StopCheck, WriteFn};
use crate::pipe::{PipeReader, pipe};
use crate::python::{Mode, PythonProgram, PythonSession};
use crate::run::{EventSink, RunLimits, RunOutcome, RunShared, Stream};

use super::parse::BUILTINS;

/// A session's shell state: what persists from one command line to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellState {
    /// Working directory (guest path).
    pub cwd: String,
    /// Shell variables.
    pub vars: BTreeMap<String, String>,
    /// Which variables are exported to commands.
    pub exported: BTreeSet<String>,
    /// `$?`.
    pub last_status: i32,
    /// Functions and aliases a command on the container route defined, as bash prints them
    /// (`declare -f; alias -p`): they belong to the session, though this shell has neither.
    pub functions: String,
}

impl ShellState {
    /// A state in `cwd` with `env` exported.
    #[must_use]
    pub fn new(cwd: &str, env: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: BTreeMap<String, String> = env.into_iter().collect();
        Self {
            cwd: cwd.to_owned(),
            exported: vars.keys().cloned().collect(),
            vars,
            last_status: 0,
            functions: String::new(),
        }
    }

    /// The exported environment.
    #[must_use]
    pub fn environment(&self) -> Vec<(String, String)> {
        self.exported
            .iter()
            .filter_map(|k| self.vars.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

/// A command's standard input.
enum Input {
    Empty,
    Pipe(PipeReader),
    File(std::fs::File),
}

impl Input {
    fn into_stream(self) -> Option<Box<dyn StdinStream>> {
        match self {
            Self::Empty => None,
            Self::Pipe(r) => Some(Box::new(r)),
            Self::File(f) => Some(Box::new(InputFile::new(f))),
        }
    }
}

/// One command's streams before it starts.
struct Fds {
    stdin: Input,
    stdout: WriteFn,
    stderr: WriteFn,
}

fn say(out: &WriteFn, text: &str) {
    // A builtin writing into a closed pipe is not an error worth reporting, as in bash.
    let _ = out(text.as_bytes());
}

fn file_writer(file: std::fs::File) -> WriteFn {
    let file = Mutex::new(file);
    Arc::new(move |b: &[u8]| {
        file.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write_all(b)
            .map_err(SinkError::Failed)
    })
}

struct Exec<'a> {
    runtime: &'a Arc<Runtime>,
    base: &'a GuestSpec,
    fs: GuestFs,
    run: RunShared,
    stop: StopCheck,
    state: &'a mut ShellState,
    exit: Option<i32>,
}

/// Runs `script` with the session state `state` (updated in place: `cd`, `export`, `$?`).
/// `base` gives the mounts, memory cap and tools; its cwd and env are ignored (the state's
/// are used).
///
/// # Errors
/// [`Error::Io`] when the sandbox's folders cannot be opened.
pub fn run_script(
    runtime: &Arc<Runtime>,
    base: &GuestSpec,
    script: &Script,
    state: &mut ShellState,
    limits: &RunLimits,
    sink: Option<EventSink>,
) -> Result<RunOutcome> {
    let fs = GuestFs::new(&base.mounts).map_err(|e| Error::io("open the sandbox's folders", e))?;
    let run = RunShared::new();
    run.begin(limits, sink);
    let stop_run = run.clone();
    let stop: StopCheck = Arc::new(move || stop_run.should_stop().is_some());
    let mut exec = Exec {
        runtime,
        base,
        fs,
        run: run.clone(),
        stop,
        state,
        exit: None,
    };
    exec.script(script);
    let mut outcome = run.finish();
    outcome.exit_code = Some(exec.exit.unwrap_or(exec.state.last_status));
    Ok(outcome)
}

impl Exec<'_> {
    fn stopped(&self) -> bool {
        self.exit.is_some() || self.run.should_stop().is_some()
    }

    fn run_out(&self) -> WriteFn {
        let run = self.run.clone();
        Arc::new(move |b: &[u8]| {
            run.write(Stream::Stdout, b);
            Ok(())
        })
    }

    fn run_err(&self) -> WriteFn {
        let run = self.run.clone();
        Arc::new(move |b: &[u8]| {
            run.write(Stream::Stderr, b);
            Ok(())
        })
    }

    fn script(&mut self, script: &Script) {
        for list in &script.lists {
            let mut status = self.pipeline(&list.first);
            self.state.last_status = status;
            for (connector, pipeline) in &list.rest {
                if self.stopped() {
                    break;
                }
                let go = match connector {
                    Connector::And => status == 0,
                    Connector::Or => status != 0,
                };
                if go {
                    status = self.pipeline(pipeline);
                    self.state.last_status = status;
                }
            }
            if self.stopped() {
                break;
            }
        }
    }

    fn pipeline(&mut self, p: &Pipeline) -> i32 {
        let status = if let [only] = p.commands.as_slice() {
            self.single(only)
        } else {
            self.concurrent(&p.commands)
        };
        if p.negated {
            i32::from(status == 0)
        } else {
            status
        }
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            vars: &self.state.vars,
            last_status: self.state.last_status,
            cwd: &self.state.cwd,
        }
    }

    /// Expands a command: (assignments, argv).
    fn expand(&self, cmd: &SimpleCommand) -> (Vec<(String, String)>, Vec<String>) {
        let scope = self.scope();
        let assigns = cmd
            .assignments
            .iter()
            .map(|(k, v)| (k.clone(), expand::single(v, &scope)))
            .collect();
        let argv = cmd
            .words
            .iter()
            .flat_map(|w| expand::fields(w, &scope, &self.fs))
            .collect();
        (assigns, argv)
    }

    /// Applies redirections to `fds`; an error message for stderr when a target cannot open.
    fn redirect(&self, redirects: &[Redirect], fds: &mut Fds) -> std::result::Result<(), String> {
        let scope = self.scope();
        for r in redirects {
            match r {
                Redirect::Output { fd, target, append } => {
                    let name = expand::single(target, &scope);
                    let path = absolute(&self.state.cwd, &name);
                    let writer = if path == "/dev/null" {
                        let discard: WriteFn = Arc::new(|_: &[u8]| Ok(()));
                        discard
                    } else {
                        let file = self
                            .fs
                            .open_write(&path, *append)
                            .map_err(|e| format!("hybox: {name}: {}\n", io_message(&e)))?;
                        file_writer(file)
                    };
                    match fd {
                        1 => fds.stdout = writer,
                        2 => fds.stderr = writer,
                        other => {
                            return Err(format!("hybox: {other}: unsupported file descriptor\n"));
                        }
                    }
                }
                Redirect::Input { fd, target } => {
                    let name = expand::single(target, &scope);
                    let path = absolute(&self.state.cwd, &name);
                    if path == "/dev/null" {
                        fds.stdin = Input::Empty;
                        continue;
                    }
                    let file = self
                        .fs
                        .open_read(&path)
                        .map_err(|e| format!("hybox: {name}: {}\n", io_message(&e)))?;
                    if *fd != 0 {
                        return Err(format!("hybox: {fd}: unsupported file descriptor\n"));
                    }
                    fds.stdin = Input::File(file);
                }
                Redirect::Duplicate { fd, to } => match (fd, to) {
                    (1, 2) => fds.stdout = fds.stderr.clone(),
                    (2, 1) => fds.stderr = fds.stdout.clone(),
                    (a, b) if a == b => {}
                    (a, b) => {
                        return Err(format!("hybox: {a}>&{b}: unsupported file descriptor\n"));
                    }
                },
            }
        }
        Ok(())
    }

    /// A pipeline of one command: builtins change the session.
    fn single(&mut self, cmd: &SimpleCommand) -> i32 {
        let (assigns, argv) = self.expand(cmd);
        let mut fds = Fds {
            stdin: Input::Empty,
            stdout: self.run_out(),
            stderr: self.run_err(),
        };
        if let Err(msg) = self.redirect(&cmd.redirects, &mut fds) {
            say(&fds.stderr, &msg);
            return 1;
        }
        let Some(name) = argv.first() else {
            // Bare assignments set shell variables (exported ones stay exported).
            for (k, v) in assigns {
                self.state.vars.insert(k, v);
            }
            return 0;
        };
        if BUILTINS.contains(&name.as_str()) {
            return self.builtin(&argv, &fds.stdout, &fds.stderr);
        }
        self.guest(&argv, assigns, fds)
    }

    /// A pipeline of several commands, run concurrently.
    fn concurrent(&mut self, commands: &[SimpleCommand]) -> i32 {
        let n = commands.len();
        let mut readers: Vec<Option<PipeReader>> = Vec::with_capacity(n);
        let mut writers = Vec::with_capacity(n);
        for _ in 1..n {
            let (w, r) = pipe(self.stop.clone());
            writers.push(Some(w));
            readers.push(Some(r));
        }
        let mut handles = Vec::with_capacity(n);
        for (i, cmd) in commands.iter().enumerate() {
            let (assigns, argv) = self.expand(cmd);
            let stdin = if i == 0 {
                Input::Empty
            } else {
                readers[i - 1].take().map_or(Input::Empty, Input::Pipe)
            };
            let stdout = if i + 1 == n {
                self.run_out()
            } else {
                writers[i]
                    .take()
                    .map_or_else(|| self.run_out(), |w| w.into_write_fn(self.stop.clone()))
            };
            let mut fds = Fds {
                stdin,
                stdout,
                stderr: self.run_err(),
            };
            if let Err(msg) = self.redirect(&cmd.redirects, &mut fds) {
                say(&fds.stderr, &msg);
                handles.push(StageHandle::Done(1));
                continue;
            }
            handles.push(self.spawn(argv, assigns, fds));
        }
        let mut status = 0;
        for h in handles {
            status = h.join();
        }
        status
    }

    /// Starts one stage of a pipeline on its own thread.
    fn spawn(&self, argv: Vec<String>, assigns: Vec<(String, String)>, fds: Fds) -> StageHandle {
        let Some(name) = argv.first().cloned() else {
            return StageHandle::Done(0);
        };
        if BUILTINS.contains(&name.as_str()) {
            // In a pipeline a builtin runs in a subshell: its changes do not reach the session.
            let mut sub = self.state.clone();
            let out = fds.stdout;
            let err = fds.stderr;
            let status = builtin(&mut sub, &self.fs, &argv, &out, &err).0;
            return StageHandle::Done(status);
        }
        let job = match self.job(&argv, assigns) {
            Ok(job) => job,
            Err(msg) => {
                say(&fds.stderr, &format!("hybox: {msg}\n"));
                return StageHandle::Done(127);
            }
        };
        let runtime = self.runtime.clone();
        let run = self.run.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("hybox-stage-{name}"))
            .stack_size(GUEST_THREAD_STACK)
            .spawn(move || run_job(&runtime, job, fds, &run));
        match spawned {
            Ok(h) => StageHandle::Thread(h),
            Err(_) => StageHandle::Done(126),
        }
    }

    fn guest(&mut self, argv: &[String], assigns: Vec<(String, String)>, fds: Fds) -> i32 {
        match self.job(argv, assigns) {
            Ok(job) => {
                let (runtime, run) = (self.runtime.clone(), self.run.clone());
                let spawned = std::thread::Builder::new()
                    .name("hybox-stage".into())
                    .stack_size(GUEST_THREAD_STACK)
                    .spawn(move || run_job(&runtime, job, fds, &run));
                match spawned {
                    Ok(h) => StageHandle::Thread(h).join(),
                    Err(_) => 126,
                }
            }
            Err(msg) => {
                say(&fds.stderr, &format!("hybox: {msg}\n"));
                127
            }
        }
    }

    /// What a guest command needs: its stage and its spec (cwd, env with PWD).
    fn job(
        &self,
        argv: &[String],
        assigns: Vec<(String, String)>,
    ) -> std::result::Result<Job, String> {
        let stage = programs::stage(argv, self.runtime.has_toolbox())?;
        let mut env: BTreeMap<String, String> = self.state.environment().into_iter().collect();
        env.extend(assigns);
        env.insert("PWD".into(), self.state.cwd.clone());
        let spec = GuestSpec {
            cwd: self.state.cwd.clone(),
            env: env.into_iter().collect(),
            mounts: self.base.mounts.clone(),
            memory_limit: self.base.memory_limit,
            tools: self.base.tools.clone(),
        };
        Ok(Job { stage, spec })
    }

    fn builtin(&mut self, argv: &[String], out: &WriteFn, err: &WriteFn) -> i32 {
        let (status, exit) = builtin(self.state, &self.fs, argv, out, err);
        if exit {
            self.exit = Some(status);
        }
        status
    }
}

enum StageHandle {
    Done(i32),
    Thread(std::thread::JoinHandle<i32>),
}

impl StageHandle {
    fn join(self) -> i32 {
        match self {
            Self::Done(s) => s,
            Self::Thread(h) => h.join().unwrap_or(134),
        }
    }
}

struct Job {
    stage: Stage,
    spec: GuestSpec,
}

/// Runs a guest to its end and returns its exit status. The streams are dropped when it ends,
/// which is what closes a pipe for the next stage.
fn run_job(runtime: &Arc<Runtime>, job: Job, fds: Fds, run: &RunShared) -> i32 {
    let err = fds.stderr.clone();
    let stdio = Stdio {
        stdout: fds.stdout,
        stderr: fds.stderr,
        stdin: fds.stdin.into_stream(),
    };
    let name = match &job.stage {
        Stage::Toolbox(argv) => argv.first().cloned().unwrap_or_default(),
        Stage::Program(Program::Python { .. }) => "python3".into(),
        Stage::Program(Program::JavaScript { .. }) => "node".into(),
    };
    let end = match job.stage {
        Stage::Toolbox(argv) => toolbox(runtime, &job.spec, argv, stdio, run),
        Stage::Program(Program::Python { argv, program }) => {
            let program = match program {
                PythonProgram::File(f) => PythonProgram::File(absolute(&job.spec.cwd, &f)),
                other => other,
            };
            PythonSession::start_with(runtime, &job.spec, Mode::Program, stdio, run.clone(), false)
                .map(|mut s| s.run_main(&argv, &program, &RunLimits::default(), None).0)
        }
        Stage::Program(Program::JavaScript { mut args }) => {
            if let Some(first) = args.first_mut()
                && !first.starts_with('-')
            {
                *first = absolute(&job.spec.cwd, first);
            }
            let mut argv = vec!["qjs".to_owned(), "--std".to_owned()];
            argv.extend(args);
            crate::js::run_program(runtime, &job.spec, &argv, stdio, run)
        }
    };
    match end {
        Ok(CallEnd::Returned(v)) => i32::from(v != 0),
        Ok(CallEnd::Exited(code)) => code,
        Ok(CallEnd::Stopped(_)) => 130,
        Ok(CallEnd::Trapped(why)) => {
            say(
                &err,
                &format!(
                    "hybox: {name}: guest crashed: {}\n",
                    why.lines().next().unwrap_or("")
                ),
            );
            134
        }
        Err(e) => {
            say(&err, &format!("hybox: {name}: {e}\n"));
            126
        }
    }
}

fn toolbox(
    runtime: &Arc<Runtime>,
    spec: &GuestSpec,
    argv: Vec<String>,
    stdio: Stdio,
    run: &RunShared,
) -> Result<CallEnd<i32>> {
    let guest = runtime
        .toolbox
        .as_ref()
        .ok_or_else(|| Error::Engine("the toolbox guest was not built".into()))?;
    let mut live = instantiate(
        runtime,
        guest,
        spec,
        Launch {
            args: &argv,
            extra_mounts: &[],
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            stdin: stdio.stdin,
        },
        run.clone(),
    )?;
    let start = live
        .instance
        .get_typed_func::<(), ()>(&mut live.store, "_start")
        .map_err(Error::engine)?;
    let result = start.call(&mut live.store, ()).map(|()| 0);
    Ok(call_end(result, run))
}

fn io_message(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory",
        std::io::ErrorKind::PermissionDenied => "Permission denied",
        std::io::ErrorKind::IsADirectory => "Is a directory",
        std::io::ErrorKind::NotADirectory => "Not a directory",
        _ => "cannot open",
    }
}

/// Whether `name` is a shell variable name (`[A-Za-z_][A-Za-z0-9_]*`): what `export` accepts
/// and what an environment name must be to reach a command intact.
#[must_use]
pub fn is_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Runs a builtin: (status, whether the script must exit).
fn builtin(
    state: &mut ShellState,
    fs: &GuestFs,
    argv: &[String],
    out: &WriteFn,
    err: &WriteFn,
) -> (i32, bool) {
    let name = argv[0].as_str();
    let args = &argv[1..];
    match name {
        ":" | "true" => (0, false),
        "false" => (1, false),
        "pwd" => {
            say(out, &format!("{}\n", state.cwd));
            (0, false)
        }
        "echo" => {
            say(out, &echo(args));
            (0, false)
        }
        "exit" => match args.first() {
            None => (state.last_status, true),
            Some(n) => match n.parse::<i64>() {
                Ok(v) => (i32::try_from(v.rem_euclid(256)).unwrap_or(0), true),
                Err(_) => {
                    say(
                        err,
                        &format!("hybox: exit: {n}: numeric argument required\n"),
                    );
                    (2, true)
                }
            },
        },
        "cd" => {
            let target = match args.first().map(String::as_str) {
                None => state
                    .vars
                    .get("HOME")
                    .cloned()
                    .unwrap_or_else(|| "/workspace".into()),
                Some("-") => match state.vars.get("OLDPWD") {
                    Some(old) => {
                        say(out, &format!("{old}\n"));
                        old.clone()
                    }
                    None => {
                        say(err, "hybox: cd: OLDPWD not set\n");
                        return (1, false);
                    }
                },
                Some(dir) => dir.to_owned(),
            };
            let abs = absolute(&state.cwd, &target);
            if !fs.is_dir(&abs) {
                let why = if fs.exists(&abs) {
                    "Not a directory"
                } else {
                    "No such file or directory"
                };
                say(err, &format!("hybox: cd: {target}: {why}\n"));
                return (1, false);
            }
            let old = std::mem::replace(&mut state.cwd, abs.clone());
            state.vars.insert("OLDPWD".into(), old);
            state.vars.insert("PWD".into(), abs);
            (0, false)
        }
        "export" => {
            if args.is_empty() || args[0] == "-p" {
                let mut listing = String::new();
                for (k, v) in state.environment() {
                    listing.push_str(&format!(
                        "declare -x {k}=\"{}\"\n",
                        v.replace('\\', "\\\\").replace('"', "\\\"")
                    ));
                }
                say(out, &listing);
                return (0, false);
            }
            let mut status = 0;
            for a in args {
                let (k, v) = match a.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (a.as_str(), None),
                };
                if !is_name(k) {
                    say(
                        err,
                        &format!("hybox: export: `{a}': not a valid identifier\n"),
                    );
                    status = 1;
                    continue;
                }
                if let Some(v) = v {
                    state.vars.insert(k.to_owned(), v.to_owned());
                }
                state.exported.insert(k.to_owned());
            }
            (status, false)
        }
        "unset" => {
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                state.vars.remove(a);
                state.exported.remove(a);
            }
            (0, false)
        }
        _ => (127, false),
    }
}

/// bash's builtin `echo`: `-n`, `-e`, `-E` (combinable), escapes only with `-e`.
fn echo(args: &[String]) -> String {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let Some(flags) = a.strip_prefix('-') else {
            break;
        };
        if flags.is_empty() || !flags.chars().all(|c| matches!(c, 'n' | 'e' | 'E')) {
            break;
        }
        for c in flags.chars() {
            match c {
                'n' => newline = false,
                'e' => escapes = true,
                _ => escapes = false,
            }
        }
        i += 1;
    }
    let text = args[i..].join(" ");
    let mut out = String::with_capacity(text.len() + 1);
    if escapes {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('a') => out.push('\x07'),
                Some('b') => out.push('\x08'),
                Some('e' | 'E') => out.push('\x1b'),
                Some('f') => out.push('\x0c'),
                Some('v') => out.push('\x0b'),
                Some('\\') => out.push('\\'),
                Some('c') => return out,
                Some('0') => {
                    let mut v = 0u32;
                    for _ in 0..3 {
                        match chars.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(v).unwrap_or('\0'));
                }
                Some('x') => {
                    let mut v = 0u32;
                    let mut n = 0;
                    while n < 2 {
                        match chars.peek().and_then(|d| d.to_digit(16)) {
                            Some(d) => {
                                v = v * 16 + d;
                                chars.next();
                                n += 1;
                            }
                            None => break,
                        }
                    }
                    if n == 0 {
                        out.push_str("\\x");
                    } else {
                        out.push(char::from_u32(v).unwrap_or('\0'));
                    }
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        }
    } else {
        out.push_str(&text);
    }
    if newline {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn echo_follows_bash() {
        assert_eq!(echo(&s(&["a", "b"])), "a b\n");
        assert_eq!(echo(&s(&["-n", "a"])), "a");
        assert_eq!(echo(&s(&["-e", "a\\tb\\n"])), "a\tb\n\n");
        assert_eq!(echo(&s(&["a\\tb"])), "a\\tb\n");
        assert_eq!(echo(&s(&["-ne", "x\\cy"])), "x");
        assert_eq!(echo(&s(&["-x", "y"])), "-x y\n");
        assert_eq!(echo(&s(&["-", "y"])), "- y\n");
        assert_eq!(echo(&s(&["-e", "\\x41\\0102"])), "AB\n");
    }

    #[test]
    fn session_builtins_change_the_state() {
        let ws = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(ws.path().join("src")).expect("mkdir");
        let fs = GuestFs::new(&[crate::instance::Mount {
            host: ws.path().to_path_buf(),
            guest: "/workspace".into(),
            writable: true,
        }])
        .expect("fs");
        let mut st = ShellState::new("/workspace", vec![("A".to_owned(), "1".to_owned())]);
        let sink: WriteFn = Arc::new(|_: &[u8]| Ok(()));
        assert_eq!(
            builtin(&mut st, &fs, &s(&["cd", "src"]), &sink, &sink),
            (0, false)
        );
        assert_eq!(st.cwd, "/workspace/src");
        assert_eq!(
            builtin(&mut st, &fs, &s(&["cd", "nope"]), &sink, &sink),
            (1, false)
        );
        assert_eq!(
            builtin(&mut st, &fs, &s(&["cd", "-"]), &sink, &sink),
            (0, false)
        );
        assert_eq!(st.cwd, "/workspace");
        builtin(
            &mut st,
            &fs,
            &s(&["export", "B=2", "bad-name=3"]),
            &sink,
            &sink,
        );
        st.vars.insert("C".into(), "local".into());
        assert_eq!(
            st.environment(),
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        builtin(&mut st, &fs, &s(&["unset", "A"]), &sink, &sink);
        assert!(!st.vars.contains_key("A"));
        assert_eq!(
            builtin(&mut st, &fs, &s(&["exit", "300"]), &sink, &sink),
            (44, true)
        );
    }
}
