//! The container backend adapter: one OCI container per sandbox, started on the first request
//! routed to it (or with the sandbox when it asks for `keepAlive`/`warm`), stopped after
//! `sleepAfter` idle (the workspace and the container's writable layer stay) and started again
//! transparently on the next request. Requests reach the container through its agent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hybox_container_fallback::agent::{self, AgentClient};
use hybox_container_fallback::image::{self, ImageManifest, ImageStore};
use hybox_container_fallback::runtime::{
    BindMount, ContainerSpec, Limits, OciChoice, Runtime, RuntimeConfig, RuntimeInfo,
};
use hybox_container_fallback::shell as cshell;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::sandbox::Sandbox;

/// Settings of the container route (`hybox serve` flags).
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Where containers keep their state (`<data>/containers`).
    pub root: PathBuf,
    /// The image store (`<cache>/images` or `--image-dir`).
    pub image_dir: PathBuf,
    /// The image sandboxes run (a name or an id); the default recipe's is built on first need.
    pub image: String,
    /// Which OCI runtime.
    pub oci: OciChoice,
    /// Default limits.
    pub limits: Limits,
    /// Default idle time before a container stops.
    pub sleep_after: Duration,
}

impl ContainerConfig {
    /// Defaults: containers under `data_dir`, images under `cache_dir` (itself under the data
    /// dir unless moved; a shared cache dir shares the images too).
    #[must_use]
    pub fn new(data_dir: &Path, cache_dir: &Path) -> Self {
        Self {
            root: data_dir.join("containers"),
            image_dir: cache_dir.join("images"),
            image: image::DEFAULT_IMAGE.to_owned(),
            oci: OciChoice::Auto,
            limits: Limits {
                memory_bytes: 2 << 30,
                pids: 1024,
                cpus: 2.0,
            },
            sleep_after: Duration::from_secs(600),
        }
    }
}

/// A started container and how to reach it.
#[derive(Debug, Clone)]
struct Live {
    client: AgentClient,
    pid: u32,
    started: Instant,
}

/// One sandbox's container slot: starts and stops take its lock; requests only read.
#[derive(Debug, Default)]
struct Slot {
    live: tokio::sync::Mutex<Option<Live>>,
    /// Last use, ms since the manager started.
    last_used: AtomicU64,
}

/// A client for a sandbox's running container, with what commands need.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The agent.
    pub client: AgentClient,
    /// The image's default environment (`PATH`, `HOME`...).
    pub base_env: Vec<(String, String)>,
}

impl Handle {
    /// Has the agent keep [`cshell::SPARES`] session wrappers started for the next commands
    /// (see `shell::wrapper`), in the background: nobody waits for it.
    pub fn top_up_spares(&self) {
        let client = self.client.clone();
        let spare = cshell::exec_spec(self.base_env.clone(), None);
        tokio::spawn(async move {
            if let Err(e) = client.prepare(&spare, cshell::SPARES).await {
                tracing::debug!(error = %e, "starting a spare shell failed");
            }
        });
    }
}

/// How `/v1/health` and the log name where container limits come from.
fn limits_label(info: &RuntimeInfo) -> &'static str {
    if info.cgroup_limits {
        "cgroup"
    } else {
        "rlimit"
    }
}

/// The container route.
#[derive(Debug)]
pub struct Containers {
    config: ContainerConfig,
    runtime: Result<Arc<Runtime>, String>,
    images: Option<ImageStore>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    build: tokio::sync::Mutex<()>,
    image: Mutex<Option<ImageManifest>>,
    epoch: Instant,
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{what}: {e}"))
}

fn blocking_err(e: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(e.into())
}

impl Containers {
    /// Detects the runtime and prepares the agent; a host that cannot run containers gets a
    /// manager that refuses with the reason (and says so in the log and in `/v1/health`).
    #[must_use]
    pub fn open(config: ContainerConfig) -> Self {
        let images = ImageStore::open(&config.image_dir)
            .map_err(|e| tracing::warn!(dir = %config.image_dir.display(), "image store: {e}"))
            .ok();
        let runtime = Self::detect(&config);
        match &runtime {
            Ok(rt) => {
                let info = rt.info();
                tracing::info!(
                    runtime = %info.name,
                    version = %info.version,
                    cgroup = ?info.cgroup,
                    rootless = info.rootless,
                    limits = limits_label(&info),
                    "container route ready"
                );
                // Containers of an earlier server run see a dead workspace mount: stop them.
                rt.cleanup_all();
            }
            Err(why) => tracing::warn!("container route unavailable: {why}"),
        }
        Self {
            config,
            runtime,
            images,
            slots: Mutex::new(HashMap::new()),
            build: tokio::sync::Mutex::new(()),
            image: Mutex::new(None),
            epoch: Instant::now(),
        }
    }

    fn detect(config: &ContainerConfig) -> Result<Arc<Runtime>, String> {
        std::fs::create_dir_all(&config.root)
            .map_err(|e| format!("create {}: {e}", config.root.display()))?;
        let bin_dir = config.root.join(".bin");
        std::fs::create_dir_all(&bin_dir)
            .map_err(|e| format!("create {}: {e}", bin_dir.display()))?;
        let agent_binary = agent::install_binary(&bin_dir).map_err(|e| format!("agent: {e}"))?;
        Runtime::detect(RuntimeConfig {
            root: config.root.clone(),
            oci: config.oci.clone(),
            agent_binary,
        })
        .map(Arc::new)
        .map_err(|e| e.to_string())
    }

    /// `Ok` when containers can run here, else why not.
    ///
    /// # Errors
    /// The reason.
    pub fn available(&self) -> Result<(), &str> {
        self.runtime.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// Whether containers run without root (then without network).
    #[must_use]
    pub fn rootless(&self) -> bool {
        self.runtime.as_ref().is_ok_and(|rt| rt.info().rootless)
    }

    fn runtime(&self) -> Result<&Arc<Runtime>, ApiError> {
        self.runtime
            .as_ref()
            .map_err(|why| ApiError::RouteUnavailable {
                route_reason: "the container route is unavailable".into(),
                message: format!("the container route is unavailable on this host: {why}"),
            })
    }

    fn slot(&self, id: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The image sandboxes run, built from the default recipe on first need.
    async fn image(&self) -> Result<(PathBuf, ImageManifest), ApiError> {
        let store = self.images.clone().ok_or_else(|| {
            ApiError::ContainerNotReady("the image store cannot be opened".into())
        })?;
        if let Some(m) = self
            .image
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok((store.path(&m), m));
        }
        let _building = self.build.lock().await;
        let name = self.config.image.clone();
        let s = store.clone();
        let found = tokio::task::spawn_blocking(move || s.get(&name))
            .await
            .map_err(blocking_err)?;
        let manifest = match found {
            Ok(m) => m,
            Err(image::ImageError::NotFound(_)) if self.config.image == image::DEFAULT_IMAGE => {
                tracing::info!(
                    dir = %store.dir().display(),
                    "building the default container image ({}) on first need; this takes a few minutes (or run `hybox image build` ahead)",
                    image::DEFAULT_IMAGE
                );
                let s = store.clone();
                let started = Instant::now();
                let m = tokio::task::spawn_blocking(move || {
                    image::build(&s, &image::Recipe::default_recipe(), &|p| {
                        if let image::Progress::Phase(phase) = p {
                            tracing::info!("image build: {phase}");
                        }
                    })
                })
                .await
                .map_err(blocking_err)?
                .map_err(|e| {
                    ApiError::ContainerNotReady(format!("building the image failed: {e}"))
                })?;
                tracing::info!(id = %m.id, secs = started.elapsed().as_secs(), "image built");
                m
            }
            Err(e) => {
                return Err(ApiError::ContainerNotReady(format!(
                    "image {}: {e}",
                    self.config.image
                )));
            }
        };
        *self
            .image
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(manifest.clone());
        Ok((store.path(&manifest), manifest))
    }

    /// The running container of `sb`, started if needed.
    ///
    /// # Errors
    /// [`ApiError::RouteUnavailable`] on a host without containers, [`ApiError::ContainerNotReady`]
    /// when it cannot start.
    pub async fn handle(&self, sb: &Sandbox) -> Result<Handle, ApiError> {
        let rt = self.runtime()?.clone();
        let (image_path, manifest) = self.image().await?;
        let slot = self.slot(sb.id.as_str());
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        let mut live = slot.live.lock().await;
        if let Some(l) = live.as_ref() {
            return Ok(Handle {
                client: l.client.clone(),
                base_env: manifest.env.clone(),
            });
        }
        let spec = self.spec(sb, image_path);
        let started = Instant::now();
        let container = tokio::task::spawn_blocking(move || rt.start(&spec))
            .await
            .map_err(blocking_err)?
            .map_err(|e| ApiError::ContainerNotReady(e.to_string()))?;
        let client = AgentClient::new(&container.agent_socket);
        // The agent answers as soon as it runs; a few ms after `runc run -d` returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.ping().await {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => {
                    let id = sb.id.to_string();
                    let rt = self.runtime()?.clone();
                    let _ = tokio::task::spawn_blocking(move || rt.stop(&id)).await;
                    return Err(ApiError::ContainerNotReady(format!(
                        "the container's agent did not answer: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        tracing::info!(
            sandbox = %sb.id,
            pid = container.pid,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "container started"
        );
        *live = Some(Live {
            client: client.clone(),
            pid: container.pid,
            started: Instant::now(),
        });
        let handle = Handle {
            client,
            base_env: manifest.env,
        };
        // The first command finds its shell started.
        handle.top_up_spares();
        Ok(handle)
    }

    fn spec(&self, sb: &Sandbox, image: PathBuf) -> ContainerSpec {
        let meta = sb.meta();
        let o = &meta.container;
        let d = self.config.limits;
        let mounts = sb
            .volume_mounts
            .iter()
            .map(|m| BindMount {
                source: m.host.clone(),
                destination: m.guest.clone(),
                readonly: !m.writable,
            })
            .collect();
        ContainerSpec {
            id: sb.id.to_string(),
            image,
            workspace: sb.workspace_dir(),
            tmp: sb.tmp_dir(),
            mounts,
            limits: Limits {
                memory_bytes: o.memory_mb.map_or(d.memory_bytes, |mb| mb << 20),
                pids: o.pids.unwrap_or(d.pids),
                cpus: o.cpus.unwrap_or(d.cpus),
            },
            network: o.network,
            hostname: sb.id.to_string(),
        }
    }

    /// Marks the sandbox's container used now (preview traffic, log streams).
    pub fn touch(&self, id: &str) {
        if let Some(slot) = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
        {
            slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The agent of the sandbox's container if it runs (never starts one).
    pub async fn running(&self, id: &str) -> Option<AgentClient> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()?;
        let live = slot.live.lock().await;
        live.as_ref().map(|l| l.client.clone())
    }

    /// The host folder where the sandbox's agent keeps process records and logs.
    #[must_use]
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.config.root.join(id).join("state")
    }

    /// `running`, `stopped` or `unavailable`, for views.
    pub async fn status(&self, id: &str) -> Value {
        if self.runtime.is_err() {
            return json!({ "status": "unavailable" });
        }
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        match slot {
            Some(slot) => match slot.live.lock().await.as_ref() {
                Some(l) => json!({
                    "status": "running",
                    "pid": l.pid,
                    "uptimeMs": u64::try_from(l.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                }),
                None => json!({ "status": "stopped" }),
            },
            None => json!({ "status": "stopped" }),
        }
    }

    /// Stops the sandbox's container (idle or shutdown); the next request starts it again.
    pub async fn stop(&self, id: &str) {
        let Ok(rt) = self.runtime() else { return };
        let rt = rt.clone();
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let owned = id.to_owned();
        match tokio::task::spawn_blocking(move || rt.stop(&owned)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(sandbox = id, "stopping the container: {e}"),
            Err(e) => tracing::warn!(sandbox = id, "stopping the container: {e}"),
        }
        *live = None;
    }

    /// Removes the sandbox's container and everything it had.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the runtime cannot remove it.
    pub async fn destroy(&self, id: &str) -> Result<(), ApiError> {
        let Ok(rt) = self.runtime() else {
            return Ok(());
        };
        let rt = rt.clone();
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let owned = id.to_owned();
        tokio::task::spawn_blocking(move || rt.destroy(&owned))
            .await
            .map_err(blocking_err)?
            .map_err(|e| internal("remove the container", e))?;
        *live = None;
        drop(live);
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        Ok(())
    }

    /// Stops containers idle for longer than their `sleepAfter` (not `keepAlive` ones).
    pub async fn sweep_idle(&self, sandboxes: &[Arc<Sandbox>]) {
        let now = self.now_ms();
        for sb in sandboxes {
            let meta = sb.meta();
            if meta.container.keep_alive {
                continue;
            }
            let idle_ms = meta
                .container
                .sleep_after_s
                .map_or(self.config.sleep_after, Duration::from_secs)
                .as_millis();
            let slot = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(sb.id.as_str())
                .cloned();
            let Some(slot) = slot else { continue };
            let idle = u128::from(now.saturating_sub(slot.last_used.load(Ordering::Relaxed)));
            if idle < idle_ms {
                continue;
            }
            let runs = slot.live.lock().await.is_some();
            if runs {
                tracing::info!(sandbox = %sb.id, idle_s = idle / 1000, "container idle: stopping it (the workspace stays)");
                self.stop(sb.id.as_str()).await;
            }
        }
    }

    /// Stops every container (server shutdown: the workspace mounts they see go away).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for id in ids {
            self.stop(&id).await;
        }
        if let Ok(rt) = self.runtime() {
            let rt = rt.clone();
            let _ = tokio::task::spawn_blocking(move || rt.cleanup_all()).await;
        }
    }

    /// What `/v1/health` says about the route.
    pub fn health(&self) -> Value {
        let image = self
            .image
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .or_else(|| {
                self.images
                    .as_ref()
                    .and_then(|s| s.get(&self.config.image).ok())
            });
        let image = image.map(|m| {
            let path = self.images.as_ref().map(|s| s.path(&m));
            json!({ "name": m.name, "id": m.id, "path": path, "os": m.os })
        });
        match &self.runtime {
            Ok(rt) => {
                let info = rt.info();
                json!({
                    "available": true,
                    "runtime": info.name,
                    "runtimeVersion": info.version,
                    "cgroup": format!("{:?}", info.cgroup).to_lowercase(),
                    "rootless": info.rootless,
                    "limits": limits_label(&info),
                    "image": image,
                })
            }
            Err(why) => json!({ "available": false, "reason": why, "image": image }),
        }
    }
}
