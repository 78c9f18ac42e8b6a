//! One OCI container per sandbox, driven by a real OCI runtime (runc or crun from the
//! distribution; never our own).
//!
//! CONTRACT (host code is written against these signatures; keep them).

use std::path::{Path, PathBuf};

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// This host cannot run containers (no runtime binary, not root, no loop/overlay...): why.
    #[error("containers are unavailable here: {0}")]
    Unavailable(String),
    /// The OCI runtime failed: the command and its stderr.
    #[error("{0}")]
    Failed(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result of runtime calls.
pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Which OCI runtime (`--oci-runtime`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OciChoice {
    /// crun on a pure cgroup v2 host, runc otherwise (hybrid or v1), whichever is installed.
    #[default]
    Auto,
    /// `runc` from `PATH`.
    Runc,
    /// `crun` from `PATH`.
    Crun,
    /// A given binary (runc-compatible CLI).
    Path(PathBuf),
}

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where containers keep their state: `<root>/<id>/` (bundle, rootfs mount, writable layer,
    /// agent socket, agent state).
    pub root: PathBuf,
    /// Which runtime.
    pub oci: OciChoice,
    /// The agent binary on the host (bind-mounted read-only at `/.hybox/agent`, run as PID 1).
    pub agent_binary: PathBuf,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v1 only.
    V1,
    /// v1 controllers plus a v2 `unified` mount.
    Hybrid,
    /// cgroup v2 only.
    V2,
}

/// What was detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// `runc` or `crun` (or the given path).
    pub name: String,
    /// Its `--version` first line.
    pub version: String,
    /// The binary.
    pub binary: PathBuf,
    /// The cgroup layout.
    pub cgroup: CgroupMode,
}

/// Resource limits of one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Memory (and memory+swap) in bytes.
    pub memory_bytes: u64,
    /// Max pids.
    pub pids: u64,
    /// CPUs (quota/period), e.g. 1.0.
    pub cpus: f64,
}

/// An extra bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: String,
    /// Read-only.
    pub readonly: bool,
}

/// One sandbox's container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container id (the sandbox id; `[a-z0-9-]`, used for the runc id and cgroup path).
    pub id: String,
    /// The squashfs image of the root filesystem (read-only lower).
    pub image: PathBuf,
    /// Host directory bind-mounted at `/workspace` (rw).
    pub workspace: PathBuf,
    /// Host directory bind-mounted at `/tmp` (rw).
    pub tmp: PathBuf,
    /// More bind mounts (shared volumes).
    pub mounts: Vec<BindMount>,
    /// Limits.
    pub limits: Limits,
    /// NAT egress through a veth pair when true; only loopback when false.
    pub network: bool,
    /// The hostname inside.
    pub hostname: String,
}

/// A started container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Id.
    pub id: String,
    /// The host pid of its init (the agent).
    pub pid: u32,
    /// The agent's unix socket (a host path; not visible inside the container).
    pub agent_socket: PathBuf,
    /// The agent's state dir on the host (process records and logs), also valid when stopped.
    pub state_dir: PathBuf,
}

/// The runtime.
#[derive(Debug)]
pub struct Runtime {
    config: RuntimeConfig,
}

impl Runtime {
    /// Detects the OCI runtime and the cgroup mode and checks what containers need (root,
    /// overlayfs, squashfs, loop devices).
    ///
    /// # Errors
    /// [`RuntimeError::Unavailable`] with the reason.
    pub fn detect(config: RuntimeConfig) -> Result<Self> {
        Err(RuntimeError::Unavailable(format!(
            "not implemented ({})",
            config.root.display()
        )))
    }

    /// What was detected.
    #[must_use]
    pub fn info(&self) -> RuntimeInfo {
        unreachable_info(&self.config)
    }

    /// Starts the container of `spec` (mounting its rootfs first) and returns once its init runs.
    ///
    /// # Errors
    /// The runtime failed.
    pub fn start(&self, _spec: &ContainerSpec) -> Result<Container> {
        Err(RuntimeError::Unavailable("not implemented".into()))
    }

    /// Whether the container `id` runs, and its init's host pid.
    ///
    /// # Errors
    /// The runtime failed.
    pub fn running(&self, _id: &str) -> Result<Option<u32>> {
        Ok(None)
    }

    /// Stops the container (SIGKILL to all, delete, rootfs unmounted); its writable layer and
    /// agent state stay for the next start.
    ///
    /// # Errors
    /// The runtime failed.
    pub fn stop(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    /// Stops it and removes everything it had (writable layer, state).
    ///
    /// # Errors
    /// The runtime failed.
    pub fn destroy(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    /// Ids of containers this root knows (running or not), for cleanup at start.
    ///
    /// # Errors
    /// I/O.
    pub fn list(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The agent state dir of `id` on the host.
    #[must_use]
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.config.root.join(id).join("state")
    }
}

fn unreachable_info(config: &RuntimeConfig) -> RuntimeInfo {
    RuntimeInfo {
        name: String::new(),
        version: String::new(),
        binary: config.agent_binary.clone(),
        cgroup: CgroupMode::V2,
    }
}

/// Whether `path` is a mount point (helper for cleanup).
#[must_use]
pub fn is_mount_point(path: &Path) -> bool {
    let _ = path;
    false
}
