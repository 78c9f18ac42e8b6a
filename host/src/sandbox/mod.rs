//! Sandboxes: the registry, their lifecycle and their persisted metadata.
//!
//! On disk (`<data-dir>/sandboxes/<id>/`): `meta.json` (written atomically) and `tmp/` (the
//! guests' `/tmp`). The tree both routes see as `/workspace` comes from [`Workspaces`]: a
//! copy-on-write view whose upper layer and image stack `meta.json` records, or a plain
//! `workspace/` folder here. Metadata and files survive a restart of the server; live
//! interpreter contexts do not, and the API says so by listing none.

pub mod context;
mod id;
pub mod session;
pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

pub use context::CodeContext;
pub use id::{SandboxId, random_hex};

use crate::api::error::ApiError;
use crate::backend::wasi::{SPARE_MEMORY_MB, Spare};
use crate::files::Workspace;
use crate::volumes::{VolumeMount, Volumes};
use crate::workspaces::{FsMode, Layout, Workspaces};
use hybox_wasi_runtime::{Context, Language};

/// Interpreters started before the sandbox existed, waiting for its first contexts.
#[derive(Debug)]
struct Spares {
    python: Option<Context>,
    js: Option<Context>,
    since: Instant,
}

/// What is persisted about a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxMeta {
    /// The id.
    pub id: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Sandbox-level environment (below session and per-call env).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Memory cap of each guest, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_limit_mb: u64,
    /// Where the workspace's layers are (mount mode).
    #[serde(flatten)]
    pub layout: Layout,
    /// Shared volumes mounted into the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// How its container runs.
    #[serde(default)]
    pub container: ContainerOptions,
    /// Exposed ports by number (they survive container restarts and server restarts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, ExposedPort>,
}

/// A sandbox's container settings (given at creation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerOptions {
    /// NAT egress through a veth pair; only loopback when false.
    #[serde(default)]
    pub network: bool,
    /// Never stopped for idleness (destroy it yourself); the container starts with the sandbox.
    #[serde(default)]
    pub keep_alive: bool,
    /// Start the container with the sandbox instead of on the first request that needs it.
    #[serde(default)]
    pub warm: bool,
    /// Idle time after which the container stops (the workspace stays), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_after_s: Option<u64>,
    /// Container memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Container pids limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Container CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// An exposed port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExposedPort {
    /// The token in its preview URL.
    pub token: String,
    /// A friendly name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was exposed.
    pub exposed_at: String,
}

fn default_memory_mb() -> u64 {
    1024
}

/// A live sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Its id.
    pub id: SandboxId,
    dir: PathBuf,
    meta: Mutex<SandboxMeta>,
    /// Its workspace, opened with cap-std.
    pub workspace: Arc<Workspace>,
    workspace_dir: PathBuf,
    /// Guest mounts of its shared volumes.
    pub volume_mounts: Vec<hybox_wasi_runtime::Mount>,
    /// Code contexts by id.
    pub contexts: Mutex<HashMap<String, Arc<CodeContext>>>,
    /// Tools its guests may call (one instance per sandbox).
    pub tools: Arc<dyn hybox_wasi_runtime::ToolHost>,
    /// Shell sessions.
    pub sessions: session::Sessions,
    /// Running commands by exec id, for `DELETE .../exec/{execId}`.
    pub execs: Mutex<HashMap<String, hybox_wasi_runtime::CancelToken>>,
    spares: Mutex<Option<Spares>>,
    /// Serializes snapshot, restore and fork of this sandbox's workspace.
    pub fs_lock: tokio::sync::Mutex<()>,
}

impl Sandbox {
    /// A copy of its metadata.
    #[must_use]
    pub fn meta(&self) -> SandboxMeta {
        self.meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The workspace folder on the host.
    #[must_use]
    pub fn workspace_dir(&self) -> PathBuf {
        self.workspace_dir.clone()
    }

    /// The sandbox's own folder (metadata, tmp).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes its metadata durably (`meta.json` written and synced before this returns).
    ///
    /// # Errors
    /// [`ApiError::Internal`] when `meta.json` cannot be written.
    pub fn update_meta(
        &self,
        change: impl FnOnce(&mut SandboxMeta),
    ) -> Result<SandboxMeta, ApiError> {
        let mut meta = self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = meta.clone();
        change(&mut next);
        write_meta(&self.dir, &next)?;
        sync_meta(&self.dir).map_err(|e| io_err("sync meta.json", e))?;
        *meta = next.clone();
        Ok(next)
    }

    /// Records a new workspace layout (after a restore) durably.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when `meta.json` cannot be written.
    pub fn set_layout(&self, layout: Layout) -> Result<(), ApiError> {
        let mut meta = self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        meta.layout = layout;
        write_meta(&self.dir, &meta)?;
        sync_meta(&self.dir).map_err(|e| io_err("sync meta.json", e))
    }

    /// The guests' `/tmp` on the host.
    #[must_use]
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Takes the spare interpreter of `language`, if the sandbox still has one.
    pub fn take_spare(&self, language: Language) -> Option<Context> {
        let mut slot = self
            .spares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let spares = slot.as_mut()?;
        match language {
            Language::Python => spares.python.take(),
            Language::JavaScript => spares.js.take(),
        }
    }

    /// Drops spares older than `ttl`.
    pub fn expire_spare(&self, ttl: Duration) {
        let mut slot = self
            .spares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_ref().is_some_and(|s| s.since.elapsed() > ttl) {
            *slot = None;
        }
    }

    /// Looks up a context.
    ///
    /// # Errors
    /// [`ApiError::ContextNotFound`].
    pub fn context(&self, id: &str) -> Result<Arc<CodeContext>, ApiError> {
        self.contexts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::ContextNotFound(id.to_owned()))
    }
}

/// Options of a get-or-create.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateOptions {
    /// Sandbox-level environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Memory cap per guest in MiB (default 1024).
    #[serde(default)]
    pub memory_limit_mb: Option<u64>,
    /// Shared volumes to mount (at creation only).
    #[serde(default)]
    pub volumes: Option<Vec<VolumeMount>>,
    /// Container: NAT egress (default off).
    #[serde(default)]
    pub network: Option<bool>,
    /// Container: never stopped for idleness, started with the sandbox.
    #[serde(default)]
    pub keep_alive: Option<bool>,
    /// Container: started with the sandbox.
    #[serde(default)]
    pub warm: Option<bool>,
    /// Container: idle time before it stops: seconds, or a string like `"90s"`, `"10m"`, `"1h"`.
    #[serde(default)]
    pub sleep_after: Option<serde_json::Value>,
    /// Container limits.
    #[serde(default)]
    pub resources: Option<Resources>,
}

/// Container limits asked for at creation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Max processes.
    #[serde(default)]
    pub pids: Option<u64>,
    /// CPUs.
    #[serde(default)]
    pub cpus: Option<f64>,
}

/// Parses `sleepAfter`: a number of seconds or `<n>s|m|h`.
///
/// # Errors
/// [`ApiError::InvalidRequest`].
pub fn parse_sleep_after(v: &serde_json::Value) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::InvalidRequest(format!(
            "sleepAfter {v}: give seconds or a string like \"10m\" (1s to 30d)"
        ))
    };
    let secs = match v {
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: u64 = num.parse().map_err(|_| bad())?;
            let mul = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86400,
                _ => return Err(bad()),
            };
            n.checked_mul(mul).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    if (1..=30 * 86400).contains(&secs) {
        Ok(secs)
    } else {
        Err(bad())
    }
}

impl CreateOptions {
    /// The container settings these options ask for.
    ///
    /// # Errors
    /// [`ApiError::InvalidRequest`] for values out of range.
    pub fn container(&self) -> Result<ContainerOptions, ApiError> {
        let r = self.resources.clone().unwrap_or_default();
        if let Some(mb) = r.memory_mb
            && !(16..=1 << 20).contains(&mb)
        {
            return Err(ApiError::InvalidRequest(
                "resources.memoryMb must be 16 to 1048576".into(),
            ));
        }
        if let Some(p) = r.pids
            && !(8..=1 << 22).contains(&p)
        {
            return Err(ApiError::InvalidRequest(
                "resources.pids must be 8 to 4194304".into(),
            ));
        }
        if let Some(c) = r.cpus
            && !(c.is_finite() && (0.01..=1024.0).contains(&c))
        {
            return Err(ApiError::InvalidRequest(
                "resources.cpus must be 0.01 to 1024".into(),
            ));
        }
        Ok(ContainerOptions {
            network: self.network.unwrap_or(false),
            keep_alive: self.keep_alive.unwrap_or(false),
            warm: self.warm.unwrap_or(false),
            sleep_after_s: self
                .sleep_after
                .as_ref()
                .map(parse_sleep_after)
                .transpose()?,
            memory_mb: r.memory_mb,
            pids: r.pids,
            cpus: r.cpus,
        })
    }
}

/// All sandboxes of this server.
#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
    sandboxes: RwLock<HashMap<SandboxId, Arc<Sandbox>>>,
    /// Where workspaces come from.
    pub workspaces: Arc<Workspaces>,
    /// Shared volumes.
    pub volumes: Arc<Volumes>,
}

fn io_err(what: &str, e: std::io::Error) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context(what.to_owned()))
}

impl Registry {
    /// Opens the registry under `data_dir`, loading every sandbox persisted there.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the data dir cannot be created or read.
    pub fn open(
        data_dir: &Path,
        workspaces: Arc<Workspaces>,
        volumes: Arc<Volumes>,
    ) -> Result<Self, ApiError> {
        let root = data_dir.join("sandboxes");
        std::fs::create_dir_all(&root).map_err(|e| io_err("create data dir", e))?;
        let mut sandboxes = HashMap::new();
        // Upper layers named by any sandbox on disk, loaded or not: a sandbox that cannot load
        // today (a missing image, a bug) must not lose its files to the sweep below.
        let mut referenced: std::collections::HashSet<String> =
            volumes.uppers().into_iter().collect();
        let mut sweep = volumes.complete();
        for entry in std::fs::read_dir(&root).map_err(|e| io_err("read data dir", e))? {
            let entry = entry.map_err(|e| io_err("read data dir", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(id) = SandboxId::parse(&name) else {
                continue; // leftovers of an interrupted delete (".trash-*") and foreign files
            };
            let meta = match read_meta(&entry.path()) {
                Ok(meta) => meta,
                Err(e) => {
                    sweep = false;
                    tracing::warn!(sandbox = %name, error = %e, "skipping unreadable sandbox");
                    continue;
                }
            };
            referenced.extend(meta.layout.upper.clone());
            match load(
                &entry.path(),
                id.clone(),
                meta,
                &workspaces,
                &volumes,
                false,
            ) {
                Ok(sb) => {
                    sandboxes.insert(id, Arc::new(sb));
                }
                Err(e) => {
                    tracing::warn!(sandbox = %name, error = %e, "skipping unloadable sandbox")
                }
            }
        }
        tracing::info!(count = sandboxes.len(), "sandboxes loaded");
        referenced.extend(sandboxes.values().filter_map(|sb| sb.meta().layout.upper));
        if sweep {
            workspaces.sweep_uppers(&referenced);
        } else {
            tracing::warn!(
                "some sandbox or volume records are unreadable: unused upper layers are kept"
            );
        }
        Ok(Self {
            root,
            sandboxes: RwLock::new(sandboxes),
            workspaces,
            volumes,
        })
    }

    /// Gets a sandbox, creating it if it does not exist. Returns it and whether it was created.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when its folders cannot be made.
    pub async fn get_or_create(
        &self,
        id: SandboxId,
        options: CreateOptions,
        take_spare: impl FnOnce() -> Option<Spare>,
    ) -> Result<(Arc<Sandbox>, bool), ApiError> {
        if let Some(sb) = self.sandboxes.read().await.get(&id) {
            return Ok((sb.clone(), false));
        }
        let memory_limit_mb = options.memory_limit_mb.unwrap_or_else(default_memory_mb);
        let container = options.container()?;
        let volumes = options.volumes.unwrap_or_default();
        for v in &volumes {
            self.volumes.get(&v.name)?;
        }
        // Spares were started with the default memory cap and no volumes.
        let spare = (memory_limit_mb == SPARE_MEMORY_MB && volumes.is_empty())
            .then(take_spare)
            .flatten();
        let mut map = self.sandboxes.write().await;
        if let Some(sb) = map.get(&id) {
            return Ok((sb.clone(), false));
        }
        let dir = self.root.join(id.as_str());
        let mut meta = SandboxMeta {
            id: id.to_string(),
            created_at: crate::timestamp::now(),
            env: options.env.unwrap_or_default(),
            memory_limit_mb,
            layout: Layout::default(),
            volumes,
            container,
            ports: BTreeMap::new(),
        };
        let ws = self.workspaces.clone();
        let vols = self.volumes.clone();
        let sb = tokio::task::spawn_blocking(move || -> Result<Sandbox, ApiError> {
            std::fs::create_dir_all(&dir).map_err(|e| io_err("create sandbox dir", e))?;
            let spare = spare.and_then(|s| match adopt_slot(&ws, &s, &dir, id.as_str()) {
                Some(layout) => {
                    meta.layout = layout;
                    Some(s)
                }
                None => None,
            });
            std::fs::create_dir_all(dir.join("tmp")).map_err(|e| io_err("create tmp", e))?;
            write_meta(&dir, &meta)?;
            let adopted = spare.is_some();
            let sb = load(&dir, id, meta, &ws, &vols, adopted)?;
            if let Some(s) = spare {
                *sb.spares
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Spares {
                    python: Some(s.python),
                    js: Some(s.js),
                    since: Instant::now(),
                });
            }
            Ok(sb)
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
        let sb = Arc::new(sb);
        map.insert(sb.id.clone(), sb.clone());
        sync_meta_later(self.root.join(sb.id.as_str()));
        Ok((sb, true))
    }

    /// Creates sandboxes whose workspaces start as `layers` (a fork) with the given settings:
    /// all of them or, on any failure, none. They are made on a few threads at once (each is a
    /// handful of syscalls and a view insert).
    ///
    /// # Errors
    /// [`ApiError::SandboxExists`], or [`ApiError::Internal`] when one cannot be made.
    pub async fn create_from_layers(
        &self,
        ids: Vec<SandboxId>,
        env: BTreeMap<String, String>,
        memory_limit_mb: u64,
        layers: Vec<String>,
        volumes: Vec<VolumeMount>,
        container: ContainerOptions,
    ) -> Result<Vec<Arc<Sandbox>>, ApiError> {
        let mut map = self.sandboxes.write().await;
        if let Some(id) = ids.iter().find(|id| map.contains_key(*id)) {
            return Err(ApiError::SandboxExists(id.to_string()));
        }
        let created_at = crate::timestamp::now();
        let metas: Vec<(PathBuf, SandboxId, SandboxMeta)> = ids
            .into_iter()
            .map(|id| {
                let meta = SandboxMeta {
                    id: id.to_string(),
                    created_at: created_at.clone(),
                    env: env.clone(),
                    memory_limit_mb,
                    layout: Layout {
                        upper: None,
                        layers: layers.clone(),
                    },
                    volumes: volumes.clone(),
                    container: container.clone(),
                    ports: BTreeMap::new(),
                };
                (self.root.join(id.as_str()), id, meta)
            })
            .collect();
        let ws = self.workspaces.clone();
        let vols = self.volumes.clone();
        let made = tokio::task::spawn_blocking(move || -> Result<Vec<Sandbox>, ApiError> {
            let one = |(dir, id, meta): &(PathBuf, SandboxId, SandboxMeta)| {
                if dir.exists() {
                    return Err(ApiError::SandboxExists(id.to_string()));
                }
                std::fs::create_dir_all(dir.join("tmp")).map_err(|e| io_err("create tmp", e))?;
                write_meta(dir, meta)?;
                load(dir, id.clone(), meta.clone(), &ws, &vols, false)
            };
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
            let chunk = metas.len().div_ceil(threads).max(1);
            let results: Vec<Result<Sandbox, ApiError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = metas
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join().unwrap_or_else(|_| {
                            vec![Err(ApiError::Internal(anyhow::anyhow!(
                                "sandbox creation panicked"
                            )))]
                        })
                    })
                    .collect()
            });
            if results.iter().any(Result::is_err) {
                // All or nothing: undo the ones that were made.
                for ((dir, id, meta), r) in metas.iter().zip(&results) {
                    if r.is_ok() {
                        ws.detach(id.as_str(), &meta.layout);
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
                return Err(results
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or_else(|| ApiError::Internal(anyhow::anyhow!("fork failed"))));
            }
            Ok(results.into_iter().flatten().collect())
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
        let mut out = Vec::with_capacity(made.len());
        for sb in made {
            let sb = Arc::new(sb);
            map.insert(sb.id.clone(), sb.clone());
            // Off the request's path, as in get_or_create: a fork of 100 sandboxes would
            // otherwise wait for 300 fsyncs in a row.
            sync_meta_later(self.root.join(sb.id.as_str()));
            out.push(sb);
        }
        Ok(out)
    }

    /// Looks a sandbox up.
    ///
    /// # Errors
    /// [`ApiError::SandboxNotFound`].
    pub async fn get(&self, id: &SandboxId) -> Result<Arc<Sandbox>, ApiError> {
        self.sandboxes
            .read()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))
    }

    /// All sandboxes, sorted by id.
    pub async fn list(&self) -> Vec<Arc<Sandbox>> {
        let mut all: Vec<_> = self.sandboxes.read().await.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Destroys a sandbox: contexts, files, metadata, everything.
    ///
    /// # Errors
    /// [`ApiError::SandboxNotFound`], or [`ApiError::Internal`] when its files cannot be removed.
    pub async fn destroy(&self, id: &SandboxId) -> Result<(), ApiError> {
        let sb = self
            .sandboxes
            .write()
            .await
            .remove(id)
            .ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))?;
        sb.contexts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        sb.sessions.destroy_all();
        let (ws, layout, name) = (self.workspaces.clone(), sb.meta().layout, id.to_string());
        let dir = self.root.join(id.as_str());
        // Rename first so a crash mid-delete never leaves a half sandbox that loads again.
        let trash = self
            .root
            .join(format!(".trash-{}-{}", id, std::process::id()));
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            ws.detach(&name, &layout);
            std::fs::rename(&dir, &trash).map_err(|e| io_err("move sandbox to trash", e))?;
            std::fs::remove_dir_all(&trash).map_err(|e| io_err("remove sandbox", e))
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
    }
}

/// Moves a pool slot's folders (and view) into a new sandbox. `None` (and nothing moved that
/// matters) when it cannot: the caller then makes fresh folders and drops the spare.
fn adopt_slot(ws: &Workspaces, spare: &Spare, dir: &Path, id: &str) -> Option<Layout> {
    let slot = &spare.slot;
    let ok = match ws.mode() {
        FsMode::Mount => ws.adopt_slot(spare.n, id).is_ok(),
        FsMode::Extract => std::fs::rename(slot.join("workspace"), dir.join("workspace")).is_ok(),
    } && std::fs::rename(slot.join("tmp"), dir.join("tmp")).is_ok();
    let _ = std::fs::remove_dir_all(slot);
    if !ok {
        ws.detach(&format!(".slot-{}", spare.n), &spare.layout);
    }
    ok.then(|| spare.layout.clone())
}

/// Reads a sandbox's `meta.json`.
fn read_meta(dir: &Path) -> Result<SandboxMeta, ApiError> {
    let raw = std::fs::read(dir.join("meta.json")).map_err(|e| io_err("read meta.json", e))?;
    serde_json::from_slice(&raw)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("parse meta.json")))
}

/// Makes the live sandbox of folder `dir` described by `meta`, bringing its workspace up;
/// `adopted` says its view is already in place (taken from a pool slot).
fn load(
    dir: &Path,
    id: SandboxId,
    mut meta: SandboxMeta,
    ws: &Workspaces,
    volumes: &Volumes,
    adopted: bool,
) -> Result<Sandbox, ApiError> {
    if !adopted {
        let layout = ws
            .attach(id.as_str(), dir, &meta.layout)
            .map_err(ApiError::Internal)?;
        if layout != meta.layout {
            meta.layout = layout;
            write_meta(dir, &meta)?;
        }
    }
    let workspace_dir = ws.path(id.as_str(), dir);
    let workspace = Workspace::open(&workspace_dir)?;
    let volume_mounts = meta
        .volumes
        .iter()
        .filter_map(|v| match volumes.get(&v.name) {
            Ok(_) => Some(hybox_wasi_runtime::Mount {
                host: volumes.host_path(&v.name),
                guest: v.path.clone(),
                writable: !v.read_only,
            }),
            Err(_) => {
                tracing::warn!(sandbox = %id, volume = %v.name, "volume is gone; not mounted");
                None
            }
        })
        .collect();
    Ok(Sandbox {
        tools: Arc::new(tools::SandboxTools::new(id.as_str())),
        sessions: session::Sessions::load(dir),
        execs: Mutex::new(HashMap::new()),
        id,
        dir: dir.to_path_buf(),
        meta: Mutex::new(meta),
        workspace: Arc::new(workspace),
        workspace_dir,
        volume_mounts,
        contexts: Mutex::new(HashMap::new()),
        spares: Mutex::new(None),
        fs_lock: tokio::sync::Mutex::new(()),
    })
}

/// Writes `meta.json` atomically (temp file + rename). It is made durable by [`sync_meta`],
/// which creation runs just after answering: an fsync is a millisecond or more on the critical
/// path of a sandbox's first request, and a crash in that window loses only the new sandbox.
fn write_meta(dir: &Path, meta: &SandboxMeta) -> Result<(), ApiError> {
    use std::io::Write;
    let tmp = dir.join("meta.json.tmp");
    let bytes = serde_json::to_vec_pretty(meta).map_err(|e| ApiError::Internal(e.into()))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err("write meta.json", e))?;
    f.write_all(&bytes)
        .map_err(|e| io_err("write meta.json", e))?;
    std::fs::rename(&tmp, dir.join("meta.json")).map_err(|e| io_err("install meta.json", e))
}

/// [`sync_meta`] on a blocking thread, after the answer (see [`write_meta`]).
fn sync_meta_later(dir: PathBuf) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = sync_meta(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot sync sandbox metadata");
        }
    });
}

/// fsyncs a sandbox's metadata and the directory entries that name it.
fn sync_meta(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir.join("meta.json"))?.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    match dir.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}
