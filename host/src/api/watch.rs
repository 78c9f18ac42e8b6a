//! `GET /v1/sandboxes/{id}/watch?path=&recursive=&include=&exclude=&cursor=`: file changes as
//! Server-Sent Events.
//!
//! The stream opens with `watching` `{path, recursive, cursor}` once the watch is in place (so a
//! client can start its work after it), then one event per change, named by its type
//! (`create`, `modify`, `delete`, `rename`) with data `{type, path, oldPath?, isDirectory,
//! cursor}`. `cursor` replays what happened after a cursor from an earlier stream; when that is
//! not possible (server restarted, too old, workspace restored) the stream sends `reset`
//! `{reason, cursor}` and the client should rescan. A `heartbeat` every 15 s keeps proxies from
//! closing an idle stream. `include` and `exclude` are comma-separated glob lists
//! (`*.py,src/**`); giving both is an error.

use std::sync::Arc;

use ::http::{Request, Response};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::AppState;
use super::error::ApiError;
use super::http::{self, Body, SseEvent};
use crate::sandbox::SandboxId;
use crate::watch::{Filter, Numbered, WatchHub, kind_name};
use crate::workspaces::FsMode;
use hybox_fs_layer::events::FsEventKind;

const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

fn list(q: Option<&str>, name: &str) -> Vec<String> {
    http::query_param(q, name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) async fn watch(
    state: &Arc<AppState>,
    id: &SandboxId,
    req: &Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let ws = &state.registry.workspaces;
    if ws.mode() != FsMode::Mount {
        return Err(ApiError::Unsupported(format!(
            "file watching needs the copy-on-write workspace (FUSE); this server runs with plain directories: {}",
            ws.why_extract().unwrap_or("--fs-mode extract")
        )));
    }
    let sb = state.registry.get(id).await?;
    let q = req.uri().query();
    let path = http::query_param(q, "path").unwrap_or_else(|| "/workspace".into());
    let rel = sb.workspace.resolve(&path, "/workspace")?;
    let recursive = match http::query_param(q, "recursive").as_deref() {
        None | Some("true" | "1" | "") => true,
        Some("false" | "0") => false,
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "recursive must be true or false, not {other:?}"
            )));
        }
    };
    let (include, exclude) = (list(q, "include"), list(q, "exclude"));
    if !include.is_empty() && !exclude.is_empty() {
        return Err(ApiError::InvalidRequest(
            "give include or exclude, not both".into(),
        ));
    }
    let filter = Filter {
        dir: rel.as_str().to_owned(),
        recursive,
        include,
        exclude,
    };
    let cursor = http::query_param(q, "cursor");
    let hub = ws.hub.clone();
    let view = id.to_string();
    let sub = hub.subscribe(&view, cursor.as_deref());
    let (tx, rx) = mpsc::unbounded_channel::<SseEvent>();
    let _ = tx.send(SseEvent {
        event: "watching",
        data: json!({
            "path": rel.guest_path(),
            "recursive": recursive,
            // Where this stream starts: the client's cursor when events are replayed after it.
            "cursor": hub.cursor(sub.replay.first().map_or(sub.cursor, |n| n.seq - 1)),
        }),
    });
    if sub.reset {
        let _ = tx.send(reset(
            &hub,
            sub.cursor,
            "cursor unknown to this server run or too old",
        ));
    }
    tokio::spawn(pump(
        hub, view, filter, sub.replay, sub.cursor, sub.live, tx,
    ));
    Ok(http::sse(rx))
}

fn reset(hub: &WatchHub, seq: u64, reason: &str) -> SseEvent {
    SseEvent {
        event: "reset",
        data: json!({ "reason": reason, "cursor": hub.cursor(seq) }),
    }
}

/// Sends one logged event if it passes the filter. False when the client is gone.
fn send(
    hub: &WatchHub,
    filter: &Filter,
    n: &Numbered,
    tx: &mpsc::UnboundedSender<SseEvent>,
) -> bool {
    if n.event.path.is_empty() && n.event.is_dir {
        return tx.send(reset(hub, n.seq, "workspace restored")).is_ok();
    }
    // The file API writes through a temporary file renamed over the target (readers never see
    // half a file): its temporary is not the client's business, and the rename is the file
    // appearing or changing.
    let internal = |p: &str| {
        p.rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with(crate::files::TEMP_PREFIX))
    };
    if internal(&n.event.path) {
        return true;
    }
    let mut event = n.event.clone();
    if event.kind == FsEventKind::Rename && event.old_path.as_deref().is_some_and(internal) {
        event.kind = if event.replaced {
            FsEventKind::Modify
        } else {
            FsEventKind::Create
        };
        event.old_path = None;
    }
    let n = &Numbered { seq: n.seq, event };
    if !filter.matches(&n.event) {
        return true;
    }
    let guest = |p: &str| format!("/workspace/{p}");
    let mut data = json!({
        "type": kind_name(n.event.kind),
        "path": guest(&n.event.path),
        "isDirectory": n.event.is_dir,
        "cursor": hub.cursor(n.seq),
    });
    if let Some(old) = &n.event.old_path {
        data["oldPath"] = json!(guest(old));
    }
    tx.send(SseEvent {
        event: kind_name(n.event.kind),
        data,
    })
    .is_ok()
}

async fn pump(
    hub: Arc<WatchHub>,
    view: String,
    filter: Filter,
    replay: Vec<Numbered>,
    mut last: u64,
    mut live: broadcast::Receiver<Numbered>,
    tx: mpsc::UnboundedSender<SseEvent>,
) {
    for n in &replay {
        if !send(&hub, &filter, n, &tx) {
            return;
        }
        last = last.max(n.seq);
    }
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.tick().await;
    loop {
        tokio::select! {
            got = live.recv() => match got {
                Ok(n) => {
                    if n.seq <= last {
                        continue; // already replayed
                    }
                    last = n.seq;
                    if !send(&hub, &filter, &n, &tx) {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Catch up from the log; if it no longer holds what we missed, say so.
                    match hub.since(&view, last) {
                        Some(missed) => {
                            for n in &missed {
                                if !send(&hub, &filter, n, &tx) {
                                    return;
                                }
                                last = n.seq;
                            }
                        }
                        None => {
                            if tx.send(reset(&hub, last, "too many changes to keep up with")).is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(SseEvent { event: "end", data: json!({ "reason": "sandbox deleted" }) });
                    return;
                }
            },
            _ = beat.tick() => {
                if tx.send(SseEvent { event: "heartbeat", data: json!({}) }).is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}
