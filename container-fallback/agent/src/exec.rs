//! Foreground commands: a new process group, output streamed as it comes, an optional state
//! pipe on fd 3, and the group killed when the host goes away first.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::launch::{Launch, pump, thread};
use crate::proto::{self, Map, decode_wait_status, kind, write_frame};
use crate::{Agent, Fail, lock, sys};

/// How long after the command's exit its pipes may stay open (a background job holding them)
/// before the command counts as done anyway.
pub const LINGER: Duration = Duration::from_millis(100);

/// The most state bytes kept (they travel in one frame).
const MAX_STATE: usize = 8 << 20;

enum Ev {
    Out(Vec<u8>),
    Err(Vec<u8>),
    OutEof,
    ErrEof,
    State(Vec<u8>),
    StateEof,
    Exited(i32),
    HostGone,
}

/// Reads until the peer closes (or errs), then reports it.
pub fn watch_host<E: Send + 'static>(
    mut stream: UnixStream,
    tx: Sender<E>,
    gone: E,
) -> std::io::Result<()> {
    thread("watch", move || {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(gone);
    })
}

/// A tail this long fits in an empty pipe (Linux gives a pipe 64 KiB) and is written without
/// a thread.
const TAIL_INLINE: usize = 32 << 10;

/// The most spares kept at once; the oldest goes first.
const MAX_SPARES: usize = 4;

/// How long a spare waits for its command before it is killed.
const SPARE_TTL: Duration = Duration::from_secs(600);

/// A started command: its pipes pumped into `rx`, its exit reported there too.
pub struct Started {
    pid: i32,
    rx: Receiver<Ev>,
    tx: Sender<Ev>,
    stdin: Option<ChildStdin>,
    /// The write end of its fd 4, when it reads the rest of its command line there.
    tail: Option<File>,
    born: Instant,
    /// The request fields it was started from (a spare is taken only by an identical request).
    key: Vec<u8>,
}

/// Spares: commands started ahead by `PREPARE`, each waiting on fd 4 for the rest of its
/// command line, so an `EXEC` identical to the `PREPARE` skips the program's start (for the
/// host's session wrapper, a bash loading the session: most of a warm command's time).
#[derive(Default)]
pub struct Spares(Mutex<Vec<Started>>);

impl Spares {
    fn park(&self, s: Started) {
        let mut list = lock(&self.0);
        list.push(s);
        let now = Instant::now();
        let mut kept = Vec::with_capacity(list.len());
        let n = list.len();
        for (i, s) in list.drain(..).enumerate() {
            if now.duration_since(s.born) > SPARE_TTL || i + MAX_SPARES < n {
                let _ = sys::signal(-s.pid, sys::SIGKILL);
            } else {
                kept.push(s);
            }
        }
        *list = kept;
    }

    /// How many live spares `key` has (dead ones are dropped), and the newest one's pid.
    fn live(&self, key: &[u8]) -> (usize, Option<i32>) {
        let mut list = lock(&self.0);
        list.retain(|s| sys::group_alive(s.pid));
        let mine = list.iter().filter(|s| s.key == key);
        (mine.clone().count(), mine.last().map(|s| s.pid))
    }

    fn take(&self, key: &[u8]) -> Option<Started> {
        let mut list = lock(&self.0);
        let i = list.iter().position(|s| s.key == key)?;
        Some(list.remove(i))
    }
}

/// The fields of a request that decide what a started command is.
fn key_of(launch: &Launch, state_fd: bool) -> Vec<u8> {
    Map::new()
        .with("argv", proto::strings(&launch.argv))
        .with("env", proto::pairs(&launch.env))
        .with("cwd", launch.cwd.as_str())
        .with("state_fd", state_fd)
        .encode()
}

/// Starts `launch` in a new process group with its output pumped into the returned channel;
/// `tail`: its fd 4 is a pipe it reads the rest of its command line from.
fn start(
    agent: &'static Agent,
    launch: &Launch,
    state_fd: bool,
    stdin_piped: bool,
    tail: bool,
    key: Vec<u8>,
) -> Result<Started, Fail> {
    let mut cmd = launch.command()?;
    cmd.process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let state = if state_fd { Some(sys::pipe()?) } else { None };
    let state_raw = state.as_ref().map(|(_, w)| w.as_raw_fd());
    let tail = if tail { Some(sys::pipe()?) } else { None };
    let tail_raw = tail.as_ref().map(|(r, _)| r.as_raw_fd());
    // SAFETY: the closure runs between fork and exec and only calls sigprocmask, dup2 and
    // fcntl, which are async-signal-safe; the pipes' child ends stay open in the parent
    // until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            sys::child_unblock_signals()?;
            if let Some(raw) = state_raw {
                sys::child_dup_to(raw, 3)?;
            }
            match tail_raw {
                Some(raw) => sys::child_dup_to(raw, 4),
                None => Ok(()),
            }
        });
    }
    let (tx, rx) = mpsc::channel::<Ev>();
    let exit_tx = tx.clone();
    let mut child = agent
        .spawn(
            &mut cmd,
            Box::new(move |status| {
                let _ = exit_tx.send(Ev::Exited(status));
            }),
        )
        .map_err(|e| Fail::Refused(format!("{}: {e}", launch.argv[0])))?;
    drop(cmd);
    let pid = child.id() as i32;
    let state_rx = state.map(|(r, w)| {
        drop(w);
        r
    });
    let tail_w = tail.map(|(r, w)| {
        drop(r);
        File::from(w)
    });
    let pumped = (|| -> std::io::Result<()> {
        if let Some(out) = child.stdout.take() {
            pump(out, tx.clone(), Ev::Out, Ev::OutEof)?;
        }
        if let Some(err) = child.stderr.take() {
            pump(err, tx.clone(), Ev::Err, Ev::ErrEof)?;
        }
        if let Some(r) = state_rx {
            pump(File::from(r), tx.clone(), Ev::State, Ev::StateEof)?;
        }
        Ok(())
    })();
    if let Err(e) = pumped {
        let _ = sys::signal(-pid, sys::SIGKILL);
        return Err(Fail::Io(e));
    }
    Ok(Started {
        pid,
        rx,
        tx,
        stdin: child.stdin.take(),
        tail: tail_w,
        born: Instant::now(),
        key,
    })
}

/// Runs a `PREPARE` request: makes sure `count` spares (default 1, at most [`MAX_SPARES`])
/// for a future identical `EXEC` with a `tail` wait, starting as many as are missing, and
/// answers the newest one's `{pid}`.
pub fn prepare(agent: &'static Agent, mut stream: UnixStream, req: &Map) -> Result<(), Fail> {
    let launch = Launch::from_map(req)?;
    let state_fd = req.bool("state_fd")?;
    let want = req
        .opt_u64("count")?
        .unwrap_or(1)
        .clamp(1, MAX_SPARES as u64) as usize;
    let key = key_of(&launch, state_fd);
    let (live, mut pid) = agent.spares.live(&key);
    for _ in live..want {
        let started = start(agent, &launch, state_fd, true, true, key.clone())?;
        pid = Some(started.pid);
        agent.spares.park(started);
    }
    let pid = pid.ok_or_else(|| Fail::Protocol("no spare".into()))?;
    write_frame(
        &mut stream,
        kind::OK,
        &Map::new().with("pid", pid as u32).encode(),
    )?;
    Ok(())
}

/// Runs an `EXEC` request on `stream`. With a `tail` field, the command reads those bytes on
/// its fd 4 (then end of file), and a spare `PREPARE`d from the same fields is used when there
/// is a live one.
pub fn run(agent: &'static Agent, mut stream: UnixStream, req: &Map) -> Result<(), Fail> {
    let launch = Launch::from_map(req)?;
    let stdin = req.bytes("stdin")?.to_vec();
    let state_fd = req.bool("state_fd")?;
    let tail = req
        .get("tail")
        .is_some()
        .then(|| req.bytes("tail"))
        .transpose()?;
    let mut pending = VecDeque::new();
    let spare = match tail {
        Some(_) => {
            let key = key_of(&launch, state_fd);
            let spare = agent.spares.take(&key).and_then(|s| {
                // A spare that died while parked (killed, or its program failed) is no use.
                while let Ok(ev) = s.rx.try_recv() {
                    if matches!(ev, Ev::Exited(_)) {
                        let _ = sys::signal(-s.pid, sys::SIGKILL);
                        return None;
                    }
                    pending.push_back(ev);
                }
                Some(s)
            });
            match spare {
                Some(s) => s,
                None => {
                    pending.clear();
                    start(agent, &launch, state_fd, true, true, key)?
                }
            }
        }
        None => start(
            agent,
            &launch,
            state_fd,
            !stdin.is_empty(),
            false,
            Vec::new(),
        )?,
    };
    let Started {
        pid,
        rx,
        tx,
        stdin: child_stdin,
        tail: tail_w,
        ..
    } = spare;
    let fed = (|| -> std::io::Result<()> {
        if let (Some(mut w), Some(bytes)) = (tail_w, tail) {
            // Like stdin: a command that exits without reading it gets EPIPE, its business.
            // What fits in the new pipe's buffer is written at once (it cannot block).
            if bytes.len() <= TAIL_INLINE {
                let _ = w.write_all(bytes);
            } else {
                let bytes = bytes.to_vec();
                thread("tail", move || {
                    let _ = w.write_all(&bytes);
                })?;
            }
        }
        if let Some(mut input) = child_stdin {
            if stdin.is_empty() {
                drop(input);
            } else {
                thread("stdin", move || {
                    // The command may exit without reading: EPIPE is its business.
                    let _ = input.write_all(&stdin);
                })?;
            }
        }
        watch_host(stream.try_clone()?, tx.clone(), Ev::HostGone)?;
        write_frame(
            &mut stream,
            kind::OK,
            &Map::new().with("pid", pid as u32).encode(),
        )
    })();
    drop(tx);
    if let Err(e) = fed {
        let _ = sys::signal(-pid, sys::SIGKILL);
        return Err(Fail::Io(e));
    }

    let mut out_eof = false;
    let mut err_eof = false;
    let mut state_eof = !state_fd;
    let mut state = Vec::new();
    let mut exited: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        if exited.is_some() && out_eof && err_eof && state_eof {
            break;
        }
        let ev = if let Some(ev) = pending.pop_front() {
            ev
        } else {
            match deadline {
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(ev) => ev,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(ev) => ev,
                    Err(_) => break,
                },
            }
        };
        let written = match ev {
            Ev::Out(b) => write_frame(&mut stream, kind::STDOUT, &b),
            Ev::Err(b) => write_frame(&mut stream, kind::STDERR, &b),
            Ev::OutEof => {
                out_eof = true;
                Ok(())
            }
            Ev::ErrEof => {
                err_eof = true;
                Ok(())
            }
            Ev::State(b) => {
                let room = MAX_STATE.saturating_sub(state.len());
                state.extend_from_slice(&b[..b.len().min(room)]);
                Ok(())
            }
            Ev::StateEof => {
                state_eof = true;
                Ok(())
            }
            Ev::Exited(status) => {
                exited = Some(status);
                deadline = Some(Instant::now() + LINGER);
                Ok(())
            }
            Ev::HostGone => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if written.is_err() {
            if exited.is_none() {
                let _ = sys::signal(-pid, sys::SIGKILL);
            }
            return Ok(());
        }
    }
    let Some(status) = exited else {
        // Every sender is gone without an exit: cannot happen while the reaper holds ours.
        let _ = sys::signal(-pid, sys::SIGKILL);
        return Err(Fail::Protocol("lost track of the command".into()));
    };
    let (code, signal) = decode_wait_status(status);
    let end = Map::new()
        .with_opt("code", code)
        .with_opt("signal", signal)
        .with("state", state);
    write_frame(&mut stream, kind::EXIT, &end.encode())?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}
