//! `exec`: a command line planned by the router and run on the wasm route in a session, with
//! its output returned or streamed, and cancellable by id.

use std::collections::BTreeMap;
use std::sync::Arc;

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use hybox_wasi_runtime::shell::{Script, run_script};
use hybox_wasi_runtime::{Event, EventSink, RunLimits, RunOutcome, Runtime, StopReason};

use super::AppState;
use super::code::{
    CancelOnDrop, check_env, event_json, guest_spec, limits, new_id, sandbox_cwd, stop_error,
};
use super::error::ApiError;
use super::http::{self, Body, SseEvent};
use crate::backend::Route;
use crate::router::{self, RuntimeChoice};
use crate::sandbox::session::{DEFAULT_SESSION, Session};
use crate::sandbox::{Sandbox, SandboxId};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExecReq {
    command: String,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "timeout")]
    timeout_ms: Option<u64>,
    #[serde(default)]
    runtime: RuntimeChoice,
    #[serde(default, alias = "sessionId")]
    session: Option<String>,
}

/// Everything one exec needs once planned.
struct Planned {
    sb: Arc<Sandbox>,
    session: Arc<Session>,
    runtime: Arc<Runtime>,
    script: Script,
    cwd: Option<String>,
    env: BTreeMap<String, String>,
    limits: RunLimits,
    exec_id: String,
}

/// Unregisters a running exec when it ends, however it ends.
struct Registered {
    sb: Arc<Sandbox>,
    session: Arc<Session>,
    id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sb
            .execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
        self.session
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

fn register(p: &Planned) -> Registered {
    p.sb.execs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(p.exec_id.clone(), p.limits.cancel.clone());
    p.session
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(p.exec_id.clone(), p.limits.cancel.clone());
    Registered {
        sb: p.sb.clone(),
        session: p.session.clone(),
        id: p.exec_id.clone(),
    }
}

/// Runs a planned command in its session: per-call cwd and env hold for this call only; `cd`,
/// `export` and `$?` persist in the session.
async fn run(p: Planned, sink: Option<EventSink>) -> Result<(RunOutcome, String), ApiError> {
    let _registered = register(&p);
    // Commands of a session take turns; the wait counts against this command's deadline and
    // ends when it is cancelled, so a queued command never outlives what it was given.
    let queued = std::time::Instant::now();
    let _turn = loop {
        if let Ok(turn) =
            tokio::time::timeout(std::time::Duration::from_millis(10), p.session.turn.lock()).await
        {
            break turn;
        }
        let waited =
            json!({ "stdout": "", "stderr": "", "queuedMs": queued.elapsed().as_millis() as u64 });
        if p.limits.cancel.is_cancelled() {
            return Err(ApiError::Cancelled { details: waited });
        }
        if queued.elapsed() >= p.limits.timeout {
            return Err(ApiError::Timeout {
                timeout_ms: u64::try_from(p.limits.timeout.as_millis()).unwrap_or(u64::MAX),
                details: waited,
            });
        }
    };
    if p.session.is_destroyed() {
        return Err(ApiError::SessionDestroyed(p.session.id.clone()));
    }
    let session = p.session.clone();
    let sb = p.sb.clone();
    let limits = p.limits.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(RunOutcome, String), ApiError> {
        let saved = session
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut st = saved.clone();
        if let Some(cwd) = &p.cwd {
            st.cwd.clone_from(cwd);
        }
        for (k, v) in &p.env {
            st.vars.insert(k.clone(), v.clone());
            st.exported.insert(k.clone());
        }
        let base = guest_spec(&sb, st.cwd.clone(), BTreeMap::new());
        let outcome = run_script(&p.runtime, &base, &p.script, &mut st, &limits, sink)?;
        // The call's own env and cwd do not stay in the session, unless the command changed them.
        for (k, v) in &p.env {
            if st.vars.get(k) == Some(v) {
                match saved.vars.get(k) {
                    Some(old) => {
                        st.vars.insert(k.clone(), old.clone());
                    }
                    None => {
                        st.vars.remove(k);
                    }
                }
                if !saved.exported.contains(k) {
                    st.exported.remove(k);
                }
            }
        }
        if p.cwd.as_ref() == Some(&st.cwd) {
            st.cwd.clone_from(&saved.cwd);
        }
        let cwd = st.cwd.clone();
        // Most commands change nothing of the session: no write then (a rename is a large
        // part of a millisecond exec).
        if !session.is_destroyed() && st != saved {
            *session
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = st;
            sb.sessions.persist();
        }
        Ok((outcome, cwd))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    if p.session.is_destroyed() && result.0.stopped == Some(StopReason::Cancelled) {
        return Err(ApiError::SessionDestroyed(p.session.id.clone()));
    }
    Ok(result)
}

fn result_json(
    outcome: &RunOutcome,
    command: &str,
    exec_id: &str,
    session: &str,
    cwd: &str,
) -> Value {
    let ms = outcome.duration.as_secs_f64() * 1e3;
    let code = outcome.exit_code.unwrap_or(1);
    json!({
        "success": code == 0,
        "exitCode": code,
        "stdout": outcome.stdout.concat(),
        "stderr": outcome.stderr.concat(),
        "durationMs": ms,
        "duration": ms,
        "route": Route::Wasi,
        "command": command,
        "execId": exec_id,
        "session": session,
        "cwd": cwd,
    })
}

pub(super) async fn exec(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let stream = http::wants_sse(req.headers());
    let body = req.into_body();
    let r: ExecReq = http::parse_json(&body)?;
    let limits = limits(r.timeout_ms)?;
    if let Some(env) = &r.env {
        check_env(env)?;
    }
    let runtime = state.wasi.runtime().await?;
    let script = router::route(&r.command, r.runtime, runtime.has_toolbox())?;
    let session_id = r
        .session
        .clone()
        .unwrap_or_else(|| DEFAULT_SESSION.to_owned());
    let session = sb.sessions.get(&session_id, &sb.meta().env)?;
    // A relative cwd is relative to the session's, as `cd dir` would be.
    let cwd = match r.cwd.as_deref() {
        Some(c) if !c.starts_with('/') => {
            let base = session
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .cwd
                .clone();
            Some(sandbox_cwd(&sb, Some(&format!("{base}/{c}"))).await?)
        }
        Some(c) => Some(sandbox_cwd(&sb, Some(c)).await?),
        None => None,
    };
    let exec_id = new_id("exec");
    let planned = Planned {
        sb,
        session,
        runtime,
        script,
        cwd,
        env: r.env.unwrap_or_default(),
        limits: limits.clone(),
        exec_id: exec_id.clone(),
    };
    let command = r.command;
    if stream {
        let cancel = limits.cancel.clone();
        return Ok(http::stream_run(cancel, move |events| async move {
            let _ = events.send(SseEvent {
                event: "start",
                data: json!({ "command": command, "route": Route::Wasi, "execId": exec_id, "session": session_id }),
            });
            let sink: EventSink = Box::new(move |e| {
                let ev = match e {
                    Event::Stdout(t) => SseEvent {
                        event: "stdout",
                        data: json!({ "data": t }),
                    },
                    Event::Stderr(t) => SseEvent {
                        event: "stderr",
                        data: json!({ "data": t }),
                    },
                    other => event_json(other),
                };
                let _ = events.send(ev);
            });
            match run(planned, Some(sink)).await {
                Ok((outcome, cwd)) => match stop_error(&outcome, &limits, Value::Null) {
                    Some(e) => SseEvent {
                        event: "error",
                        data: e.body(),
                    },
                    None => {
                        let mut data = result_json(&outcome, &command, &exec_id, &session_id, &cwd);
                        if let Some(o) = data.as_object_mut() {
                            o.remove("stdout");
                            o.remove("stderr");
                        }
                        SseEvent {
                            event: "complete",
                            data,
                        }
                    }
                },
                Err(e) => SseEvent {
                    event: "error",
                    data: e.body(),
                },
            }
        }));
    }
    let mut guard = CancelOnDrop(Some(limits.cancel.clone()));
    let (outcome, cwd) = run(planned, None).await?;
    guard.0 = None;
    let body = result_json(&outcome, &command, &exec_id, &session_id, &cwd);
    if let Some(e) = stop_error(&outcome, &limits, body.clone()) {
        return Err(e);
    }
    Ok(http::json(StatusCode::OK, &body))
}

/// `DELETE /v1/sandboxes/{id}/exec/{execId}`: cancels a running command.
pub(super) async fn cancel(
    state: &AppState,
    id: &SandboxId,
    exec_id: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let token = sb
        .execs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(exec_id)
        .cloned()
        .ok_or_else(|| ApiError::ExecNotFound(exec_id.to_owned()))?;
    token.cancel();
    Ok(http::json(
        StatusCode::OK,
        &json!({ "execId": exec_id, "cancelled": true }),
    ))
}
