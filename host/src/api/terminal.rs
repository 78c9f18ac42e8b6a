//! `GET /v1/sandboxes/{id}/terminal`: a WebSocket to a PTY in the sandbox's container.
//!
//! Query: `cols`, `rows` (default 80x24), `session` (its cwd and environment; default
//! `default`), `shell` (default `/bin/bash`). Frames: binary (or text) frames from the client
//! are keyboard input; a text frame holding JSON `{"type":"resize","cols":C,"rows":R}` resizes
//! and `{"type":"input","data":"..."}` is input too. The server sends the terminal's output as
//! binary frames and, when the shell ends, `{"type":"exit","code":C,"signal":S}` then a close.
//! Closing the socket hangs the terminal up.

use ::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use hybox_container_fallback::agent::{Pty, PtyEvent, PtySpec};

use super::AppState;
use super::error::ApiError;
use super::http::{self, Body};
use crate::sandbox::SandboxId;

fn dim(q: Option<&str>, name: &str, default: u16) -> Result<u16, ApiError> {
    match http::query_param(q, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::InvalidRequest(format!("{name} must be 1-1000"))),
    }
}

pub(super) async fn terminal(
    state: &AppState,
    id: &SandboxId,
    mut req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .cloned()
        .filter(|_| is_ws)
    else {
        return Err(ApiError::InvalidRequest(
            "the terminal is a WebSocket: send Upgrade: websocket".into(),
        ));
    };
    let q = req.uri().query().map(str::to_owned);
    let cols = dim(q.as_deref(), "cols", 80)?;
    let rows = dim(q.as_deref(), "rows", 24)?;
    let shell = http::query_param(q.as_deref(), "shell").unwrap_or_else(|| "/bin/bash".into());
    if !shell.starts_with('/') || shell.contains('\0') {
        return Err(ApiError::InvalidRequest(
            "shell must be an absolute path".into(),
        ));
    }
    let session_id = http::query_param(q.as_deref(), "session");
    let (cwd, session_env) = super::processes::session_start(&sb, session_id.as_deref())?;
    let handle = state.containers.handle(&sb).await?;
    let env = super::processes::container_env(
        &handle.base_env,
        session_env,
        [("TERM".to_owned(), "xterm-256color".to_owned())],
    );
    let pty = handle
        .client
        .pty(PtySpec {
            argv: vec![shell, "-l".into()],
            env,
            cwd,
            cols,
            rows,
        })
        .await
        .map_err(super::processes::agent_err)?;
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let (containers, sid) = (state.containers.clone(), id.to_string());
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                relay(ws, pty, &containers, &sid).await;
            }
            Err(e) => tracing::debug!(sandbox = %sid, "terminal upgrade failed: {e}"),
        }
    });
    let mut resp = Response::new(http::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("accept header: {e}")))?,
    );
    Ok(resp)
}

/// Copies between the WebSocket and the PTY until either ends.
async fn relay<S>(
    mut ws: WebSocketStream<S>,
    mut pty: Pty,
    containers: &crate::backend::container::Containers,
    sid: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            msg = ws.next() => {
                containers.touch(sid);
                let input = match msg {
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(t.as_str()) {
                        Ok(v) if v["type"] == "resize" => {
                            let cols = v["cols"].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(80);
                            let rows = v["rows"].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(24);
                            if pty.resize(cols.clamp(1, 1000), rows.clamp(1, 1000)).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        Ok(v) if v["type"] == "input" => v["data"].as_str().unwrap_or("").as_bytes().to_vec(),
                        _ => t.as_bytes().to_vec(),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if pty.input(&input).await.is_err() {
                    break;
                }
            }
            ev = pty.next() => match ev {
                Ok(Some(PtyEvent::Output(b))) => {
                    if ws.send(Message::Binary(b.into())).await.is_err() {
                        break;
                    }
                }
                Ok(Some(PtyEvent::Exit { code, signal })) => {
                    let msg = json!({ "type": "exit", "code": code, "signal": signal }).to_string();
                    let _ = ws.send(Message::Text(msg.into())).await;
                    break;
                }
                Ok(None) | Err(_) => break,
            },
        }
    }
    let _ = ws.close(None).await;
}
