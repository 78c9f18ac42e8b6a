//! Sandboxes: the registry, their lifecycle and their persisted metadata.
//!
//! On disk (`<data-dir>/sandboxes/<id>/`): `meta.json` (written atomically), `workspace/` (the
//! tree both routes see as `/workspace`) and `tmp/` (the guests' `/tmp`). Metadata and files
//! survive a restart of the server; live interpreter contexts do not, and the API says so by
//! listing none.

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
pub use id::SandboxId;

use crate::api::error::ApiError;
use crate::backend::wasi::{SPARE_MEMORY_MB, Spare};
use crate::files::Workspace;
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
    /// Code contexts by id.
    pub contexts: Mutex<HashMap<String, Arc<CodeContext>>>,
    /// Tools its guests may call (one instance per sandbox).
    pub tools: Arc<dyn hybox_wasi_runtime::ToolHost>,
    /// Shell sessions.
    pub sessions: session::Sessions,
    /// Running commands by exec id, for `DELETE .../exec/{execId}`.
    pub execs: Mutex<HashMap<String, hybox_wasi_runtime::CancelToken>>,
    spares: Mutex<Option<Spares>>,
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
        self.dir.join("workspace")
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
}

/// All sandboxes of this server.
#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
    sandboxes: RwLock<HashMap<SandboxId, Arc<Sandbox>>>,
}

fn io_err(what: &str, e: std::io::Error) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context(what.to_owned()))
}

impl Registry {
    /// Opens the registry under `data_dir`, loading every sandbox persisted there.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the data dir cannot be created or read.
    pub fn open(data_dir: &Path) -> Result<Self, ApiError> {
        let root = data_dir.join("sandboxes");
        std::fs::create_dir_all(&root).map_err(|e| io_err("create data dir", e))?;
        let mut sandboxes = HashMap::new();
        for entry in std::fs::read_dir(&root).map_err(|e| io_err("read data dir", e))? {
            let entry = entry.map_err(|e| io_err("read data dir", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(id) = SandboxId::parse(&name) else {
                continue; // leftovers of an interrupted delete (".trash-*") and foreign files
            };
            match load(&entry.path(), id.clone()) {
                Ok(sb) => {
                    sandboxes.insert(id, Arc::new(sb));
                }
                Err(e) => {
                    tracing::warn!(sandbox = %name, error = %e, "skipping unreadable sandbox")
                }
            }
        }
        tracing::info!(count = sandboxes.len(), "sandboxes loaded");
        Ok(Self {
            root,
            sandboxes: RwLock::new(sandboxes),
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
        let spare = (memory_limit_mb == SPARE_MEMORY_MB)
            .then(take_spare)
            .flatten();
        let mut map = self.sandboxes.write().await;
        if let Some(sb) = map.get(&id) {
            return Ok((sb.clone(), false));
        }
        let dir = self.root.join(id.as_str());
        let meta = SandboxMeta {
            id: id.to_string(),
            created_at: crate::timestamp::now(),
            env: options.env.unwrap_or_default(),
            memory_limit_mb,
        };
        let sb = tokio::task::spawn_blocking(move || -> Result<Sandbox, ApiError> {
            std::fs::create_dir_all(&dir).map_err(|e| io_err("create sandbox dir", e))?;
            let spare = spare.and_then(|s| adopt_slot(&s.slot, &dir).then_some(s));
            std::fs::create_dir_all(dir.join("workspace"))
                .map_err(|e| io_err("create workspace", e))?;
            std::fs::create_dir_all(dir.join("tmp")).map_err(|e| io_err("create tmp", e))?;
            write_meta(&dir, &meta)?;
            let sb = load(&dir, id)?;
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
        let dir = self.root.join(sb.id.as_str());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = sync_meta(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot sync sandbox metadata");
            }
        });
        Ok((sb, true))
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
        let dir = self.root.join(id.as_str());
        // Rename first so a crash mid-delete never leaves a half sandbox that loads again.
        let trash = self
            .root
            .join(format!(".trash-{}-{}", id, std::process::id()));
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            std::fs::rename(&dir, &trash).map_err(|e| io_err("move sandbox to trash", e))?;
            std::fs::remove_dir_all(&trash).map_err(|e| io_err("remove sandbox", e))
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
    }
}

/// Moves a pool slot's folders into a new sandbox directory. False (and nothing moved that
/// matters) when it cannot: the caller then makes fresh folders and drops the spare.
fn adopt_slot(slot: &Path, dir: &Path) -> bool {
    let ok = std::fs::rename(slot.join("workspace"), dir.join("workspace")).is_ok()
        && std::fs::rename(slot.join("tmp"), dir.join("tmp")).is_ok();
    let _ = std::fs::remove_dir_all(slot);
    ok
}

fn load(dir: &Path, id: SandboxId) -> Result<Sandbox, ApiError> {
    let raw = std::fs::read(dir.join("meta.json")).map_err(|e| io_err("read meta.json", e))?;
    let meta: SandboxMeta = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("parse meta.json")))?;
    let workspace = Workspace::open(&dir.join("workspace"))?;
    Ok(Sandbox {
        tools: Arc::new(tools::SandboxTools::new(id.as_str())),
        sessions: session::Sessions::load(dir),
        execs: Mutex::new(HashMap::new()),
        id,
        dir: dir.to_path_buf(),
        meta: Mutex::new(meta),
        workspace: Arc::new(workspace),
        contexts: Mutex::new(HashMap::new()),
        spares: Mutex::new(None),
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

/// fsyncs a sandbox's metadata and the directory entries that name it.
fn sync_meta(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir.join("meta.json"))?.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    match dir.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}
