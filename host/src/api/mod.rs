//! The HTTP API under `/v1`: routing, authentication, one span per request.

mod code;
pub mod error;
mod exec;
mod files;
mod git;
pub mod http;
mod ports;
mod processes;
mod sandboxes;
mod sessions;
mod snapshots;
mod terminal;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use hyper::body::Incoming;
use serde_json::json;
use tracing::Instrument;

use self::http::Body;
use crate::backend::container::Containers;
use crate::backend::wasi::WasiBackend;
use crate::sandbox::{Registry, SandboxId};
use crate::snapshots::Snapshots;
use error::ApiError;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Sandboxes.
    pub registry: Registry,
    /// The wasm route.
    pub wasi: WasiBackend,
    /// Bearer token required on every request when set.
    pub token: Option<String>,
    /// Snapshot records.
    pub snapshots: Snapshots,
    /// The container route.
    pub containers: Arc<Containers>,
    /// How preview URLs are made and recognised.
    pub preview: Preview,
    next_request: AtomicU64,
}

/// Preview URL settings.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The domain of host-style preview URLs: `{port}-{sandbox}-{token}.{domain}`.
    pub domain: String,
    /// Scheme the URLs carry (`http`).
    pub scheme: String,
    /// The port in URLs (none for 80/443).
    pub port: Option<u16>,
}

impl AppState {
    /// Bundles the server's state.
    #[must_use]
    pub fn new(
        registry: Registry,
        wasi: WasiBackend,
        snapshots: Snapshots,
        token: Option<String>,
        containers: Arc<Containers>,
        preview: Preview,
    ) -> Self {
        Self {
            registry,
            wasi,
            token,
            snapshots,
            containers,
            preview,
            next_request: AtomicU64::new(1),
        }
    }
}

/// Serves one request. Never fails: errors become `{code, message, details}` responses.
pub async fn serve(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let id = state.next_request.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id, method = %req.method(), path = %req.uri().path());
    async move {
        let started = std::time::Instant::now();
        // The body is read before anything else, even for a request that fails: a response
        // sent over an unread body makes HTTP/1.1 close the connection, and a client reusing it
        // would see its next request fail.
        // (An unauthenticated request is answered without reading its body: nobody without the
        // token gets the server to buffer 64 MiB.)
        // Preview traffic (by host name or `/preview/...`) is forwarded as it streams, with
        // its own token check.
        match crate::proxy::target(&state.preview.domain, req.headers(), req.uri()) {
            Ok(Some(t)) => return crate::proxy::serve(&state, t, req).await,
            Ok(None) => {}
            Err(e) => return http::error(&e),
        }
        let (parts, body) = req.into_parts();
        if parts.method == Method::POST
            && parts.uri.path().trim_end_matches('/') == "/v1/snapshots/import"
        {
            // An image can be gigabytes: it is streamed to disk, not read up front.
            let resp = match authorize(&state, &parts.headers) {
                Ok(()) => import_upload(&state, &parts, body).await,
                Err(e) => Err(e),
            };
            return resp.unwrap_or_else(|e| {
                let mut resp = http::error(&e);
                resp.headers_mut().insert(
                    ::http::header::CONNECTION,
                    ::http::HeaderValue::from_static("close"),
                );
                resp
            });
        }
        let read = match authorize(&state, &parts.headers) {
            Ok(()) => http::read_body(body).await,
            Err(e) => Err(e),
        };
        let resp = match read {
            Ok(bytes) => match route(state.clone(), Request::from_parts(parts, bytes)).await {
                Ok(resp) => resp,
                Err(e) => http::error(&e),
            },
            Err(e) => {
                let mut resp = http::error(&e);
                resp.headers_mut().insert(
                    ::http::header::CONNECTION,
                    ::http::HeaderValue::from_static("close"),
                );
                resp
            }
        };
        tracing::debug!(
            status = resp.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "done"
        );
        resp
    }
    .instrument(span)
    .await
}

/// Largest snapshot image accepted by import.
const MAX_IMPORT: u64 = 64 << 30;

async fn import_upload(
    state: &Arc<AppState>,
    parts: &::http::request::Parts,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let name = http::query_param(parts.uri.query(), "name");
    snapshots::check_name(name.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix(".import-")
        .tempfile_in(state.registry.workspaces.upper_path(""))
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("create upload file")))?;
    let (std_file, path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    http::body_to_file(body, &mut file, MAX_IMPORT).await?;
    drop(file);
    snapshots::import(state, path, name).await
}

/// Starts the containers of sandboxes created with `keepAlive` or `warm` (at server start).
pub async fn start_kept_alive(state: &Arc<AppState>) {
    for sb in state.registry.list().await {
        let c = &sb.meta().container;
        if c.keep_alive || c.warm {
            sandboxes::warm_up(state, &sb);
        }
    }
}

/// Removes images nobody references (at start and after deletes).
pub async fn collect_images(state: &Arc<AppState>) {
    snapshots::collect_images(state).await;
}

/// Removes expired snapshots (the sweeper calls this).
pub async fn expire_snapshots(state: &Arc<AppState>) {
    snapshots::expire_snapshots(state).await;
}

fn authorize(state: &AppState, headers: &::http::HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let given = headers
        .get(::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant-time comparison: the token is the only thing between the network and the API.
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Whether `a == b`, in a time that depends on their lengths only (secrets: tokens).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

async fn route(state: Arc<AppState>, req: Request<Bytes>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let not_allowed = || Err(ApiError::MethodNotAllowed(method.to_string()));
    match segments.as_slice() {
        ["v1", "health"] => match method {
            Method::GET => Ok(http::json(
                StatusCode::OK,
                &json!({
                    "status": "ok",
                    "version": env!("CARGO_PKG_VERSION"),
                    "wasi": state.wasi.state(),
                    "container": if state.containers.available().is_ok() { "available" } else { "unavailable" },
                    "containers": state.containers.health(),
                    "workspaces": {
                        "restoreMode": state.registry.workspaces.mode().name(),
                        "watch": state.registry.workspaces.mode() == crate::workspaces::FsMode::Mount,
                        "reason": state.registry.workspaces.why_extract(),
                    },
                }),
            )),
            _ => not_allowed(),
        },
        ["v1", "snapshots"] => match method {
            Method::GET => Ok(snapshots::list(&state, None)),
            _ => not_allowed(),
        },
        ["v1", "snapshots", snap] => match method {
            Method::GET => snapshots::get(&state, snap, None),
            Method::DELETE => snapshots::delete(&state, snap, None).await,
            _ => not_allowed(),
        },
        ["v1", "snapshots", snap, "export"] => match method {
            Method::GET => snapshots::export(&state, snap).await,
            _ => not_allowed(),
        },
        ["v1", "volumes"] => match method {
            Method::GET => Ok(sandboxes::volume_list(&state)),
            _ => not_allowed(),
        },
        ["v1", "volumes", name] => match method {
            Method::PUT => sandboxes::volume_put(&state, name).await,
            Method::GET => sandboxes::volume_get(&state, name),
            Method::DELETE => sandboxes::volume_delete(&state, name).await,
            _ => not_allowed(),
        },
        ["v1", "sandboxes"] => match method {
            Method::GET => sandboxes::list(&state).await,
            _ => not_allowed(),
        },
        ["v1", "sandboxes", id, rest @ ..] => {
            let id = SandboxId::parse(id)?;
            match (rest, &method) {
                ([], &Method::PUT) => sandboxes::put(&state, id, req).await,
                ([], &Method::GET) => sandboxes::get(&state, &id).await,
                ([], &Method::DELETE) => sandboxes::delete(&state, &id).await,
                ([], _) => not_allowed(),
                (["exec"], &Method::POST) => exec::exec(&state, &id, req).await,
                (["exec", exec_id], &Method::DELETE) => exec::cancel(&state, &id, exec_id).await,
                (["sessions"], &Method::POST) => sessions::create(&state, &id, req).await,
                (["sessions"], &Method::GET) => sessions::list(&state, &id).await,
                (["sessions", sid], &Method::GET) => sessions::get(&state, &id, sid).await,
                (["sessions", sid], &Method::DELETE) => sessions::delete(&state, &id, sid).await,
                (["sessions", sid, "env"], &Method::POST | &Method::PUT) => {
                    sessions::set_env(&state, &id, sid, req).await
                }
                (["run"], &Method::POST) => code::run_default(&state, &id, req).await,
                (["contexts"], &Method::POST) => code::create_context(&state, &id, req).await,
                (["contexts"], &Method::GET) => code::list_contexts(&state, &id).await,
                (["contexts", ctx], &Method::GET) => code::get_context(&state, &id, ctx).await,
                (["contexts", ctx], &Method::DELETE) => {
                    code::delete_context(&state, &id, ctx).await
                }
                (["contexts", ctx, "run"], &Method::POST) => {
                    code::run_context(&state, &id, ctx, req).await
                }
                (["snapshots"], &Method::POST) => snapshots::create(&state, &id, req).await,
                (["snapshots"], &Method::GET) => Ok(snapshots::list(&state, Some(&id))),
                (["snapshots", snap], &Method::GET) => snapshots::get(&state, snap, Some(&id)),
                (["snapshots", snap], &Method::DELETE) => {
                    snapshots::delete(&state, snap, Some(&id)).await
                }
                (["snapshots", snap, "restore"], &Method::POST) => {
                    snapshots::restore(&state, &id, snap, req).await
                }
                (["fork"], &Method::POST) => snapshots::fork(&state, &id, req).await,
                (["processes"], &Method::POST) => processes::start(&state, &id, req).await,
                (["processes"], &Method::GET) => processes::list(&state, &id).await,
                (["processes"], &Method::DELETE) => processes::kill_all(&state, &id, &req).await,
                (["processes", pid], &Method::GET) => processes::get(&state, &id, pid).await,
                (["processes", pid], &Method::DELETE) => {
                    processes::kill(&state, &id, pid, &req).await
                }
                (["processes", pid, "logs"], &Method::GET) => {
                    processes::logs(&state, &id, pid, &req).await
                }
                (
                    [
                        "processes",
                        pid,
                        what @ ("waitForPort" | "waitForLog" | "waitForExit"),
                    ],
                    &Method::POST,
                ) => processes::wait(&state, &id, pid, what, req).await,
                (["ports"], &Method::POST) => ports::expose(&state, &id, req).await,
                (["ports"], &Method::GET) => ports::list(&state, &id).await,
                (["ports", port], &Method::GET) => ports::get(&state, &id, port).await,
                (["ports", port], &Method::DELETE) => ports::unexpose(&state, &id, port).await,
                (["ports", port, "validate"], &Method::GET) => {
                    ports::validate(&state, &id, port, &req).await
                }
                (["terminal"], &Method::GET) => terminal::terminal(&state, &id, req).await,
                (["git", "checkout"], &Method::POST) => git::checkout(&state, &id, req).await,
                (["watch"], &Method::GET) => watch::watch(&state, &id, &req).await,
                (["files", "raw"], &Method::GET) => files::read_raw(&state, &id, req).await,
                (["files", "raw"], &Method::PUT) => files::write_raw(&state, &id, req).await,
                (["files", op], &Method::POST) => files::op(&state, &id, op, req).await,
                (
                    [
                        "exec" | "run" | "contexts" | "files" | "sessions" | "snapshots" | "fork"
                        | "watch" | "processes" | "ports" | "terminal" | "git",
                        ..,
                    ],
                    _,
                ) => not_allowed(),
                _ => Err(ApiError::RouteNotFound(path.clone())),
            }
        }
        _ => Err(ApiError::RouteNotFound(path.clone())),
    }
}
