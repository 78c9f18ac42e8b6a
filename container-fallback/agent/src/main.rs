//! hybox-agent: the small static supervisor that is PID 1 of every hybox container.
//!
//! It reaps every process, runs foreground commands, keeps background processes and their
//! logs, opens PTYs and reaches ports, for the host over a unix socket (protocol in
//! `proto.rs`). std only, no crate dependencies, linked statically.
//!
//! Usage: `hybox-agent (--listen-fd N | --socket PATH) --state DIR`. With `--listen-fd` the
//! host passes an already listening unix socket (runc `--preserve-fds`); with `--socket` the
//! agent binds one itself (tests, debugging).
//!
//! It must not die: PID 1 ending ends the container. A connection's thread may fail or panic
//! alone; a malformed or oversized frame closes that connection only.

mod exec;
mod launch;
mod net;
mod procs;
#[allow(
    dead_code,
    reason = "shared with the host client, which uses other parts"
)]
mod proto;
mod pty;
mod reaper;
mod sys;

use std::collections::HashSet;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::{Map, PROTOCOL_VERSION, ProtoError, error, kind, read_frame, write_frame};

/// The agent's version: set by the crate's build script.
const VERSION: &str = match option_env!("HYBOX_AGENT_VERSION") {
    Some(v) => v,
    None => "dev",
};

/// How long a new connection may take to say what it wants.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed; all but `Io` are told to the host.
pub enum Fail {
    NotFound(String),
    Exists(String),
    Refused(String),
    Protocol(String),
    Io(io::Error),
}

impl From<ProtoError> for Fail {
    fn from(e: ProtoError) -> Self {
        Fail::Protocol(e.0)
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

/// A mutex's guard, poisoned or not: a panicking connection must not wedge the others.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What every connection shares.
pub struct Agent {
    reaper: reaper::Reaper,
    /// Process groups we started (for the shutdown kill).
    groups: Mutex<HashSet<i32>>,
    procs: procs::Procs,
    spares: exec::Spares,
}

impl Agent {
    /// Spawns `cmd` (which starts its own process group or session) with an exit callback.
    pub fn spawn(&self, cmd: &mut Command, on_exit: reaper::OnExit) -> io::Result<Child> {
        let child = self.reaper.spawn(cmd, on_exit)?;
        let mut groups = lock(&self.groups);
        groups.retain(|&g| sys::group_alive(g));
        groups.insert(child.id() as i32);
        Ok(child)
    }

    /// SIGTERM/SIGINT: every process we started is killed, then we leave.
    fn shut_down(&self) -> ! {
        if sys::pid() == 1 {
            // Init: everything else in the container is ours.
            let _ = sys::signal(-1, sys::SIGKILL);
        } else {
            for &g in lock(&self.groups).iter() {
                let _ = sys::signal(-g, sys::SIGKILL);
            }
        }
        // A moment for the reaper to record how background processes ended.
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.procs.any_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        #[allow(clippy::exit, reason = "the agent's only way out")]
        std::process::exit(0)
    }
}

struct Args {
    listen_fd: Option<i32>,
    socket: Option<PathBuf>,
    state: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut listen_fd = None;
    let mut socket = None;
    let mut state = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen-fd" => {
                let v = value()?;
                listen_fd = Some(v.parse().map_err(|_| format!("bad fd {v}"))?);
            }
            "--socket" => socket = Some(PathBuf::from(value()?)),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--version" => {
                println!("hybox-agent {VERSION}");
                #[allow(clippy::exit, reason = "a CLI flag that only prints")]
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let state = state.ok_or("--state DIR is required")?;
    if listen_fd.is_some() == socket.is_some() {
        return Err("exactly one of --listen-fd N and --socket PATH is required".into());
    }
    Ok(Args {
        listen_fd,
        socket,
        state,
    })
}

fn listener(args: &Args) -> io::Result<UnixListener> {
    if let Some(fd) = args.listen_fd {
        sys::set_cloexec(fd)?;
        // SAFETY: the fd was handed to us for this purpose and nothing else in the agent owns it.
        return Ok(unsafe { UnixListener::from_raw_fd(fd) });
    }
    let path = args
        .socket
        .as_ref()
        .ok_or_else(|| io::Error::other("no socket"))?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

fn send_fail(stream: &mut UnixStream, f: Fail) {
    let (k, message) = match f {
        Fail::NotFound(m) => (error::NOT_FOUND, m),
        Fail::Exists(m) => (error::EXISTS, m),
        Fail::Refused(m) => (error::REFUSED, m),
        Fail::Protocol(m) => (error::PROTOCOL, m),
        // The stream itself is broken, or an internal I/O error: say so if we can.
        Fail::Io(e) => (error::REFUSED, format!("agent i/o error: {e}")),
    };
    let m = Map::new().with("kind", k).with("message", message);
    let _ = write_frame(stream, kind::ERROR, &m.encode());
}

fn serve(agent: &'static Agent, mut stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let Ok(Some((k, payload))) = read_frame(&mut stream) else {
        return;
    };
    let version = Map::decode(&payload).and_then(|m| m.u64("version"));
    if k != kind::HELLO || version != Ok(PROTOCOL_VERSION) {
        send_fail(
            &mut stream,
            Fail::Protocol(format!(
                "expected HELLO with protocol version {PROTOCOL_VERSION}"
            )),
        );
        return;
    }
    let hello = Map::new()
        .with("version", PROTOCOL_VERSION)
        .with("agent", VERSION)
        .with("pid", sys::pid() as u32);
    if write_frame(&mut stream, kind::HELLO, &hello.encode()).is_err() {
        return;
    }
    let Ok(Some((request, payload))) = read_frame(&mut stream) else {
        return;
    };
    let _ = stream.set_read_timeout(None);
    let result = match Map::decode(&payload) {
        Err(e) => Err(Fail::from(e)),
        Ok(req) => match stream.try_clone() {
            Err(e) => Err(Fail::Io(e)),
            Ok(s) => dispatch(agent, s, request, &req),
        },
    };
    if let Err(f) = result {
        send_fail(&mut stream, f);
    }
}

fn dispatch(agent: &'static Agent, mut s: UnixStream, request: u8, req: &Map) -> Result<(), Fail> {
    match request {
        kind::PING => {
            let m = Map::new()
                .with("agent", VERSION)
                .with("pid", sys::pid() as u32);
            write_frame(&mut s, kind::OK, &m.encode())?;
            Ok(())
        }
        kind::EXEC => exec::run(agent, s, req),
        kind::PREPARE => exec::prepare(agent, s, req),
        kind::PTY => pty::run(agent, s, req),
        kind::WAIT_PORT => net::wait_port(s, req),
        kind::CONNECT => net::connect(s, req),
        kind::START
        | kind::LIST
        | kind::GET
        | kind::KILL
        | kind::KILL_ALL
        | kind::LOGS
        | kind::FOLLOW => procs::procs_request(agent, s, request, req),
        _ => Err(Fail::Protocol(format!("unknown request {request:#x}"))),
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hybox-agent: {e}");
            eprintln!("usage: hybox-agent (--listen-fd N | --socket PATH) --state DIR");
            #[allow(clippy::exit, reason = "bad command line")]
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("hybox-agent: {e}");
        #[allow(clippy::exit, reason = "cannot start")]
        std::process::exit(1);
    }
}

fn run(args: Args) -> io::Result<()> {
    // Blocked in every thread (children get a clean mask from std); one thread takes them.
    sys::cloexec_inherited();
    let stop = [sys::SIGTERM, sys::SIGINT];
    sys::block_signals(&stop)?;
    if sys::pid() != 1 {
        sys::become_subreaper()?;
    }
    std::fs::create_dir_all(&args.state)?;
    let listener = listener(&args)?;
    let agent: &'static Agent = Box::leak(Box::new(Agent {
        reaper: reaper::Reaper::default(),
        groups: Mutex::new(HashSet::new()),
        procs: procs::Procs::load(&args.state)?,
        spares: exec::Spares::default(),
    }));
    launch::thread("reaper", move || agent.reaper.run())?;
    launch::thread("signals", move || {
        loop {
            match sys::wait_signal(&stop) {
                Ok(_) => agent.shut_down(),
                Err(e) => {
                    eprintln!("hybox-agent: sigwait: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    })?;
    std::panic::set_hook(Box::new(|info| {
        eprintln!("hybox-agent: a connection failed: {info}");
    }));
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = launch::thread("conn", move || serve(agent, stream)) {
                    eprintln!("hybox-agent: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: back off rather than spin or die.
                eprintln!("hybox-agent: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
