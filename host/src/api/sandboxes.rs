//! `/v1/sandboxes`: get-or-create, get, list, destroy.

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::http::{self, Body};
use crate::sandbox::{CreateOptions, Sandbox, SandboxId};

/// Below this CPython cannot start.
const MIN_MEMORY_MB: u64 = 64;

async fn view(state: &AppState, sb: &Sandbox) -> Value {
    let meta = sb.meta();
    let contexts = sb
        .contexts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    json!({
        "id": meta.id,
        "createdAt": meta.created_at,
        "env": meta.env,
        "memoryLimitMb": meta.memory_limit_mb,
        "contexts": contexts,
        "container": state.containers.status(sb.id.as_str()).await,
        "network": meta.container.network,
        "keepAlive": meta.container.keep_alive,
        "sleepAfter": meta.container.sleep_after_s,
        "resources": {
            "memoryMb": meta.container.memory_mb,
            "pids": meta.container.pids,
            "cpus": meta.container.cpus,
        },
        "ports": meta.ports.keys().collect::<Vec<_>>(),
        "layerCount": meta.layout.layers.len(),
        "volumes": meta.volumes,
    })
}

pub(super) async fn put(
    state: &AppState,
    id: SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let body = req.into_body();
    let options: CreateOptions = http::parse_json(&body)?;
    if let Some(env) = &options.env {
        super::code::check_env(env)?;
    }
    if let Some(vols) = &options.volumes {
        if vols.len() > 16 {
            return Err(ApiError::InvalidRequest("at most 16 volumes".into()));
        }
        let mut paths = std::collections::HashSet::new();
        for v in vols {
            crate::volumes::check_name(&v.name)?;
            crate::volumes::check_mount_path(&v.path)?;
            if !paths.insert(v.path.trim_end_matches('/')) {
                return Err(ApiError::InvalidRequest(format!(
                    "two volumes at {}",
                    v.path
                )));
            }
        }
    }
    if let Some(mb) = options.memory_limit_mb {
        let max = hybox_wasi_runtime::EngineOptions::default().max_memory >> 20;
        if !(MIN_MEMORY_MB..=max).contains(&mb) {
            return Err(ApiError::InvalidRequest(format!(
                "memoryLimitMb must be between {MIN_MEMORY_MB} and {max}"
            )));
        }
    }
    if options.network == Some(true) && state.containers.rootless() {
        return Err(ApiError::Unsupported(
            "network: true needs hybox to run as root (a veth pair and NAT in the host's network namespace); this server runs rootless, where containers have loopback only".into(),
        ));
    }
    let (sb, created) = state
        .registry
        .get_or_create(id, options, || state.wasi.take_spare())
        .await?;
    if created && (sb.meta().container.keep_alive || sb.meta().container.warm) {
        warm_up(state, &sb);
    }
    let mut v = view(state, &sb).await;
    v["created"] = json!(created);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(http::json(status, &v))
}

pub(super) async fn get(state: &AppState, id: &SandboxId) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    Ok(http::json(StatusCode::OK, &view(state, &sb).await))
}

/// Starts the sandbox's container in the background (`keepAlive`/`warm`).
pub(super) fn warm_up(state: &AppState, sb: &std::sync::Arc<Sandbox>) {
    if state.containers.available().is_err() {
        return;
    }
    let (containers, sb) = (state.containers.clone(), sb.clone());
    tokio::spawn(async move {
        if let Err(e) = containers.handle(&sb).await {
            tracing::warn!(sandbox = %sb.id, "starting the warm container: {e}");
        }
    });
}

pub(super) async fn list(state: &AppState) -> Result<Response<Body>, ApiError> {
    let mut all: Vec<Value> = Vec::new();
    for sb in state.registry.list().await {
        all.push(view(state, &sb).await);
    }
    Ok(http::json(
        StatusCode::OK,
        &json!({ "count": all.len(), "sandboxes": all }),
    ))
}

pub(super) async fn delete(state: &AppState, id: &SandboxId) -> Result<Response<Body>, ApiError> {
    state.registry.get(id).await?;
    // The container goes first: it holds the workspace and tmp folders mounted.
    state.containers.destroy(id.as_str()).await?;
    state.registry.destroy(id).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "id": id, "deleted": true }),
    ))
}

pub(super) async fn volume_put(state: &AppState, name: &str) -> Result<Response<Body>, ApiError> {
    let vols = state.registry.volumes.clone();
    let name = name.to_owned();
    let (v, created) = tokio::task::spawn_blocking(move || vols.get_or_create(&name))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(http::json(
        status,
        &json!({ "name": v.name, "createdAt": v.created_at, "created": created }),
    ))
}

pub(super) fn volume_get(state: &AppState, name: &str) -> Result<Response<Body>, ApiError> {
    crate::volumes::check_name(name)?;
    let v = state.registry.volumes.get(name)?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "name": v.name, "createdAt": v.created_at }),
    ))
}

pub(super) fn volume_list(state: &AppState) -> Response<Body> {
    let all: Vec<Value> = state
        .registry
        .volumes
        .list()
        .iter()
        .map(|v| json!({ "name": v.name, "createdAt": v.created_at }))
        .collect();
    http::json(
        StatusCode::OK,
        &json!({ "count": all.len(), "volumes": all }),
    )
}

pub(super) async fn volume_delete(
    state: &AppState,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    crate::volumes::check_name(name)?;
    state.registry.volumes.get(name)?;
    for sb in state.registry.list().await {
        if sb.meta().volumes.iter().any(|v| v.name == name) {
            return Err(ApiError::VolumeInUse {
                name: name.to_owned(),
                sandbox: sb.id.to_string(),
            });
        }
    }
    let vols = state.registry.volumes.clone();
    let n = name.to_owned();
    tokio::task::spawn_blocking(move || vols.remove(&n))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "name": name, "deleted": true }),
    ))
}
