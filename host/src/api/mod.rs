//! The HTTP API under `/v1`: routing, authentication, one span per request.

mod code;
pub mod error;
mod exec;
mod files;
pub mod http;
mod sandboxes;
mod sessions;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use hyper::body::Incoming;
use serde_json::json;
use tracing::Instrument;

use self::http::Body;
use crate::backend::wasi::WasiBackend;
use crate::sandbox::{Registry, SandboxId};
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
    next_request: AtomicU64,
}

impl AppState {
    /// Bundles the server's state.
    #[must_use]
    pub fn new(registry: Registry, wasi: WasiBackend, token: Option<String>) -> Self {
        Self {
            registry,
            wasi,
            token,
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
        let (parts, body) = req.into_parts();
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
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    if diff == 0 {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
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
                    "container": "unavailable",
                }),
            )),
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
                (["files", "raw"], &Method::GET) => files::read_raw(&state, &id, req).await,
                (["files", "raw"], &Method::PUT) => files::write_raw(&state, &id, req).await,
                (["files", op], &Method::POST) => files::op(&state, &id, op, req).await,
                (["exec" | "run" | "contexts" | "files" | "sessions", ..], _) => not_allowed(),
                _ => Err(ApiError::RouteNotFound(path.clone())),
            }
        }
        _ => Err(ApiError::RouteNotFound(path.clone())),
    }
}
