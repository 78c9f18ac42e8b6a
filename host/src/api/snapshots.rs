//! Snapshots (createBackup / restoreBackup), fork, export and import.
//!
//! - `POST /v1/sandboxes/{id}/snapshots` `{dir?, name?, ttl?}` → the snapshot
//! - `GET /v1/sandboxes/{id}/snapshots`, `GET /v1/snapshots` → `{count, snapshots}`
//! - `GET|DELETE /v1/snapshots/{snap}` (also under a sandbox)
//! - `POST /v1/sandboxes/{id}/snapshots/{snap}/restore` `{dir?}` → `{restoreMode, ...}`
//! - `POST /v1/sandboxes/{id}/fork` `{count?, ids?}` → `{sandboxes}`
//! - `GET /v1/snapshots/{snap}/export` → the snapshot as one `.sqfs` file
//! - `POST /v1/snapshots/import?name=` with the `.sqfs` as body → the snapshot

use std::sync::Arc;
use std::time::Instant;

use ::http::{Request, Response, StatusCode, header};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::http::{self, Body, SseEvent};
use crate::files::RelPath;
use crate::sandbox::{Sandbox, SandboxId, random_hex};
use crate::snapshots::{self, Snapshot};

/// Most sandboxes one fork call makes.
const MAX_FORKS: usize = 256;
/// Longest client-given name.
const MAX_NAME: usize = 200;
/// Longest TTL: ten years.
const MAX_TTL: u64 = 10 * 365 * 86_400;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// Seconds until the sweeper removes it.
    #[serde(default)]
    ttl: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RestoreBody {
    #[serde(default)]
    dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ForkBody {
    #[serde(default)]
    count: Option<usize>,
    #[serde(default)]
    ids: Option<Vec<String>>,
}

fn view(s: &Snapshot) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("expiresUnix");
        o.insert("layerCount".into(), json!(s.layers.len()));
    }
    v
}

/// Checks a client-given snapshot name.
///
/// # Errors
/// [`ApiError::InvalidRequest`] past [`MAX_NAME`] bytes.
pub(super) fn check_name(name: Option<&str>) -> Result<(), ApiError> {
    if name.is_some_and(|n| n.len() > MAX_NAME) {
        return Err(ApiError::InvalidRequest(format!(
            "name is longer than {MAX_NAME} bytes"
        )));
    }
    Ok(())
}

/// Writes a snapshot's record durably (off the async threads).
async fn record(state: &Arc<AppState>, snap: &Snapshot) -> Result<(), ApiError> {
    let st = state.clone();
    let s = snap.clone();
    tokio::task::spawn_blocking(move || st.snapshots.insert(s))
        .await
        .map_err(blocking_err)?
}

fn blocking_err(e: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(e.into())
}

/// A guest directory (`/workspace` or below) resolved in a sandbox's workspace. `None` for the
/// workspace root.
fn resolve_dir(sb: &Sandbox, dir: Option<&str>) -> Result<Option<RelPath>, ApiError> {
    let rel = sb
        .workspace
        .resolve(dir.unwrap_or("/workspace"), "/workspace")?;
    Ok((!rel.is_root()).then_some(rel))
}

pub(super) async fn create(
    state: &Arc<AppState>,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let body: CreateBody = http::parse_json(req.body())?;
    if body.ttl.is_some_and(|t| t == 0 || t > MAX_TTL) {
        return Err(ApiError::InvalidRequest(format!(
            "ttl must be between 1 and {MAX_TTL} seconds"
        )));
    }
    check_name(body.name.as_deref())?;
    let sb = state.registry.get(id).await?;
    let rel = resolve_dir(&sb, body.dir.as_deref())?;
    if http::wants_sse(req.headers()) {
        // `progress` {files, bytes} while the image is written, then `complete` {snapshot}
        // or `error`. (Writing an image is not cancellable: a client that goes away leaves
        // it to finish and be recorded.)
        let state = state.clone();
        return Ok(http::stream_run(
            hybox_wasi_runtime::CancelToken::new(),
            move |tx| async move {
                let progress = move |t: hybox_fs_layer::image::TreeStats| {
                    let _ = tx.send(SseEvent {
                        event: "progress",
                        data: json!({ "files": t.files, "dirs": t.dirs, "bytes": t.bytes }),
                    });
                };
                match create_snapshot(&state, &sb, rel, body, Arc::new(progress)).await {
                    Ok(v) => SseEvent {
                        event: "complete",
                        data: v,
                    },
                    Err(e) => SseEvent {
                        event: "error",
                        data: e.body(),
                    },
                }
            },
        ));
    }
    let v = create_snapshot(state, &sb, rel, body, Arc::new(|_| {})).await?;
    Ok(http::json(StatusCode::CREATED, &v))
}

type ProgressFn = Arc<dyn Fn(hybox_fs_layer::image::TreeStats) + Send + Sync>;

async fn create_snapshot(
    state: &Arc<AppState>,
    sb: &Arc<Sandbox>,
    rel: Option<RelPath>,
    body: CreateBody,
    progress: ProgressFn,
) -> Result<Value, ApiError> {
    let id = sb.id.clone();
    let dir = rel
        .as_ref()
        .map_or_else(|| "/workspace".to_owned(), RelPath::guest_path);
    let started = Instant::now();
    let _serial = sb.fs_lock.lock().await;
    let _gc = state.registry.workspaces.gc.read().await;
    let ws = state.registry.workspaces.clone();
    let sb2 = sb.clone();
    let (layers, stats, size) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let fd = match &rel {
            Some(r) => Some(sb2.workspace.open_real_dir(r, false)?),
            None => None,
        };
        let sub = fd.as_ref().map(fd_path);
        ws.snapshot(
            sb2.id.as_str(),
            sb2.dir(),
            &sb2.meta().layout,
            sub.as_deref(),
            &|t| progress(t),
        )
        .map_err(internal_or_fs)
    })
    .await
    .map_err(blocking_err)??;
    let (expires_at, expires_unix) = body.ttl.map(snapshots::expiry).unzip();
    let snap = Snapshot {
        id: format!("snap-{}", random_hex(16)),
        sandbox_id: Some(id.to_string()),
        name: body.name,
        dir,
        layers,
        size,
        files: stats.files,
        dirs: stats.dirs,
        bytes: stats.bytes,
        created_at: crate::timestamp::now(),
        expires_at,
        expires_unix,
    };
    record(state, &snap).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(snapshot = %snap.id, sandbox = %id, layers = snap.layers.len(), ms, "snapshot created");
    let mut v = view(&snap);
    v["ms"] = json!(ms);
    Ok(v)
}

/// `/proc/self/fd/N` for an open directory: a host path that names exactly that directory.
fn fd_path(fd: &std::os::fd::OwnedFd) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn internal_or_fs(e: anyhow::Error) -> ApiError {
    match e.downcast::<hybox_fs_layer::FsError>() {
        Ok(fs) => fs.into(),
        Err(e) => ApiError::Internal(e),
    }
}

pub(super) fn list(state: &AppState, sandbox: Option<&SandboxId>) -> Response<Body> {
    let all: Vec<Value> = state
        .snapshots
        .list(sandbox.map(SandboxId::as_str))
        .iter()
        .map(view)
        .collect();
    http::json(
        StatusCode::OK,
        &json!({ "count": all.len(), "snapshots": all }),
    )
}

fn checked(snap: &str) -> Result<&str, ApiError> {
    if snapshots::valid_id(snap) {
        Ok(snap)
    } else {
        Err(ApiError::SnapshotNotFound(snap.chars().take(80).collect()))
    }
}

/// A snapshot, checked to be `sandbox`'s when the route names one.
fn owned(state: &AppState, snap: &str, sandbox: Option<&SandboxId>) -> Result<Snapshot, ApiError> {
    let s = state.snapshots.get(checked(snap)?)?;
    if sandbox.is_some_and(|id| s.sandbox_id.as_deref() != Some(id.as_str())) {
        return Err(ApiError::SnapshotNotFound(snap.to_owned()));
    }
    Ok(s)
}

pub(super) fn get(
    state: &AppState,
    snap: &str,
    sandbox: Option<&SandboxId>,
) -> Result<Response<Body>, ApiError> {
    let s = owned(state, snap, sandbox)?;
    Ok(http::json(StatusCode::OK, &view(&s)))
}

pub(super) async fn delete(
    state: &Arc<AppState>,
    snap: &str,
    sandbox: Option<&SandboxId>,
) -> Result<Response<Body>, ApiError> {
    let snap = owned(state, snap, sandbox)?.id;
    let st = state.clone();
    let s = tokio::task::spawn_blocking(move || st.snapshots.remove(&snap))
        .await
        .map_err(blocking_err)??;
    collect_images(state).await;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "id": s.id, "deleted": true }),
    ))
}

pub(super) async fn restore(
    state: &Arc<AppState>,
    id: &SandboxId,
    snap: &str,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let body: RestoreBody = http::parse_json(req.body())?;
    let snap = state.snapshots.get(checked(snap)?)?;
    let sb = state.registry.get(id).await?;
    let rel = resolve_dir(&sb, Some(body.dir.as_deref().unwrap_or(&snap.dir)))?;
    let shown = rel.clone();
    let started = Instant::now();
    let _serial = sb.fs_lock.lock().await;
    let _gc = state.registry.workspaces.gc.read().await;
    let ws = state.registry.workspaces.clone();
    let sb2 = sb.clone();
    let layers = snap.layers.clone();
    let mode = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let fd = match &rel {
            Some(r) => Some(sb2.workspace.open_real_dir(r, true)?),
            None => None,
        };
        let sub = fd.as_ref().map(fd_path);
        let (mode, layout) = ws.restore(sb2.id.as_str(), sb2.dir(), &layers, sub.as_deref())?;
        if let Some(layout) = layout {
            sb2.set_layout(layout)?;
            ws.hub.restored(sb2.id.as_str());
        }
        Ok(mode)
    })
    .await
    .map_err(blocking_err)??;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(snapshot = %snap.id, sandbox = %id, mode = mode.name(), ms, "snapshot restored");
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "id": snap.id,
            "sandboxId": id,
            "dir": shown.as_ref().map_or_else(|| "/workspace".to_owned(), RelPath::guest_path),
            "restoreMode": mode.name(),
            "ms": ms,
        }),
    ))
}

pub(super) async fn fork(
    state: &Arc<AppState>,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let body: ForkBody = http::parse_json(req.body())?;
    let n = body.ids.as_ref().map_or(body.count.unwrap_or(1), Vec::len);
    if n == 0 || n > MAX_FORKS {
        return Err(ApiError::InvalidRequest(format!(
            "count must be between 1 and {MAX_FORKS}"
        )));
    }
    let ids: Vec<SandboxId> = match (body.ids, body.count) {
        (Some(ids), count) => {
            if count.is_some_and(|c| c != ids.len()) {
                return Err(ApiError::InvalidRequest(
                    "count and the number of ids differ".into(),
                ));
            }
            ids.iter()
                .map(|i| SandboxId::parse(i))
                .collect::<Result<_, _>>()?
        }
        (None, count) => (0..count.unwrap_or(1))
            .map(|_| SandboxId::parse(&format!("{}-{}", truncate_id(id.as_str()), random_hex(8))))
            .collect::<Result<_, _>>()?,
    };
    let mut seen = std::collections::HashSet::new();
    if !ids.iter().all(|i| seen.insert(i.clone())) {
        return Err(ApiError::InvalidRequest("ids repeat".into()));
    }
    let sb = state.registry.get(id).await?;
    for new in &ids {
        if state.registry.get(new).await.is_ok() {
            return Err(ApiError::SandboxExists(new.to_string()));
        }
    }
    let started = Instant::now();
    let _serial = sb.fs_lock.lock().await;
    let _gc = state.registry.workspaces.gc.read().await;
    let ws = state.registry.workspaces.clone();
    let sb2 = sb.clone();
    let (layers, _, _) = tokio::task::spawn_blocking(move || {
        ws.snapshot(
            sb2.id.as_str(),
            sb2.dir(),
            &sb2.meta().layout,
            None,
            &|_| {},
        )
        .map_err(internal_or_fs)
    })
    .await
    .map_err(blocking_err)??;
    let meta = sb.meta();
    let made = state
        .registry
        .create_from_layers(
            ids,
            meta.env.clone(),
            meta.memory_limit_mb,
            layers.clone(),
            meta.volumes.clone(),
            meta.container.clone(),
        )
        .await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(sandbox = %id, forks = made.len(), ms, "forked");
    let list: Vec<Value> = made
        .iter()
        .map(|c| json!({ "id": c.id, "createdAt": c.meta().created_at }))
        .collect();
    Ok(http::json(
        StatusCode::CREATED,
        &json!({
            "sandboxId": id,
            "count": list.len(),
            "sandboxes": list,
            "layerCount": layers.len(),
            "restoreMode": state.registry.workspaces.mode().name(),
            "ms": ms,
        }),
    ))
}

/// Room for `-<8 hex>` in a 63-character id.
fn truncate_id(id: &str) -> &str {
    let end = id.len().min(54);
    id[..end].trim_end_matches('-')
}

pub(super) async fn export(state: &Arc<AppState>, snap: &str) -> Result<Response<Body>, ApiError> {
    let mut s = state.snapshots.get(checked(snap)?)?;
    let _gc = state.registry.workspaces.gc.read().await;
    if s.layers.len() > 1 {
        // One file is what moves between hosts: flatten the stack once and keep it flat.
        let ws = state.registry.workspaces.clone();
        let layers = s.layers.clone();
        let img = tokio::task::spawn_blocking(move || {
            ws.compact(&layers, &|_| {}).map_err(internal_or_fs)
        })
        .await
        .map_err(blocking_err)??;
        s.layers = vec![img.id];
        s.size = img.size;
        record(state, &s).await?;
    }
    let path = state.registry.workspaces.store.path(&s.layers[0]);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("open image")))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .len();
    let mut resp = http::file_stream(file);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        ::http::HeaderValue::from_static("application/vnd.squashfs"),
    );
    h.insert(header::CONTENT_LENGTH, ::http::HeaderValue::from(len));
    if let Ok(v) = ::http::HeaderValue::from_str(&format!("attachment; filename=\"{}.sqfs\"", s.id))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = ::http::HeaderValue::from_str(&s.layers[0]) {
        h.insert("x-hybox-sha256", v);
    }
    Ok(resp)
}

/// Imports a `.sqfs` already streamed to `file` (see [`super::serve`], which checked `name`
/// with [`check_name`] before the upload): validates it fully and records a snapshot of it.
pub(super) async fn import(
    state: &Arc<AppState>,
    file: tempfile::TempPath,
    name: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let _gc = state.registry.workspaces.gc.read().await;
    let ws = state.registry.workspaces.clone();
    let img = tokio::task::spawn_blocking(move || {
        let r = ws.store.import(&file);
        drop(file);
        r
    })
    .await
    .map_err(blocking_err)??;
    let snap = Snapshot {
        id: format!("snap-{}", random_hex(16)),
        sandbox_id: None,
        name,
        dir: "/workspace".into(),
        layers: vec![img.id.clone()],
        size: img.size,
        files: img.stats.files,
        dirs: img.stats.dirs,
        bytes: img.stats.bytes,
        created_at: crate::timestamp::now(),
        expires_at: None,
        expires_unix: None,
    };
    record(state, &snap).await?;
    Ok(http::json(StatusCode::CREATED, &view(&snap)))
}

/// Removes images no snapshot and no sandbox names.
pub async fn collect_images(state: &Arc<AppState>) {
    let _gc = state.registry.workspaces.gc.write().await;
    let mut keep = state.snapshots.referenced_images();
    for sb in state.registry.list().await {
        keep.extend(sb.meta().layout.layers);
    }
    let ws = state.registry.workspaces.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let mut removed = 0;
        for id in ws.store.list().unwrap_or_default() {
            if !keep.contains(&id) && ws.store.remove(&id).is_ok() {
                removed += 1;
            }
        }
        removed
    })
    .await
    .unwrap_or(0);
    if removed > 0 {
        tracing::info!(removed, "unreferenced snapshot images removed");
    }
}

/// Removes expired snapshots (and then their images).
pub async fn expire_snapshots(state: &Arc<AppState>) {
    let expired = state.snapshots.expired(std::time::SystemTime::now());
    if expired.is_empty() {
        return;
    }
    let st = state.clone();
    let n = tokio::task::spawn_blocking(move || {
        expired
            .iter()
            .filter(|id| st.snapshots.remove(id).is_ok())
            .count()
    })
    .await
    .unwrap_or(0);
    tracing::info!(expired = n, "expired snapshots removed");
    collect_images(state).await;
}
