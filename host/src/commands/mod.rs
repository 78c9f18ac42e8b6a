//! The `hybox` command line: one verb per module, all talking to the same code as the API.

pub mod bench;
mod client_verbs;
pub mod image;
pub mod prepare;
pub mod shell;
pub mod snapshot;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client_verbs::{ExecArgs, RunArgs};

/// hybox: run untrusted code fast, on your own machine.
#[derive(Debug, Parser)]
#[command(name = "hybox", version, about)]
pub struct Cli {
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Where a client verb finds the server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// URL of a running `hybox serve`.
    #[arg(
        long,
        env = "HYBOX_SERVER",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub server: String,
    /// Bearer token for a server that requires one.
    #[arg(long, env = "HYBOX_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Where state and caches live.
#[derive(Debug, Clone, Args)]
pub struct DirArgs {
    /// Data directory (sandboxes, workspaces).
    #[arg(long, env = "HYBOX_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Cache directory (guest wheels, precompiled .cwasm); default: <data-dir>/cache.
    #[arg(long, env = "HYBOX_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl DirArgs {
    /// The data dir: the flag, else `$XDG_DATA_HOME/hybox`, else `~/.local/share/hybox`.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
                .unwrap_or_else(|| PathBuf::from("."))
                .join("hybox")
        })
    }

    /// The cache dir: the flag, else `<data-dir>/cache`.
    #[must_use]
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("cache"))
    }
}

/// The container route's settings of `hybox serve`.
#[derive(Debug, Clone, Args)]
pub struct ContainerArgs {
    /// OCI runtime driving containers: `auto` (crun on cgroup v2 hosts, runc otherwise),
    /// `runc`, `crun`, or the path of a runc-compatible binary.
    #[arg(long, env = "HYBOX_OCI_RUNTIME", default_value = "auto")]
    pub oci_runtime: String,
    /// Image store (built and imported root filesystems); default `<cache-dir>/images`.
    #[arg(long, env = "HYBOX_IMAGE_DIR")]
    pub image_dir: Option<PathBuf>,
    /// Image the containers run (a name or an id); the default one is built on first need.
    #[arg(long, env = "HYBOX_IMAGE", default_value = hybox_container_fallback::image::DEFAULT_IMAGE)]
    pub image: String,
    /// Default memory limit of a container, MiB.
    #[arg(long, default_value_t = 2048)]
    pub container_memory_mb: u64,
    /// Default pids limit of a container.
    #[arg(long, default_value_t = 1024)]
    pub container_pids: u64,
    /// Default CPUs of a container.
    #[arg(long, default_value_t = 2.0)]
    pub container_cpus: f64,
    /// Default idle time before a container stops (seconds, or `90s`, `10m`, `1h`); the
    /// workspace stays and the next request starts it again.
    #[arg(long, env = "HYBOX_SLEEP_AFTER", default_value = "10m")]
    pub sleep_after: String,
    /// Domain of host-style preview URLs (`{port}-{sandbox}-{token}.{domain}`; needs wildcard
    /// DNS to this server). `localhost` works on this machine.
    #[arg(long, env = "HYBOX_PREVIEW_DOMAIN", default_value = "localhost")]
    pub preview_domain: String,
}

impl ContainerArgs {
    /// The route's configuration: containers under `data_dir`, images under `cache_dir`.
    ///
    /// # Errors
    /// A bad `--sleep-after` or `--oci-runtime`.
    pub fn config(
        &self,
        data_dir: &std::path::Path,
        cache_dir: &std::path::Path,
    ) -> anyhow::Result<crate::backend::container::ContainerConfig> {
        use hybox_container_fallback::runtime::OciChoice;
        let mut c = crate::backend::container::ContainerConfig::new(data_dir, cache_dir);
        if let Some(dir) = &self.image_dir {
            c.image_dir.clone_from(dir);
        }
        c.image.clone_from(&self.image);
        c.oci = match self.oci_runtime.as_str() {
            "auto" => OciChoice::Auto,
            "runc" => OciChoice::Runc,
            "crun" => OciChoice::Crun,
            p if p.contains('/') => OciChoice::Path(PathBuf::from(p)),
            other => anyhow::bail!("--oci-runtime {other:?}: auto, runc, crun or a path"),
        };
        c.limits.memory_bytes = self.container_memory_mb.max(16) << 20;
        c.limits.pids = self.container_pids.max(8);
        c.limits.cpus = self.container_cpus.clamp(0.01, 1024.0);
        let secs =
            crate::sandbox::parse_sleep_after(&serde_json::Value::String(self.sleep_after.clone()))
                .map_err(|e| anyhow::anyhow!("--sleep-after: {e}"))?;
        c.sleep_after = std::time::Duration::from_secs(secs);
        Ok(c)
    }
}

/// `hybox sessions SANDBOX VERB`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Sandbox id.
    pub sandbox: String,
    /// What to do.
    #[command(subcommand)]
    pub verb: SessionsVerb,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Session verbs.
#[derive(Debug, Subcommand)]
pub enum SessionsVerb {
    /// List sessions.
    Ls,
    /// Create a session.
    Create {
        /// Its id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        /// Its working directory.
        #[arg(long)]
        cwd: Option<String>,
        /// Environment variables, `NAME=value`, repeatable.
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
    },
    /// Delete a session (a command running in it ends with SESSION_DESTROYED).
    Rm {
        /// Session id.
        id: String,
    },
    /// Set environment variables of a session (`setEnvVars`).
    Env {
        /// Session id.
        id: String,
        /// `NAME=value`, repeatable.
        #[arg(required = true)]
        env: Vec<String>,
    },
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server.
    Serve {
        /// Address to listen on (beyond loopback a token is required).
        #[arg(long, env = "HYBOX_LISTEN", default_value = "127.0.0.1:7700")]
        listen: SocketAddr,
        /// Bearer token clients must send.
        #[arg(long, env = "HYBOX_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Load the wasm route only on first use instead of at start.
        #[arg(long)]
        lazy: bool,
        /// Spare interpreter pairs (Python + JavaScript) kept started for new sandboxes.
        #[arg(long, env = "HYBOX_POOL_SIZE", default_value_t = 2)]
        pool_size: usize,
        /// Most guest instances alive at once; past it new contexts get CAPACITY_EXHAUSTED.
        #[arg(long, env = "HYBOX_MAX_INSTANCES", default_value_t = 1000)]
        max_instances: u32,
        /// Workspaces: copy-on-write FUSE views (`mount`: restore and fork in O(1), file
        /// watching), plain directories (`extract`: restore extracts), or `auto` (mount when this
        /// process can mount FUSE).
        #[arg(long, env = "HYBOX_FS_MODE", value_enum, default_value = "auto")]
        fs_mode: crate::workspaces::FsModeChoice,
        /// zstd compression level of snapshot images (1-22; mksquashfs's default is 15).
        #[arg(long, env = "HYBOX_SNAPSHOT_ZSTD_LEVEL", default_value_t = 3)]
        snapshot_zstd_level: i32,
        /// Data block size of snapshot images in KiB (a power of two, 4-1024).
        #[arg(long, env = "HYBOX_SNAPSHOT_BLOCK_KIB", default_value_t = 128)]
        snapshot_block_kib: u32,
        /// How often expired snapshots, idle spares and idle containers are swept (milliseconds).
        #[arg(long, default_value_t = 10_000, hide = true)]
        sweep_interval_ms: u64,
        #[command(flatten)]
        containers: ContainerArgs,
        #[command(flatten)]
        dirs: DirArgs,
    },
    /// Fetch, verify and precompile the guests (done by `serve` on first need otherwise).
    Prepare {
        #[command(flatten)]
        dirs: DirArgs,
    },
    /// Run a command in a sandbox (created if missing); exits with the command's code.
    Exec(ExecArgs),
    /// Run code in a sandbox's interpreter context.
    Run(RunArgs),
    /// Manage a sandbox's shell sessions (cwd and environment kept between commands).
    Sessions(SessionsArgs),
    /// List sandboxes.
    Ls {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Destroy a sandbox and everything in it.
    Rm {
        /// Sandbox id.
        sandbox: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Snapshots of workspaces: create, restore, list, delete, export, import.
    Snapshot(snapshot::SnapshotArgs),
    /// Copy a sandbox's workspace into new sandboxes (copy-on-write; O(1) with FUSE).
    Fork(snapshot::ForkArgs),
    /// Measure cold starts side by side with peers.
    Bench(bench::BenchArgs),
    /// Container images: build the default Ubuntu 24.04 one, list, import a rootfs or an OCI
    /// tarball, remove.
    Image {
        #[command(flatten)]
        args: image::ImageArgs,
        /// Image store; default `<cache-dir>/images` (where `hybox serve` looks).
        #[arg(long, env = "HYBOX_IMAGE_DIR", global = true)]
        image_dir: Option<PathBuf>,
        /// Print machine-readable JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        dirs: DirArgs,
    },
    /// An interactive terminal in a sandbox's container.
    Shell(shell::ShellArgs),
    /// List a sandbox's background processes.
    Ps(shell::PsArgs),
    /// Expose a port of a sandbox's container under a preview URL (or `--remove` it).
    Expose(shell::ExposeArgs),
}

pub use client_verbs::describe;

/// `hybox exec`.
///
/// # Errors
/// Connection and API errors.
pub async fn client_verbs_exec(a: ExecArgs) -> anyhow::Result<i32> {
    client_verbs::exec(a).await
}

/// `hybox run`.
///
/// # Errors
/// Connection and API errors.
pub async fn client_verbs_run(a: RunArgs) -> anyhow::Result<i32> {
    client_verbs::run(a).await
}

/// `hybox sessions`.
///
/// # Errors
/// Connection and API errors.
pub async fn client_verbs_sessions(a: SessionsArgs) -> anyhow::Result<i32> {
    client_verbs::sessions(a).await
}

/// `hybox ls`.
///
/// # Errors
/// Connection and API errors.
pub async fn client_verbs_ls(s: ServerArgs) -> anyhow::Result<i32> {
    client_verbs::ls(s).await
}

/// `hybox rm`.
///
/// # Errors
/// Connection and API errors.
pub async fn client_verbs_rm(id: &str, s: ServerArgs) -> anyhow::Result<i32> {
    client_verbs::rm(id, s).await
}
