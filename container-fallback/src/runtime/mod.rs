//! One OCI container per sandbox, driven by a real OCI runtime (runc or crun from the
//! distribution; never our own).
//!
//! Per container, under `<root>/<id>/`: `bundle/config.json`, `rootfs/` (an overlay of the
//! image, mounted read-only once per image at `<root>/.images/<key>/`, and of `upper/` +
//! `work/`, the writable layer that persists across stop and start), `state/` (the agent's,
//! bound at `/.hybox/state`), `agent.sock` (a listening socket created here and handed to the
//! agent as fd 3: the path is connectable on the host and does not exist inside),
//! `console.log` (the runtime's and the agent's stdout and stderr) and `net` (the /30 of a
//! container with network). The runtime's own state is private: `--root <root>/.runc`.
//!
//! Containers run detached: they outlive the host process, which finds them again through
//! [`Runtime::running`] and cleans up with [`Runtime::cleanup_all`].
//!
//! Secure defaults: pid, ipc, uts, mount and network namespaces (only `lo` unless
//! [`ContainerSpec::network`]), Docker's default capabilities, runc's masked and read-only
//! paths, no device nodes beyond the standard ones, cgroup limits on memory (swap included),
//! pids and CPU. There is no seccomp profile (runc applies none unless given one).

mod cgroup;
mod cli;
mod command;
mod detect;
mod mounts;
mod net;
mod oci;
mod rootless;

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cli::OciCli;

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
    /// Containers run without root: in a user namespace, on a FUSE rootfs, without network.
    pub rootless: bool,
    /// Whether limits are cgroup limits (always when privileged; rootless only with a
    /// delegated cgroup); otherwise rlimits.
    pub cgroup_limits: bool,
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

/// How long `stop` waits for a killed container's init to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// The runtime.
#[derive(Debug)]
pub struct Runtime {
    config: RuntimeConfig,
    info: RuntimeInfo,
    cli: OciCli,
    /// RLIMIT_NOFILE inside.
    nofile: u64,
    /// Serialises image mounts (with the overlay mounts on top of them, against
    /// [`Runtime::unmount_images`]) and subnet allocation within this process.
    lock: Mutex<()>,
    /// Set when this process is not root.
    rootless: Option<rootless::Rootless>,
}

/// A container's paths on the host.
#[derive(Debug)]
struct Layout {
    dir: PathBuf,
    bundle: PathBuf,
    rootfs: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    console: PathBuf,
    pid_file: PathBuf,
}

impl Runtime {
    /// Detects the OCI runtime and the cgroup mode and checks what containers need (root,
    /// overlayfs, squashfs, loop devices).
    ///
    /// # Errors
    /// [`RuntimeError::Unavailable`] with the reason.
    pub fn detect(config: RuntimeConfig) -> Result<Self> {
        let privileged = rustix::process::geteuid().is_root();
        let root_bytes = config.root.as_os_str().as_encoded_bytes();
        if !config.root.is_absolute() || root_bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\'))
        {
            return Err(RuntimeError::Unavailable(format!(
                "the container root {} must be an absolute path without ',', ':' or '\\' (overlay options)",
                config.root.display()
            )));
        }
        let cgroup = cgroup::detect()?;
        let (name, binary) = detect::choose(&config.oci, cgroup)?;
        let is_crun = binary
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("crun"));
        let hide_unified = is_crun && cgroup == CgroupMode::Hybrid;
        if hide_unified && !privileged {
            return Err(RuntimeError::Unavailable(
                "crun on a hybrid cgroup host needs root (it runs in a private mount namespace without the unified hierarchy); use runc".into(),
            ));
        }
        if hide_unified && command::find("unshare").is_none() {
            return Err(RuntimeError::Unavailable(
                "crun on a hybrid cgroup host needs unshare (util-linux)".into(),
            ));
        }
        let version = detect::version_of(&binary)?;
        if privileged {
            detect::require_filesystem("overlay")?;
            detect::require_filesystem("squashfs")?;
            if !Path::new("/dev/loop-control").exists() {
                return Err(RuntimeError::Unavailable(
                    "no loop devices (/dev/loop-control is missing)".into(),
                ));
            }
        }
        let state_root = config.root.join(".runc");
        fs::create_dir_all(&state_root)?;
        let rootless = if privileged {
            fs::create_dir_all(config.root.join(".images"))?;
            None
        } else {
            Some(rootless::Rootless::open(&config.root, cgroup)?)
        };
        let info = RuntimeInfo {
            name,
            version,
            binary: binary.clone(),
            cgroup,
            rootless: rootless.is_some(),
            cgroup_limits: rootless.as_ref().is_none_or(|r| r.cgroup_parent.is_some()),
        };
        tracing::info!(
            runtime = %info.name,
            version = %info.version,
            cgroup = ?info.cgroup,
            hide_unified,
            rootless = info.rootless,
            cgroup_limits = info.cgroup_limits,
            "container runtime detected"
        );
        Ok(Self {
            cli: OciCli::new(binary, hide_unified, state_root),
            config,
            info,
            nofile: detect::nofile_limit(),
            lock: Mutex::new(()),
            rootless,
        })
    }

    /// What was detected.
    #[must_use]
    pub fn info(&self) -> RuntimeInfo {
        self.info.clone()
    }

    /// Starts the container of `spec` (mounting its rootfs first) and returns once its init runs.
    /// A container of the same id left from before (running or not) is stopped first.
    ///
    /// # Errors
    /// The runtime failed.
    pub fn start(&self, spec: &ContainerSpec) -> Result<Container> {
        validate_id(&spec.id)?;
        if spec.network && self.rootless.is_some() {
            return Err(RuntimeError::Unavailable(
                "network: true needs root (a veth pair and NAT in the host's namespace); rootless containers have loopback only".into(),
            ));
        }
        let mut layout = self.layout(&spec.id);
        if self.cli.knows(&spec.id) || mounts::is_mount_point(&layout.rootfs) {
            tracing::info!(id = %spec.id, "stopping a stale container first");
            self.stop(&spec.id)?;
        }
        let sources = [&spec.workspace, &spec.tmp]
            .into_iter()
            .chain(spec.mounts.iter().map(|m| &m.source));
        for source in sources {
            if !source.exists() {
                return Err(RuntimeError::Failed(format!(
                    "mount source {} does not exist",
                    source.display()
                )));
            }
        }
        if !self.config.agent_binary.is_file() {
            return Err(RuntimeError::Failed(format!(
                "agent binary {} does not exist",
                self.config.agent_binary.display()
            )));
        }
        create_private_dir(&layout.dir)?;
        for dir in [
            &layout.bundle,
            &layout.rootfs,
            &layout.upper,
            &layout.work,
            &layout.state,
        ] {
            fs::create_dir_all(dir)?;
        }
        if let Some(rl) = &self.rootless {
            // fs-layer's whiteouts, not overlayfs's: a folder of its own.
            layout.rootfs = rl.attach(&spec.id, &spec.image, &layout.dir.join("upper-view"))?;
        } else {
            let _guard = self.lock();
            let lower = mounts::mount_image(&self.config.root.join(".images"), &spec.image)?;
            mounts::mount_overlay(&lower, &layout.upper, &layout.work, &layout.rootfs)?;
        }
        let started = self.launch(spec, &layout);
        if started.is_err()
            && let Err(e) = self.stop(&spec.id)
        {
            tracing::warn!(id = %spec.id, error = %e, "cleanup after a failed start failed");
        }
        started
    }

    fn launch(&self, spec: &ContainerSpec, layout: &Layout) -> Result<Container> {
        let config = oci::config(
            spec,
            &oci::Host {
                rootfs: &layout.rootfs,
                state: &layout.state,
                agent: &self.config.agent_binary,
                resolv_conf: Path::new("/etc/resolv.conf"),
                nofile: self.nofile,
                rootless: self.rootless.as_ref().map(|r| oci::UserNs {
                    uid: r.uid,
                    gid: r.gid,
                    cgroup_parent: r.cgroup_parent.as_deref(),
                }),
            },
        );
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| RuntimeError::Failed(format!("config.json: {e}")))?;
        fs::write(layout.bundle.join("config.json"), json)?;
        remove_if_present(&layout.socket)?;
        remove_if_present(&layout.pid_file)?;
        let listener = UnixListener::bind(&layout.socket)?;
        let console = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&layout.console)?;
        self.cli.run_detached(
            &spec.id,
            &layout.bundle,
            &layout.pid_file,
            listener.as_fd(),
            console,
        )?;
        // The agent holds the socket now; the path stays connectable.
        drop(listener);
        let pid_text = fs::read_to_string(&layout.pid_file)?;
        let pid: u32 = pid_text.trim().parse().map_err(|_| {
            RuntimeError::Failed(format!(
                "{}: not a pid: {pid_text:?}",
                layout.pid_file.display()
            ))
        })?;
        if spec.network {
            let subnet = {
                let _guard = self.lock();
                net::allocate(&self.config.root, &spec.id)?
            };
            net::setup(&layout.dir, &spec.id, pid, subnet)?;
        }
        tracing::info!(id = %spec.id, pid, network = spec.network, "container started");
        Ok(Container {
            id: spec.id.clone(),
            pid,
            agent_socket: layout.socket.clone(),
            state_dir: layout.state.clone(),
        })
    }

    /// Whether the container `id` runs, and its init's host pid.
    ///
    /// # Errors
    /// The runtime failed.
    pub fn running(&self, id: &str) -> Result<Option<u32>> {
        validate_id(id)?;
        Ok(self
            .cli
            .state(id)?
            .filter(|s| s.status == "running" && s.pid != 0)
            .map(|s| s.pid))
    }

    /// Stops the container (SIGKILL to all, delete, rootfs unmounted); its writable layer and
    /// agent state stay for the next start. Stopping what does not run is fine.
    ///
    /// # Errors
    /// The runtime failed.
    pub fn stop(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let layout = self.layout(id);
        if let Some(state) = self.cli.state(id)? {
            if state.status != "stopped" {
                if let Err(e) = self.cli.kill_all(id) {
                    // It may have died in between; delete --force below settles it.
                    tracing::debug!(id, error = %e, "kill failed");
                }
                wait_dead(state.pid, KILL_TIMEOUT);
            }
            if let Err(e) = self.cli.delete(id, false) {
                tracing::debug!(id, error = %e, "delete failed; forcing");
                self.cli.delete(id, true)?;
            }
        }
        let network = net::teardown(&layout.dir, id);
        match &self.rootless {
            Some(rl) => rl.detach(id),
            None => mounts::unmount(&layout.rootfs)?,
        }
        remove_if_present(&layout.socket)?;
        remove_if_present(&layout.pid_file)?;
        tracing::info!(id, "container stopped");
        network
    }

    /// Stops it and removes everything it had (writable layer, state).
    ///
    /// # Errors
    /// The runtime failed, or something under the container's dir is still mounted.
    pub fn destroy(&self, id: &str) -> Result<()> {
        self.stop(id)?;
        let layout = self.layout(id);
        if mounts::is_mount_point(&layout.rootfs) {
            return Err(RuntimeError::Failed(format!(
                "refusing to remove {}: its rootfs is still mounted",
                layout.dir.display()
            )));
        }
        mounts::remove_tree(&layout.dir)?;
        tracing::info!(id, "container destroyed");
        Ok(())
    }

    /// Ids of containers this root knows (running or not), for cleanup at start.
    ///
    /// # Errors
    /// I/O.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.config.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string()
                && validate_id(&name).is_ok()
            {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Stops every container under the root (and any the runtime still keeps state for) and
    /// unmounts the images no container uses; for host start and shutdown. Failures are
    /// logged, and the rest is still cleaned.
    pub fn cleanup_all(&self) {
        let mut ids = self.list().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list containers");
            Vec::new()
        });
        ids.extend(
            self.cli
                .ids()
                .into_iter()
                .filter(|id| validate_id(id).is_ok()),
        );
        ids.sort();
        ids.dedup();
        for id in ids {
            if let Err(e) = self.stop(&id) {
                tracing::warn!(id, error = %e, "cannot stop container");
            }
        }
        self.unmount_images();
    }

    /// Unmounts the image mounts under `<root>/.images/` that no container uses (a mounted
    /// rootfs keeps its image busy) and removes their dirs.
    pub fn unmount_images(&self) {
        let _guard = self.lock();
        let images = self.config.root.join(".images");
        let Ok(entries) = fs::read_dir(&images) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            match mounts::unmount_if_unused(&path) {
                Ok(true) => {
                    if let Err(e) = fs::remove_dir(&path) {
                        tracing::debug!(path = %path.display(), error = %e, "image dir kept");
                    }
                }
                Ok(false) => tracing::debug!(path = %path.display(), "image in use"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot unmount image")
                }
            }
        }
    }

    /// The agent state dir of `id` on the host.
    #[must_use]
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.config.root.join(id).join("state")
    }

    fn layout(&self, id: &str) -> Layout {
        let dir = self.config.root.join(id);
        let bundle = dir.join("bundle");
        Layout {
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
            state: dir.join("state"),
            socket: dir.join("agent.sock"),
            console: dir.join("console.log"),
            pid_file: bundle.join("pid"),
            bundle,
            dir,
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere leaves nothing inconsistent.
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `path` is a mount point (helper for cleanup).
#[must_use]
pub fn is_mount_point(path: &Path) -> bool {
    mounts::is_mount_point(path)
}

/// Ids name directories, runtime containers, cgroups and interfaces: `[a-z0-9-]`, 1..=64 bytes,
/// not starting with `-`.
fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Failed(format!(
            "invalid container id {id:?} (want [a-z0-9-], at most 64)"
        )))
    }
}

/// Creates the container's dir readable by root only: the agent socket in it runs anything as
/// the container's root.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Waits until `pid` is gone or a zombie, at most `timeout`.
fn wait_dead(pid: u32, timeout: Duration) {
    if pid == 0 {
        return;
    }
    let deadline = Instant::now() + timeout;
    let stat = format!("/proc/{pid}/stat");
    while Instant::now() < deadline {
        let Ok(text) = fs::read_to_string(&stat) else {
            return;
        };
        // The state follows the command name's closing parenthesis.
        let state = text
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if matches!(state, Some('Z' | 'X') | None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tracing::warn!(pid, "container init still alive after SIGKILL");
}
