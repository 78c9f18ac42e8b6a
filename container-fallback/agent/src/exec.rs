//! Foreground commands: a new process group, output streamed as it comes, an optional state
//! pipe on fd 3, and the group killed when the host goes away first.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::launch::{Launch, pump, thread};
use crate::proto::{Map, decode_wait_status, kind, write_frame};
use crate::{Agent, Fail, sys};

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

/// Runs an `EXEC` request on `stream`.
pub fn run(agent: &'static Agent, mut stream: UnixStream, req: &Map) -> Result<(), Fail> {
    let launch = Launch::from_map(req)?;
    let stdin = req.bytes("stdin")?.to_vec();
    let state_fd = req.bool("state_fd")?;
    let mut cmd = launch.command()?;
    cmd.process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        });
    let state = if state_fd { Some(sys::pipe()?) } else { None };
    let state_raw = state.as_ref().map(|(_, w)| w.as_raw_fd());
    // SAFETY: the closure runs between fork and exec and only calls sigprocmask, dup2 and
    // fcntl, which are async-signal-safe; the state pipe's write end stays open in the parent
    // until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            sys::child_unblock_signals()?;
            match state_raw {
                Some(raw) => sys::child_dup_to(raw, 3),
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

    let started = (|| -> std::io::Result<()> {
        if let Some(out) = child.stdout.take() {
            pump(out, tx.clone(), Ev::Out, Ev::OutEof)?;
        }
        if let Some(err) = child.stderr.take() {
            pump(err, tx.clone(), Ev::Err, Ev::ErrEof)?;
        }
        if let Some(r) = state_rx {
            pump(std::fs::File::from(r), tx.clone(), Ev::State, Ev::StateEof)?;
        }
        if let Some(mut input) = child.stdin.take() {
            thread("stdin", move || {
                // The command may exit without reading: EPIPE is its business.
                let _ = input.write_all(&stdin);
            })?;
        }
        watch_host(stream.try_clone()?, tx.clone(), Ev::HostGone)?;
        write_frame(
            &mut stream,
            kind::OK,
            &Map::new().with("pid", pid as u32).encode(),
        )
    })();
    drop(tx);
    if let Err(e) = started {
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
        let ev = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(ev) => ev,
                Err(_) => break,
            },
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
