//! Terminals: a program in its own session on a new PTY, input and resizes from the host,
//! output back, and a hangup when the host goes away.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::exec::LINGER;
use crate::launch::{Launch, pump, thread};
use crate::proto::{Map, decode_wait_status, kind, read_frame, write_frame};
use crate::{Agent, Fail, sys};

/// How long a hung-up session has to leave before it is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

enum Ev {
    Out(Vec<u8>),
    OutEof,
    Exited(i32),
    HostGone,
}

fn size(req: &Map, key: &str, default: u16) -> Result<u16, Fail> {
    Ok(match req.opt_u64(key)? {
        None | Some(0) => default,
        Some(n) => u16::try_from(n).unwrap_or(u16::MAX),
    })
}

fn hang_up(pid: i32) {
    let _ = sys::signal(-pid, sys::SIGHUP);
    let _ = thread("hangup", move || {
        std::thread::sleep(HANGUP_GRACE);
        if sys::group_alive(pid) {
            let _ = sys::signal(-pid, sys::SIGKILL);
        }
    });
}

/// Runs a `PTY` request on `stream`.
pub fn run(agent: &'static Agent, mut stream: UnixStream, req: &Map) -> Result<(), Fail> {
    let launch = Launch::from_map(req)?;
    let cols = size(req, "cols", 80)?;
    let rows = size(req, "rows", 24)?;
    let mut cmd = launch.command()?;
    let (master, slave_path) = sys::open_pty()?;
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(sys::OPEN_NOCTTY)
        .open(&slave_path)?;
    sys::set_winsize(slave.as_raw_fd(), cols, rows)?;
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: runs between fork and exec; setsid and ioctl are async-signal-safe. fd 0 is the
    // slave by then (std sets up stdio before running this).
    unsafe {
        cmd.pre_exec(|| {
            sys::child_unblock_signals()?;
            sys::child_setsid()?;
            sys::child_set_ctty(0)
        });
    }
    let (tx, rx) = mpsc::channel::<Ev>();
    let exit_tx = tx.clone();
    let child = agent
        .spawn(
            &mut cmd,
            Box::new(move |status| {
                let _ = exit_tx.send(Ev::Exited(status));
            }),
        )
        .map_err(|e| Fail::Refused(format!("{}: {e}", launch.argv[0])))?;
    // Closes our copies of the slave: the master reads EIO once the session's are gone too.
    drop(cmd);
    let pid = child.id() as i32;
    let master = File::from(master);

    let started = (|| -> std::io::Result<()> {
        pump(master.try_clone()?, tx.clone(), Ev::Out, Ev::OutEof)?;
        let mut input = master.try_clone()?;
        let mut host = stream.try_clone()?;
        let gone = tx.clone();
        thread("pty-input", move || {
            while let Ok(Some((k, payload))) = read_frame(&mut host) {
                match k {
                    kind::PTY_INPUT => {
                        let _ = input.write_all(&payload);
                    }
                    kind::PTY_RESIZE => {
                        if let Ok(m) = Map::decode(&payload) {
                            let cols = size(&m, "cols", 80).unwrap_or(80);
                            let rows = size(&m, "rows", 24).unwrap_or(24);
                            let _ = sys::set_winsize(input.as_raw_fd(), cols, rows);
                        }
                    }
                    _ => break,
                }
            }
            let _ = gone.send(Ev::HostGone);
        })?;
        write_frame(
            &mut stream,
            kind::OK,
            &Map::new().with("pid", pid as u32).encode(),
        )
    })();
    drop(tx);
    drop(master);
    if let Err(e) = started {
        hang_up(pid);
        return Err(Fail::Io(e));
    }

    let mut out_eof = false;
    let mut exited: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        if exited.is_some() && out_eof {
            break;
        }
        let ev = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(ev) => ev,
                Err(_) => break,
            },
        };
        let written = match ev {
            Ev::Out(b) => write_frame(&mut stream, kind::PTY_OUTPUT, &b),
            Ev::OutEof => {
                out_eof = true;
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
                hang_up(pid);
            }
            return Ok(());
        }
    }
    let (code, signal) = exited.map_or((None, None), decode_wait_status);
    let end = Map::new().with_opt("code", code).with_opt("signal", signal);
    write_frame(&mut stream, kind::PTY_EXIT, &end.encode())?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}
