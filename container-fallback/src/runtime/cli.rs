//! The OCI runtime's command line (runc, crun, or a runc-compatible binary), with a private
//! state root (`--root`).
//!
//! crun 1.8 refuses a hybrid cgroup host ("cgroups in hybrid mode not supported"); there every
//! call runs in a private mount namespace with `/sys/fs/cgroup/unified` unmounted, so crun sees
//! a v1 host (measured in `design/measured/container-and-fs.md` §2).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::command::{self, describe, tail};
use super::{Result, RuntimeError};

/// The file descriptor the agent finds its listening socket on (`--listen-fd 3`).
pub(crate) const AGENT_FD: i32 = 3;

/// A container's state as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    /// `created`, `running`, `paused` or `stopped`.
    pub(crate) status: String,
    /// The init's host pid (0 once stopped).
    pub(crate) pid: u32,
}

/// One OCI runtime binary and its state root.
#[derive(Debug, Clone)]
pub(crate) struct OciCli {
    binary: PathBuf,
    hide_unified: bool,
    state_root: PathBuf,
}

impl OciCli {
    /// `hide_unified`: run every call with the cgroup2 `unified` mount hidden (crun on hybrid).
    pub(crate) fn new(binary: PathBuf, hide_unified: bool, state_root: PathBuf) -> Self {
        Self {
            binary,
            hide_unified,
            state_root,
        }
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = if self.hide_unified {
            let mut cmd = command::tool("unshare");
            cmd.args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                "umount /sys/fs/cgroup/unified && exec \"$0\" \"$@\"",
            ])
            .arg(&self.binary);
            cmd
        } else {
            Command::new(&self.binary)
        };
        cmd.arg("--root").arg(&self.state_root).args(args);
        cmd
    }

    /// Whether the runtime keeps state for `id` (running or not). Both runc and crun keep one
    /// directory per container under the state root; looking saves a process per call.
    pub(crate) fn knows(&self, id: &str) -> bool {
        self.state_root.join(id).is_dir()
    }

    /// Ids the runtime keeps state for.
    pub(crate) fn ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.state_root) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// `state <id>`: `None` when the runtime does not know `id`.
    pub(crate) fn state(&self, id: &str) -> Result<Option<State>> {
        if !self.knows(id) {
            return Ok(None);
        }
        let mut cmd = self.command(["state", id]);
        let output = command::run_unchecked(&mut cmd)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("does not exist") || !self.knows(id) {
                return Ok(None);
            }
            return Err(command::failed(&cmd, &output));
        }
        let json: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
            RuntimeError::Failed(format!("{}: unreadable state: {e}", describe(&cmd)))
        })?;
        let status = json["status"].as_str().unwrap_or_default().to_owned();
        let pid = json["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0);
        Ok(Some(State { status, pid }))
    }

    /// `run -d`: creates and starts `id` from `bundle`, detached (the container outlives us),
    /// with `listener` as the container's fd 3 and the runtime's and container's stdout and
    /// stderr appended to `console`. Returns once the init runs; its pid is in `pid_file`.
    pub(crate) fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        listener: BorrowedFd<'_>,
        mut console: File,
    ) -> Result<()> {
        let mut cmd = self.command([
            OsStr::new("run"),
            OsStr::new("--detach"),
            OsStr::new("--preserve-fds"),
            OsStr::new("1"),
            OsStr::new("--pid-file"),
            pid_file.as_os_str(),
            OsStr::new("--bundle"),
            bundle.as_os_str(),
            OsStr::new(id),
        ]);
        let console_start = console.seek(SeekFrom::End(0))?;
        cmd.stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console.try_clone()?);
        let fd = listener.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (setsid, fcntl, dup2) on plain integers; it allocates nothing
        // and touches no lock. `fd` stays open in the parent (borrowed for this call) and so in
        // the child.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session: a terminal's SIGINT to the host's process group must not
                // reach the container, which outlives the host.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let rc = if fd == AGENT_FD {
                    libc::fcntl(AGENT_FD, libc::F_SETFD, 0)
                } else {
                    // dup2's new descriptor has FD_CLOEXEC clear.
                    libc::dup2(fd, AGENT_FD)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        tracing::debug!(command = %describe(&cmd), "starting container");
        let status = cmd
            .status()
            .map_err(|e| RuntimeError::Failed(format!("{}: cannot run: {e}", describe(&cmd))))?;
        if status.success() {
            return Ok(());
        }
        let mut log = Vec::new();
        console.seek(SeekFrom::Start(console_start))?;
        console.read_to_end(&mut log)?;
        Err(RuntimeError::Failed(format!(
            "{}: {status}: {}",
            describe(&cmd),
            tail(&log)
        )))
    }

    /// `kill --all <id> KILL`; where that fails (a rootless container without a cgroup has
    /// nothing to list its processes by), `kill <id> KILL`: the init's death ends its pid
    /// namespace and every process in it.
    pub(crate) fn kill_all(&self, id: &str) -> Result<()> {
        match command::run(&mut self.command(["kill", "--all", id, "KILL"])) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(id, error = %e, "kill --all failed; killing the init");
                command::run(&mut self.command(["kill", id, "KILL"])).map(drop)
            }
        }
    }

    /// `delete [--force] <id>`.
    pub(crate) fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut cmd = if force {
            self.command(["delete", "--force", id])
        } else {
            self.command(["delete", id])
        };
        command::run(&mut cmd).map(drop)
    }
}
