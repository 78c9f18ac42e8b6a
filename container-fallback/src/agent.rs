//! The host's client for the in-container agent (`container-fallback/agent/`), over the unix
//! socket the runtime hands the agent at start. One connection per request; a streaming request
//! (exec, logs, PTY, port connect) keeps its connection, and dropping the stream ends it (an
//! exec's process group is killed when its connection closes).
//!
//! CONTRACT (host code is written against these signatures; keep them).

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    _private: (),
}

impl ExecStream {
    /// The next event, `None` after `Exit`.
    ///
    /// # Errors
    /// The agent went away or broke the protocol.
    pub async fn next(&mut self) -> Result<Option<ExecEvent>> {
        Err(AgentError::Unreachable("not implemented".into()))
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
    _private: (),
}

impl LogFollow {
    /// The next event, `None` after `Exit`.
    ///
    /// # Errors
    /// The agent went away.
    pub async fn next(&mut self) -> Result<Option<LogEvent>> {
        Err(AgentError::Unreachable("not implemented".into()))
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
    _private: (),
}

impl Pty {
    /// Sends keyboard input.
    ///
    /// # Errors
    /// The agent went away.
    pub async fn input(&mut self, _bytes: &[u8]) -> Result<()> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Resizes the terminal.
    ///
    /// # Errors
    /// The agent went away.
    pub async fn resize(&mut self, _cols: u16, _rows: u16) -> Result<()> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// The next output, `None` after `Exit`.
    ///
    /// # Errors
    /// The agent went away.
    pub async fn next(&mut self) -> Result<Option<PtyEvent>> {
        Err(AgentError::Unreachable("not implemented".into()))
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
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Runs a foreground command.
    ///
    /// # Errors
    /// The agent is unreachable or the program cannot be started (then `Refused` with why).
    pub async fn exec(&self, _spec: ExecSpec) -> Result<ExecStream> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Starts a background process (own process group, logs kept on disk).
    ///
    /// # Errors
    /// `Exists` for a used id; `Refused` when it cannot start.
    pub async fn start_process(&self, _spec: ProcSpec) -> Result<ProcInfo> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Every process, running and ended, oldest first.
    ///
    /// # Errors
    /// The agent is unreachable.
    pub async fn list_processes(&self) -> Result<Vec<ProcInfo>> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// One process.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_process(&self, _id: &str) -> Result<ProcInfo> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Sends `signal` to a process's group; its info after.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn kill_process(&self, _id: &str, _signal: i32) -> Result<ProcInfo> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Sends `signal` to every running process; how many.
    ///
    /// # Errors
    /// The agent is unreachable.
    pub async fn kill_all(&self, _signal: i32) -> Result<usize> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// The accumulated logs.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn logs(&self, _id: &str) -> Result<Logs> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Follows the logs: what is kept first, then new chunks as they come, then `Exit`.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn follow_logs(&self, _id: &str) -> Result<LogFollow> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Waits until something accepts TCP connections on `port` (127.0.0.1 or any address in
    /// the container); `false` on timeout.
    ///
    /// # Errors
    /// The agent is unreachable.
    pub async fn wait_port(&self, _port: u16, _timeout: Duration) -> Result<bool> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// A byte stream to `127.0.0.1:port` inside the container (the agent splices it).
    ///
    /// # Errors
    /// `Refused` when nothing listens there.
    pub async fn connect(&self, _port: u16) -> Result<tokio::net::UnixStream> {
        Err(AgentError::Unreachable("not implemented".into()))
    }

    /// Opens a PTY running `spec`.
    ///
    /// # Errors
    /// `Refused` when the program cannot start.
    pub async fn pty(&self, _spec: PtySpec) -> Result<Pty> {
        Err(AgentError::Unreachable("not implemented".into()))
    }
}

/// The agent binary built for this host (static, embedded at build time), written to
/// `dir/hybox-agent` (mode 0755) if it is not there with the same content; its path.
///
/// # Errors
/// I/O.
pub fn install_binary(dir: &Path) -> std::io::Result<PathBuf> {
    Err(std::io::Error::other(format!(
        "agent not built into this binary ({})",
        dir.display()
    )))
}

/// The process records the agent keeps in its state dir (readable while the container is
/// stopped: processes that were running then are `Lost`).
///
/// # Errors
/// I/O.
pub fn read_records(state_dir: &Path) -> Result<Vec<ProcInfo>> {
    let _ = state_dir;
    Ok(Vec::new())
}

/// The kept logs of a process from the state dir (while stopped).
///
/// # Errors
/// `NotFound`.
pub fn read_logs(state_dir: &Path, id: &str) -> Result<Logs> {
    let _ = state_dir;
    Err(AgentError::NotFound(id.to_owned()))
}
