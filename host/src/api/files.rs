//! `/v1/sandboxes/{id}/files/...`: file operations confined to the workspace.
//!
//! JSON operations are `POST .../files/{write,read,mkdir,delete,rename,move,list,exists,stat}`;
//! raw bytes go through `GET`/`PUT .../files/raw?path=`. Paths are `/workspace/...` or relative
//! to `/workspace`; anything else is refused with `PATH_OUTSIDE_WORKSPACE` or `INVALID_PATH`.

use std::sync::Arc;

use ::http::{HeaderValue, Request, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;

use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::http::{self, Body};
use crate::files::{Entry, Workspace};
use crate::sandbox::SandboxId;

/// Reads are capped so one request cannot pull gigabytes into memory.
const MAX_READ: u64 = 64 << 20;
/// Listings are capped for the same reason.
const MAX_LIST: usize = 100_000;
const CWD: &str = "/workspace";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WriteReq {
    path: String,
    content: String,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PathReq {
    path: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    recursive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RenameReq {
    #[serde(alias = "sourcePath", alias = "from")]
    old_path: String,
    #[serde(alias = "destinationPath", alias = "to")]
    new_path: String,
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "name": e.name,
        "path": e.path,
        "type": e.kind,
        "size": e.size,
        "mode": format!("{:o}", e.mode),
        "modifiedAt": e.modified.map(crate::timestamp::rfc3339),
    })
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    ws: Arc<Workspace>,
    f: impl FnOnce(&Workspace) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&ws))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
}

fn encoding_is_base64(encoding: Option<&str>) -> Result<bool, ApiError> {
    match encoding.unwrap_or("utf-8") {
        "utf-8" | "utf8" | "text" => Ok(false),
        "base64" => Ok(true),
        other => Err(ApiError::InvalidRequest(format!(
            "unknown encoding {other:?} (utf-8, base64)"
        ))),
    }
}

pub(super) async fn op(
    state: &AppState,
    id: &SandboxId,
    op: &str,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let ws = sb.workspace.clone();
    let body = req.into_body();
    let ok = |v: Value| Ok(http::json(StatusCode::OK, &v));
    match op {
        "write" => {
            let r: WriteReq = http::parse_json(&body)?;
            let data = if encoding_is_base64(r.encoding.as_deref())? {
                B64.decode(r.content.as_bytes())
                    .map_err(|e| ApiError::InvalidRequest(format!("content is not base64: {e}")))?
            } else {
                r.content.into_bytes()
            };
            let size = data.len();
            let path = blocking(ws, move |ws| {
                let p = ws.resolve(&r.path, CWD)?;
                ws.write(&p, &data, true)?;
                Ok(p.guest_path())
            })
            .await?;
            ok(json!({ "path": path, "size": size, "success": true }))
        }
        "read" => {
            let r: PathReq = http::parse_json(&body)?;
            let b64 = encoding_is_base64(r.encoding.as_deref())?;
            let (path, data) = blocking(ws, move |ws| {
                let p = ws.resolve(&r.path, CWD)?;
                Ok((p.guest_path(), ws.read(&p, MAX_READ)?))
            })
            .await?;
            let (content, encoding) = if b64 {
                (B64.encode(&data.bytes), "base64")
            } else {
                match String::from_utf8(data.bytes) {
                    Ok(s) => (s, "utf-8"),
                    // Binary content asked for as text: send base64 and say so, never mangle.
                    Err(e) => (B64.encode(e.as_bytes()), "base64"),
                }
            };
            ok(json!({
                "path": path,
                "content": content,
                "encoding": encoding,
                "size": data.size,
                "mimeType": data.mime,
                "modifiedAt": data.modified.map(crate::timestamp::rfc3339),
                "success": true,
            }))
        }
        "mkdir" => {
            let r: PathReq = http::parse_json(&body)?;
            let path = blocking(ws, move |ws| {
                let p = ws.resolve(&r.path, CWD)?;
                ws.mkdir(&p, r.recursive)?;
                Ok(p.guest_path())
            })
            .await?;
            ok(json!({ "path": path, "success": true }))
        }
        "delete" => {
            let r: PathReq = http::parse_json(&body)?;
            let path = blocking(ws, move |ws| {
                let p = ws.resolve(&r.path, CWD)?;
                ws.delete(&p, r.recursive)?;
                Ok(p.guest_path())
            })
            .await?;
            ok(json!({ "path": path, "success": true }))
        }
        "rename" | "move" => {
            let r: RenameReq = http::parse_json(&body)?;
            let is_move = op == "move";
            let (from, to) = blocking(ws, move |ws| {
                let from = ws.resolve(&r.old_path, CWD)?;
                let to = ws.resolve(&r.new_path, CWD)?;
                let landed = if is_move {
                    ws.move_path(&from, &to)?
                } else {
                    ws.rename(&from, &to)?;
                    to
                };
                Ok((from.guest_path(), landed.guest_path()))
            })
            .await?;
            ok(json!({ "from": from, "to": to, "success": true }))
        }
        "list" => {
            let r: PathReq = http::parse_json(&body)?;
            let (path, entries) = blocking(ws, move |ws| {
                let p = ws.resolve(&r.path, CWD)?;
                Ok((p.guest_path(), ws.list(&p, r.recursive, MAX_LIST)?))
            })
            .await?;
            let files: Vec<Value> = entries.iter().map(entry_json).collect();
            ok(json!({ "path": path, "count": files.len(), "files": files }))
        }
        "exists" => {
            let r: PathReq = http::parse_json(&body)?;
            let exists = blocking(ws, move |ws| {
                let p = ws.resolve(&r.path, CWD)?;
                Ok(ws.exists(&p)?)
            })
            .await?;
            ok(json!({ "exists": exists }))
        }
        "stat" => {
            let r: PathReq = http::parse_json(&body)?;
            let entry = blocking(ws, move |ws| {
                let p = ws.resolve(&r.path, CWD)?;
                Ok(ws.stat(&p)?)
            })
            .await?;
            ok(entry_json(&entry))
        }
        other => Err(ApiError::RouteNotFound(format!("files/{other}"))),
    }
}

fn path_query(req: &Request<Bytes>) -> Result<String, ApiError> {
    http::query_param(req.uri().query(), "path")
        .ok_or_else(|| ApiError::InvalidRequest("query parameter path is required".into()))
}

pub(super) async fn read_raw(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let path = path_query(&req)?;
    let data = blocking(sb.workspace.clone(), move |ws| {
        let p = ws.resolve(&path, CWD)?;
        Ok(ws.read(&p, MAX_READ)?)
    })
    .await?;
    let mut resp = Response::new(http::full(Bytes::from(data.bytes)));
    if let Ok(v) = HeaderValue::from_str(&data.mime) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

pub(super) async fn write_raw(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let path = path_query(&req)?;
    let body = req.into_body();
    let size = body.len();
    let path = blocking(sb.workspace.clone(), move |ws| {
        let p = ws.resolve(&path, CWD)?;
        ws.write(&p, &body, true)?;
        Ok(p.guest_path())
    })
    .await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "path": path, "size": size, "success": true }),
    ))
}
