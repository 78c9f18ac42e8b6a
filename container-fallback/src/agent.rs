//! The host's client for the in-container agent (`container-fallback/agent/`), over the unix
//! socket the runtime hands the agent at start. One connection per request; a streaming request
//! (exec, logs, PTY, port connect) keeps its connection, and dropping the stream ends it (an
//! exec's process group is killed when its connection closes).
//!
//! The wire protocol lives in `agent/src/proto.rs`, compiled into both the agent and this client.
//! The agent binary itself is built by this crate's build script (static, std only) and embedded
//! here: [`install_binary`] writes it where the runtime mounts it into the container.
//!
//! The agent runs as `hybox-agent --listen-fd 3 --state DIR` in a container (or
//! `--socket PATH --state DIR` natively). Its state dir holds `procs/<id>/record` (text,
//! replaced atomically), `procs/<id>/stdout`, `procs/<id>/stderr` (each capped at 8 MiB, the
//! oldest half dropped past it) and `procs/<id>/truncated` once something was dropped.
//!
//! ```no_run
//! # async fn demo() -> hybox_container_fallback::agent::Result<()> {
//! use hybox_container_fallback::agent::{AgentClient, ExecEvent, ExecSpec};
//! let client = AgentClient::new("/run/hybox/sb1/agent.sock");
//! let mut run = client
//!     .exec(ExecSpec { argv: vec!["echo".into(), "hi".into()], ..ExecSpec::default() })
//!     .await?;
//! while let Some(event) = run.next().await? {
//!     if let ExecEvent::Stdout(bytes) = event {
//!         print!("{}", String::from_utf8_lossy(&bytes));
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[allow(
    dead_code,
    reason = "shared with the agent, which uses other parts of it"
)]
#[path = "../agent/src/proto.rs"]
mod proto;

use proto::{Map, Record, Status, kind};

/// Errors of the agent client.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent could not be reached (not started, gone, socket missing).
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    /// No such process id.
    #[error("no process {0}")]
    NotFound(String),
    /// A process id already in use.
    #[error("process id {0} is already in use")]
    Exists(String),
    /// The agent refused the request (bad input), with its message.
    #[error("{0}")]
    Refused(String),
    /// The agent broke the protocol.
    #[error("agent protocol error: {0}")]
    Protocol(String),
    /// I/O on the socket.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result of agent calls.
pub type Result<T> = std::result::Result<T, AgentError>;

/// What the agent says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// The agent's version string.
    pub version: String,
    /// Its pid inside the container (1 when it is init).
    pub pid: u32,
}

/// A foreground command.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// Program and arguments (`argv[0]` looked up in `PATH` of `env`).
    pub argv: Vec<String>,
    /// The whole environment (nothing is inherited from the agent).
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Bytes written to the command's stdin, then closed (empty: /dev/null).
    pub stdin: Vec<u8>,
    /// When set, fd 3 of the command is a pipe whose bytes come back in [`ExecEvent::Exit`].
    pub state_fd: bool,
    /// When set, fd 4 of the command is a pipe carrying these bytes (then end of file), and a
    /// spare started by [`AgentClient::prepare`] with the same other fields is used if live.
    /// With it, stdin is a pipe even when empty.
    pub tail: Option<Vec<u8>>,
}

/// Events of a foreground command, in order; `Exit` is last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes on stdout.
    Stdout(Vec<u8>),
    /// Bytes on stderr.
    Stderr(Vec<u8>),
    /// It ended.
    Exit {
        /// Exit code when it exited.
        code: Option<i32>,
        /// Signal when it was killed.
        signal: Option<i32>,
        /// What it wrote to fd 3 (with [`ExecSpec::state_fd`]).
        state: Vec<u8>,
    },
}

/// A running foreground command; dropping it kills the command's process group.
#[derive(Debug)]
pub struct ExecStream {
    conn: Option<Conn>,
    pid: u32,
}

impl ExecStream {
    /// The next event, `None` after `Exit`. Cancel-safe.
    ///
    /// # Errors
    /// The agent went away or broke the protocol.
    pub async fn next(&mut self) -> Result<Option<ExecEvent>> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let (k, payload) = conn.read_frame().await?;
        match k {
            kind::STDOUT => Ok(Some(ExecEvent::Stdout(payload))),
            kind::STDERR => Ok(Some(ExecEvent::Stderr(payload))),
            kind::EXIT => {
                self.conn = None;
                let m = decode(&payload)?;
                Ok(Some(ExecEvent::Exit {
                    code: m.opt_i32("code").map_err(protocol)?,
                    signal: m.opt_i32("signal").map_err(protocol)?,
                    state: m.bytes("state").map_err(protocol)?.to_vec(),
                }))
            }
            other => Err(unexpected(other, &payload)),
        }
    }

    /// The command's pid (and process group) inside the container.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// A background process to start.
#[derive(Debug, Clone, Default)]
pub struct ProcSpec {
    /// Its id (unique in the container).
    pub id: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The command as the user gave it, for display.
    pub command: String,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
}

/// Where a background process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcStatus {
    /// Still running.
    Running,
    /// Exited with code 0.
    Completed,
    /// Exited with another code.
    Failed,
    /// Ended by a signal.
    Killed,
    /// Was running when the container stopped.
    Lost,
}

/// A background process, running or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Id.
    pub id: String,
    /// Pid inside the container.
    pub pid: u32,
    /// The command for display.
    pub command: String,
    /// Working directory.
    pub cwd: String,
    /// Status.
    pub status: ProcStatus,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// Signal once killed.
    pub signal: Option<i32>,
    /// Start time, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// End time, ms since the Unix epoch.
    pub ended_at_ms: Option<u64>,
}

/// Which stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Accumulated logs of a process (bounded: the oldest bytes are dropped past the cap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    /// stdout.
    pub stdout: Vec<u8>,
    /// stderr.
    pub stderr: Vec<u8>,
    /// Whether older bytes were dropped.
    pub truncated: bool,
}

/// Events of a followed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A chunk.
    Data {
        /// Which stream.
        stream: LogStream,
        /// Bytes.
        data: Vec<u8>,
        /// When the agent read it, ms since the epoch.
        timestamp_ms: u64,
    },
    /// The process ended (last event).
    Exit(ProcInfo),
}

/// A followed log; dropping it stops following.
#[derive(Debug)]
pub struct LogFollow {
    conn: Option<Conn>,
}

impl LogFollow {
    /// The next event, `None` after `Exit`. Cancel-safe.
    ///
    /// # Errors
    /// The agent went away.
    pub async fn next(&mut self) -> Result<Option<LogEvent>> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let (k, payload) = conn.read_frame().await?;
        match k {
            kind::LOG_DATA => {
                let m = decode(&payload)?;
                let stream = match m.str("stream").map_err(protocol)? {
                    "stdout" => LogStream::Stdout,
                    "stderr" => LogStream::Stderr,
                    s => return Err(AgentError::Protocol(format!("unknown log stream {s}"))),
                };
                Ok(Some(LogEvent::Data {
                    stream,
                    data: m.bytes("data").map_err(protocol)?.to_vec(),
                    timestamp_ms: m.u64("timestamp_ms").map_err(protocol)?,
                }))
            }
            kind::PROC_EXIT => {
                self.conn = None;
                Ok(Some(LogEvent::Exit(proc_info(&decode(&payload)?)?)))
            }
            other => Err(unexpected(other, &payload)),
        }
    }
}

/// A PTY to open.
#[derive(Debug, Clone, Default)]
pub struct PtySpec {
    /// Program and arguments (a login shell usually).
    pub argv: Vec<String>,
    /// The whole environment (`TERM` included).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// Output of a PTY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// Bytes from the terminal.
    Output(Vec<u8>),
    /// The program ended (last event).
    Exit {
        /// Exit code.
        code: Option<i32>,
        /// Signal.
        signal: Option<i32>,
    },
}

/// A live PTY; dropping it hangs the terminal up (SIGHUP to its session).
#[derive(Debug)]
pub struct Pty {
    conn: Conn,
    ended: bool,
    pid: u32,
}

impl Pty {
    /// Sends keyboard input.
    ///
    /// # Errors
    /// The agent went away.
    pub async fn input(&mut self, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(proto::CHUNK) {
            self.conn.write_frame(kind::PTY_INPUT, chunk).await?;
        }
        Ok(())
    }

    /// Resizes the terminal.
    ///
    /// # Errors
    /// The agent went away.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        let m = Map::new().with("cols", cols).with("rows", rows);
        self.conn.write_frame(kind::PTY_RESIZE, &m.encode()).await
    }

    /// The next output, `None` after `Exit`. Cancel-safe (it may sit in a `select!` with
    /// the input side).
    ///
    /// # Errors
    /// The agent went away.
    pub async fn next(&mut self) -> Result<Option<PtyEvent>> {
        if self.ended {
            return Ok(None);
        }
        let (k, payload) = self.conn.read_frame().await?;
        match k {
            kind::PTY_OUTPUT => Ok(Some(PtyEvent::Output(payload))),
            kind::PTY_EXIT => {
                self.ended = true;
                let m = decode(&payload)?;
                Ok(Some(PtyEvent::Exit {
                    code: m.opt_i32("code").map_err(protocol)?,
                    signal: m.opt_i32("signal").map_err(protocol)?,
                }))
            }
            other => Err(unexpected(other, &payload)),
        }
    }

    /// The program's pid (its session) inside the container.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
}

impl AgentClient {
    /// A client for the agent listening at `socket` (a host path).
    #[must_use]
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket path.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the agent answers, and what it is.
    ///
    /// # Errors
    /// [`AgentError::Unreachable`].
    pub async fn ping(&self) -> Result<AgentInfo> {
        let m = self.call(kind::PING, &Map::new()).await?;
        Ok(AgentInfo {
            version: m.str("agent").map_err(protocol)?.to_owned(),
            pid: pid_of(&m)?,
        })
    }

    /// Runs a foreground command.
    ///
    /// # Errors
    /// The agent is unreachable or the program cannot be started (then `Refused` with why).
    pub async fn exec(&self, spec: ExecSpec) -> Result<ExecStream> {
        let req = launch_fields(&spec)
            .with("stdin", spec.stdin)
            .with_opt("tail", spec.tail);
        let mut conn = Conn::open(&self.socket, kind::EXEC, &req).await?;
        let m = conn.answer().await?;
        Ok(ExecStream {
            conn: Some(conn),
            pid: pid_of(&m)?,
        })
    }

    /// Makes sure `count` commands of later [`exec`](Self::exec)s with a `tail` and the same
    /// `argv`, `env`, `cwd` and `state_fd` wait started (its `stdin` and `tail` are ignored
    /// here), starting as many as are missing; each such exec takes one. The agent keeps at
    /// most four spares, each for at most ten minutes. Returns the newest spare's pid.
    ///
    /// # Errors
    /// The agent is unreachable or the program cannot be started.
    pub async fn prepare(&self, spec: &ExecSpec, count: u32) -> Result<u32> {
        let req = launch_fields(spec).with("count", count);
        pid_of(&self.call(kind::PREPARE, &req).await?)
    }

    /// Starts a background process (own process group, logs kept on disk).
    ///
    /// # Errors
    /// `Exists` for a used id; `Refused` when it cannot start.
    pub async fn start_process(&self, spec: ProcSpec) -> Result<ProcInfo> {
        let req = Map::new()
            .with("id", spec.id)
            .with("argv", proto::strings(&spec.argv))
            .with("command", spec.command)
            .with("env", proto::pairs(&spec.env))
            .with("cwd", spec.cwd);
        proc_info(&self.call(kind::START, &req).await?)
    }

    /// Every process, running and ended, oldest first.
    ///
    /// # Errors
    /// The agent is unreachable.
    pub async fn list_processes(&self) -> Result<Vec<ProcInfo>> {
        let m = self.call(kind::LIST, &Map::new()).await?;
        m.maps("procs")
            .map_err(protocol)?
            .into_iter()
            .map(proc_info)
            .collect()
    }

    /// One process.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_process(&self, id: &str) -> Result<ProcInfo> {
        proc_info(&self.call(kind::GET, &Map::new().with("id", id)).await?)
    }

    /// Sends `signal` to a process's group; its info after.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn kill_process(&self, id: &str, signal: i32) -> Result<ProcInfo> {
        let req = Map::new().with("id", id).with("signal", signal);
        proc_info(&self.call(kind::KILL, &req).await?)
    }

    /// Sends `signal` to every running process; how many.
    ///
    /// # Errors
    /// The agent is unreachable.
    pub async fn kill_all(&self, signal: i32) -> Result<usize> {
        let m = self
            .call(kind::KILL_ALL, &Map::new().with("signal", signal))
            .await?;
        let n = m.u64("count").map_err(protocol)?;
        usize::try_from(n).map_err(|_| AgentError::Protocol(format!("count {n} out of range")))
    }

    /// The accumulated logs.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn logs(&self, id: &str) -> Result<Logs> {
        let m = self.call(kind::LOGS, &Map::new().with("id", id)).await?;
        Ok(Logs {
            stdout: m.bytes("stdout").map_err(protocol)?.to_vec(),
            stderr: m.bytes("stderr").map_err(protocol)?.to_vec(),
            truncated: m.bool("truncated").map_err(protocol)?,
        })
    }

    /// Follows the logs: what is kept first, then new chunks as they come, then `Exit`.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn follow_logs(&self, id: &str) -> Result<LogFollow> {
        let mut conn = Conn::open(&self.socket, kind::FOLLOW, &Map::new().with("id", id)).await?;
        conn.answer().await?;
        Ok(LogFollow { conn: Some(conn) })
    }

    /// Waits until something accepts TCP connections on `port` (127.0.0.1 or any address in
    /// the container); `false` on timeout.
    ///
    /// # Errors
    /// The agent is unreachable.
    pub async fn wait_port(&self, port: u16, timeout: Duration) -> Result<bool> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let req = Map::new().with("port", port).with("timeout_ms", ms);
        let m = self
            .call_within(
                kind::WAIT_PORT,
                &req,
                timeout.saturating_add(ANSWER_TIMEOUT),
            )
            .await?;
        m.bool("open").map_err(protocol)
    }

    /// A byte stream to `127.0.0.1:port` inside the container (the agent splices it).
    ///
    /// # Errors
    /// `Refused` when nothing listens there.
    pub async fn connect(&self, port: u16) -> Result<tokio::net::UnixStream> {
        let mut conn =
            Conn::open(&self.socket, kind::CONNECT, &Map::new().with("port", port)).await?;
        conn.answer().await?;
        // Frames are read exactly, never past their end: nothing of the spliced bytes is
        // buffered here.
        debug_assert!(conn.buf.is_empty());
        Ok(conn.stream)
    }

    /// Opens a PTY running `spec`.
    ///
    /// # Errors
    /// `Refused` when the program cannot start.
    pub async fn pty(&self, spec: PtySpec) -> Result<Pty> {
        let req = Map::new()
            .with("argv", proto::strings(&spec.argv))
            .with("env", proto::pairs(&spec.env))
            .with("cwd", spec.cwd)
            .with("cols", spec.cols)
            .with("rows", spec.rows);
        let mut conn = Conn::open(&self.socket, kind::PTY, &req).await?;
        let m = conn.answer().await?;
        Ok(Pty {
            conn,
            ended: false,
            pid: pid_of(&m)?,
        })
    }

    /// A one-answer request, answered within [`ANSWER_TIMEOUT`].
    async fn call(&self, request: u8, req: &Map) -> Result<Map> {
        self.call_within(request, req, ANSWER_TIMEOUT).await
    }

    /// A one-answer request answered within `limit` (a wedged agent is an error, not a hang).
    async fn call_within(&self, request: u8, req: &Map, limit: Duration) -> Result<Map> {
        let mut conn = Conn::open(&self.socket, request, req).await?;
        conn.answer_within(limit).await
    }
}

/// The agent binary built for this host (static, embedded at build time), written to
/// `dir/hybox-agent` (mode 0755) if it is not there with the same content; its path.
///
/// # Errors
/// I/O.
pub fn install_binary(dir: &Path) -> std::io::Result<PathBuf> {
    let dest = dir.join(BINARY_NAME);
    if fs::read(&dest).is_ok_and(|b| b == AGENT_BINARY) {
        return Ok(dest);
    }
    fs::create_dir_all(dir)?;
    static TMP_SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{BINARY_NAME}.{}.{}.tmp",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(AGENT_BINARY)?;
        f.set_permissions(fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        drop(f);
        // Atomic: a running agent keeps its old inode, a new one sees the whole file.
        fs::rename(&tmp, &dest)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| dest)
}

/// File name of the agent binary [`install_binary`] writes.
pub const BINARY_NAME: &str = "hybox-agent";

/// The static agent executable built for this crate's target.
const AGENT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hybox-agent"));

/// The process records the agent keeps in its state dir (readable while the container is
/// stopped: processes that were running then are `Lost`).
///
/// # Errors
/// I/O.
pub fn read_records(state_dir: &Path) -> Result<Vec<ProcInfo>> {
    let root = state_dir.join(proto::PROCS_DIR);
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut records = Vec::new();
    for entry in entries {
        let dir = entry?.path();
        let text = match fs::read_to_string(dir.join(proto::RECORD_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        match Record::from_text(&text) {
            Ok(mut r) => {
                if r.status == Status::Running {
                    r.status = Status::Lost;
                }
                records.push(r);
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "skipping a bad process record")
            }
        }
    }
    records.sort_by_key(|r| (r.started_at_ms, r.seq));
    Ok(records.into_iter().map(info_from_record).collect())
}

/// The kept logs of a process from the state dir (while stopped).
///
/// # Errors
/// `NotFound`.
pub fn read_logs(state_dir: &Path, id: &str) -> Result<Logs> {
    if !proto::valid_id(id) {
        return Err(AgentError::NotFound(id.to_owned()));
    }
    let dir = state_dir.join(proto::PROCS_DIR).join(id);
    if !dir.join(proto::RECORD_FILE).is_file() {
        return Err(AgentError::NotFound(id.to_owned()));
    }
    let read = |name: &str| match fs::read(dir.join(name)) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AgentError::Io(e)),
    };
    Ok(Logs {
        stdout: read(proto::STDOUT_FILE)?,
        stderr: read(proto::STDERR_FILE)?,
        truncated: dir.join(proto::TRUNCATED_FILE).exists(),
    })
}

/// How long connecting and the version exchange may take before the agent counts as
/// unreachable (a wedged agent must not hang its caller).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a one-answer request (list, get, kill, logs...) may take once sent: its work is
/// a few file reads or a spawn, so an agent that takes longer is wedged.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to the agent: frames are read exactly (never past a frame's end, so a
/// `CONNECT` stream hands over with nothing buffered) and cancel-safely (a partial frame stays
/// in `buf` across a cancelled read).
#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects, says hello and sends `request` in one write, then checks the agent's hello.
    async fn open(socket: &Path, request: u8, req: &Map) -> Result<Conn> {
        let mut out = proto::frame(
            kind::HELLO,
            &Map::new().with("version", proto::PROTOCOL_VERSION).encode(),
        )
        .map_err(protocol)?;
        out.extend(
            proto::frame(request, &req.encode())
                .map_err(|e| AgentError::Refused(format!("request too large: {e}")))?,
        );
        let hello = async {
            let stream = UnixStream::connect(socket)
                .await
                .map_err(|e| AgentError::Unreachable(format!("{}: {e}", socket.display())))?;
            let mut conn = Conn {
                stream,
                buf: Vec::new(),
            };
            conn.stream
                .write_all(&out)
                .await
                .map_err(|e| AgentError::Unreachable(format!("{}: {e}", socket.display())))?;
            let (k, payload) = conn.read_frame().await?;
            match k {
                kind::HELLO => {
                    let v = decode(&payload)?.u64("version").map_err(protocol)?;
                    if v != proto::PROTOCOL_VERSION {
                        return Err(AgentError::Protocol(format!(
                            "agent speaks protocol {v}, not {}",
                            proto::PROTOCOL_VERSION
                        )));
                    }
                    Ok(conn)
                }
                other => Err(unexpected(other, &payload)),
            }
        };
        tokio::time::timeout(HELLO_TIMEOUT, hello)
            .await
            .map_err(|_| {
                AgentError::Unreachable(format!(
                    "{}: no answer within {HELLO_TIMEOUT:?}",
                    socket.display()
                ))
            })?
    }

    async fn read_frame(&mut self) -> Result<(u8, Vec<u8>)> {
        loop {
            let need = if let [a, b, c, d, k, ..] = self.buf[..] {
                let (k, len) = proto::parse_header(&[a, b, c, d, k]).map_err(protocol)?;
                if self.buf.len() == proto::HEADER + len {
                    let payload = self.buf.split_off(proto::HEADER);
                    self.buf.clear();
                    return Ok((k, payload));
                }
                proto::HEADER + len
            } else {
                proto::HEADER
            };
            let want = need - self.buf.len();
            self.buf.reserve(want);
            let n = (&mut self.stream)
                .take(want as u64)
                .read_buf(&mut self.buf)
                .await?;
            if n == 0 {
                return Err(AgentError::Unreachable(
                    "the agent closed the connection".into(),
                ));
            }
        }
    }

    async fn write_frame(&mut self, k: u8, payload: &[u8]) -> Result<()> {
        let f = proto::frame(k, payload).map_err(protocol)?;
        self.stream.write_all(&f).await?;
        Ok(())
    }

    /// [`Self::expect_ok`] within [`ANSWER_TIMEOUT`].
    async fn answer(&mut self) -> Result<Map> {
        self.answer_within(ANSWER_TIMEOUT).await
    }

    /// [`Self::expect_ok`] within `limit` (a wedged agent is an error, not a hang).
    async fn answer_within(&mut self, limit: Duration) -> Result<Map> {
        tokio::time::timeout(limit, self.expect_ok())
            .await
            .map_err(|_| AgentError::Unreachable(format!("no answer within {limit:?}")))?
    }

    /// The answer to the request: `OK`'s fields or the agent's error.
    async fn expect_ok(&mut self) -> Result<Map> {
        let (k, payload) = self.read_frame().await?;
        match k {
            kind::OK => decode(&payload),
            other => Err(unexpected(other, &payload)),
        }
    }
}

fn protocol(e: proto::ProtoError) -> AgentError {
    AgentError::Protocol(e.0)
}

fn decode(payload: &[u8]) -> Result<Map> {
    Map::decode(payload).map_err(protocol)
}

/// An `ERROR` frame as its error, anything else out of place as a protocol error.
fn unexpected(k: u8, payload: &[u8]) -> AgentError {
    if k != kind::ERROR {
        return AgentError::Protocol(format!("unexpected frame type {k:#x}"));
    }
    let m = match Map::decode(payload) {
        Ok(m) => m,
        Err(e) => return protocol(e),
    };
    let message = m.str_or_empty("message").unwrap_or_default().to_owned();
    match m.str("kind").unwrap_or_default() {
        proto::error::NOT_FOUND => AgentError::NotFound(message),
        proto::error::EXISTS => AgentError::Exists(message),
        proto::error::REFUSED => AgentError::Refused(message),
        _ => AgentError::Protocol(message),
    }
}

/// The fields of an `EXEC` that decide what is started (the ones a `PREPARE` takes too).
fn launch_fields(spec: &ExecSpec) -> Map {
    Map::new()
        .with("argv", proto::strings(&spec.argv))
        .with("env", proto::pairs(&spec.env))
        .with("cwd", spec.cwd.as_str())
        .with("state_fd", spec.state_fd)
}

fn pid_of(m: &Map) -> Result<u32> {
    let pid = m.u64("pid").map_err(protocol)?;
    u32::try_from(pid).map_err(|_| AgentError::Protocol(format!("pid {pid} out of range")))
}

fn info_from_record(r: Record) -> ProcInfo {
    ProcInfo {
        status: match r.status {
            Status::Running => ProcStatus::Running,
            Status::Completed => ProcStatus::Completed,
            Status::Failed => ProcStatus::Failed,
            Status::Killed => ProcStatus::Killed,
            Status::Lost => ProcStatus::Lost,
        },
        id: r.id,
        pid: r.pid,
        command: r.command,
        cwd: r.cwd,
        exit_code: r.exit_code,
        signal: r.signal,
        started_at_ms: r.started_at_ms,
        ended_at_ms: r.ended_at_ms,
    }
}

fn proc_info(m: &Map) -> Result<ProcInfo> {
    Record::from_map(m).map(info_from_record).map_err(protocol)
}
