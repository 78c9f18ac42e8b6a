//! `exec`: a command line planned by the router and run on the wasm route in a session, with
//! its output returned or streamed, and cancellable by id.

use std::collections::BTreeMap;
use std::sync::Arc;

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use hybox_container_fallback::agent::ExecEvent;
use hybox_container_fallback::shell as cshell;
use hybox_wasi_runtime::shell::{Script, ShellState, run_script};
use hybox_wasi_runtime::{Event, EventSink, RunLimits, RunOutcome, Runtime, StopReason};

use super::AppState;
use super::code::{
    CancelOnDrop, check_env, event_json, guest_spec, limits, new_id, sandbox_cwd, stop_error,
};
use super::error::ApiError;
use super::http::{self, Body, SseEvent};
use crate::backend::Route;
use crate::backend::container::Containers;
use crate::router::{self, Decision, RuntimeChoice};
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

/// What runs a planned command.
enum Work {
    /// The wasm route, with its script.
    Wasi {
        runtime: Arc<Runtime>,
        script: Script,
    },
    /// The sandbox's container.
    Container {
        containers: Arc<Containers>,
        command: String,
        reason: String,
    },
}

impl Work {
    fn route(&self) -> Route {
        match self {
            Self::Wasi { .. } => Route::Wasi,
            Self::Container { .. } => Route::Container,
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Self::Wasi { .. } => None,
            Self::Container { reason, .. } => Some(reason),
        }
    }
}

/// Everything one exec needs once planned.
struct Planned {
    sb: Arc<Sandbox>,
    session: Arc<Session>,
    work: Work,
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

/// Waits for `fut` on behalf of a command that has not started yet: the command's deadline
/// (counted from `since`) and its cancellation end the wait, as `TIMEOUT` or `CANCELLED` with
/// `details()` (what it waited for).
async fn before_start<F: std::future::Future>(
    fut: F,
    limits: &RunLimits,
    since: std::time::Instant,
    details: impl Fn() -> Value,
) -> Result<F::Output, ApiError> {
    tokio::pin!(fut);
    loop {
        if let Ok(v) = tokio::time::timeout(std::time::Duration::from_millis(10), &mut fut).await {
            return Ok(v);
        }
        if limits.cancel.is_cancelled() {
            return Err(ApiError::Cancelled { details: details() });
        }
        if since.elapsed() >= limits.timeout {
            return Err(ApiError::Timeout {
                timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
                details: details(),
            });
        }
    }
}

/// Runs a planned command in its session: per-call cwd and env hold for this call only; `cd`,
/// `export` and `$?` persist in the session.
async fn run(p: Planned, sink: Option<EventSink>) -> Result<(RunOutcome, String), ApiError> {
    let _registered = register(&p);
    // Commands of a session take turns; the wait counts against this command's deadline and
    // ends when it is cancelled, so a queued command never outlives what it was given.
    let queued = std::time::Instant::now();
    let _turn = before_start(
        p.session.turn.lock(),
        &p.limits,
        queued,
        || json!({ "stdout": "", "stderr": "", "queuedMs": queued.elapsed().as_millis() as u64 }),
    )
    .await?;
    if p.session.is_destroyed() {
        return Err(ApiError::SessionDestroyed(p.session.id.clone()));
    }
    let saved = p
        .session
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
    let (outcome, mut st) = match p.work {
        Work::Wasi { runtime, script } => {
            let sb = p.sb.clone();
            let limits = p.limits.clone();
            tokio::task::spawn_blocking(move || -> Result<(RunOutcome, ShellState), ApiError> {
                let base = guest_spec(&sb, st.cwd.clone(), BTreeMap::new());
                let outcome = run_script(&runtime, &base, &script, &mut st, &limits, sink)?;
                Ok((outcome, st))
            })
            .await
            .map_err(|e| ApiError::Internal(e.into()))??
        }
        Work::Container {
            containers,
            command,
            ..
        } => run_container(containers, p.sb.clone(), &command, st, &p.limits, sink).await?,
    };
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
    // Most commands change nothing of the session: no write then (a rename is a large part of
    // a millisecond exec).
    if !p.session.is_destroyed() && st != saved {
        *p.session
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = st;
        let sb = p.sb.clone();
        tokio::task::spawn_blocking(move || sb.sessions.persist())
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    }
    let result = (outcome, cwd);
    if p.session.is_destroyed() && result.0.stopped == Some(StopReason::Cancelled) {
        return Err(ApiError::SessionDestroyed(p.session.id.clone()));
    }
    Ok(result)
}

/// Decodes `chunk` after the bytes `carry` kept from the previous one; an incomplete UTF-8
/// sequence at the end is kept for the next chunk (invalid bytes become U+FFFD).
fn utf8_chunk(carry: &mut Vec<u8>, chunk: &[u8]) -> String {
    carry.extend_from_slice(chunk);
    let keep = match std::str::from_utf8(carry) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => carry.len() - e.valid_up_to(),
        Err(_) => {
            // Invalid in the middle: maybe also incomplete at the end (at most 3 bytes).
            let tail = carry.len().saturating_sub(3);
            (tail..carry.len())
                .find(|&i| carry[i] >= 0xc0)
                .filter(|&i| {
                    std::str::from_utf8(&carry[i..]).is_err_and(|e| e.error_len().is_none())
                })
                .map_or(0, |i| carry.len() - i)
        }
    };
    let rest = carry.split_off(carry.len() - keep);
    let text = String::from_utf8_lossy(carry).into_owned();
    *carry = rest;
    text
}

/// stdout and stderr of an outcome, by index.
fn streams(o: &mut RunOutcome) -> [&mut Vec<String>; 2] {
    [&mut o.stdout, &mut o.stderr]
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The session state as the container's bash takes it.
fn to_container(st: &ShellState) -> cshell::SessionState {
    cshell::SessionState {
        cwd: st.cwd.clone(),
        vars: st.vars.clone(),
        exported: st.exported.clone(),
        last_status: st.last_status,
        functions: st.functions.clone(),
    }
}

/// Runs `command` in the sandbox's container as the session's shell would: the session's
/// state goes in, the state the command ends with comes back. The deadline, cancellation and
/// the output cap apply as on the wasm route (the command's process group is killed).
pub(super) async fn run_container(
    containers: Arc<Containers>,
    sb: Arc<Sandbox>,
    command: &str,
    st: ShellState,
    limits: &RunLimits,
    mut sink: Option<EventSink>,
) -> Result<(RunOutcome, ShellState), ApiError> {
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + limits.timeout;
    // The container may have to start (or its image be built) first: that counts against the
    // command's deadline and can be cancelled. The start runs on its own, so one given up on
    // here still completes and is kept for the next command.
    let starting = tokio::spawn(async move { containers.handle(&sb).await });
    let handle = before_start(
        starting,
        limits,
        started,
        || json!({ "stdout": "", "stderr": "", "waitingFor": "the container to start" }),
    )
    .await?
    .map_err(|e| ApiError::Internal(e.into()))??;
    let before = to_container(&st);
    let spec = cshell::exec_spec(
        handle.base_env.clone(),
        Some(cshell::tail(command, &before)),
    );
    let mut stream = handle
        .client
        .exec(spec)
        .await
        .map_err(|e| ApiError::ContainerNotReady(e.to_string()))?;
    // One task owns the stream (reads are not cancelled half-way); aborting it drops the
    // stream, which kills what is left of the command.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let ev = stream.next().await;
            let last = !matches!(ev, Ok(Some(ExecEvent::Stdout(_) | ExecEvent::Stderr(_))));
            if tx.send(ev).await.is_err() || last {
                break;
            }
        }
    }));
    let mut outcome = RunOutcome::default();
    let mut bytes = [0u64; 2];
    let mut report = None;
    // A character split between two chunks is decoded whole, with the second.
    let mut carry: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    loop {
        let next = tokio::select! {
            ev = rx.recv() => ev,
            () = tokio::time::sleep_until(deadline) => {
                outcome.stopped = Some(StopReason::Timeout);
                break;
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {
                if limits.cancel.is_cancelled() {
                    outcome.stopped = Some(StopReason::Cancelled);
                    break;
                }
                continue;
            }
        };
        let Some(next) = next else { break };
        // Output: index 0 is stdout, 1 stderr (the cap holds per stream, as on the wasm route).
        let (i, b) = match next.map_err(|e| ApiError::ContainerNotReady(e.to_string()))? {
            Some(ExecEvent::Stdout(b)) => (0, b),
            Some(ExecEvent::Stderr(b)) => (1, b),
            Some(ExecEvent::Exit {
                code,
                signal,
                state,
            }) => {
                outcome.exit_code = Some(code.unwrap_or_else(|| 128 + signal.unwrap_or(9)));
                report = cshell::parse_report(&state);
                break;
            }
            None => break,
        };
        bytes[i] += b.len() as u64;
        let text = utf8_chunk(&mut carry[i], &b);
        if let Some(sink) = sink.as_mut() {
            sink(if i == 0 {
                Event::Stdout(text.clone())
            } else {
                Event::Stderr(text.clone())
            });
        }
        streams(&mut outcome)[i].push(text);
        if bytes[i] > limits.output_limit {
            outcome.stopped = Some(StopReason::OutputLimit);
            break;
        }
    }
    drop(reader);
    for (i, rest) in carry.iter().enumerate() {
        if !rest.is_empty() {
            streams(&mut outcome)[i].push(String::from_utf8_lossy(rest).into_owned());
        }
    }
    outcome.duration = started.elapsed();
    let mut after = st;
    match report {
        Some(r) => {
            let next = cshell::apply_report(&before, &r, &handle.base_env);
            after.cwd = next.cwd;
            after.vars = next.vars;
            after.exported = next.exported;
            after.last_status = next.last_status;
            after.functions = next.functions;
        }
        None => {
            if let Some(code) = outcome.exit_code {
                after.last_status = code;
            }
        }
    }
    // The next command (of any session) finds its bash started.
    handle.top_up_spares();
    Ok((outcome, after))
}

fn result_json(
    outcome: &RunOutcome,
    command: &str,
    exec_id: &str,
    session: &str,
    cwd: &str,
    route: (Route, Option<&str>),
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
        "route": route.0,
        "routeReason": route.1,
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
    let session_id = r
        .session
        .clone()
        .unwrap_or_else(|| DEFAULT_SESSION.to_owned());
    let session = sb.sessions.get(&session_id, &sb.meta().env)?;
    // A relative cwd is relative to the session's, as `cd dir` would be. A directory the wasm
    // guests see must exist; one only the container has is checked there (by `cd`).
    let cwd = match r.cwd.as_deref() {
        Some(c) => {
            let joined = if c.starts_with('/') {
                c.to_owned()
            } else {
                let base = session
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .cwd
                    .clone();
                format!("{base}/{c}")
            };
            let norm = normalize(&joined)?;
            if router::wasm_sees(&norm) {
                Some(sandbox_cwd(&sb, Some(&norm)).await?)
            } else {
                Some(norm)
            }
        }
        None => None,
    };
    let run_cwd = cwd.clone().unwrap_or_else(|| {
        session
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cwd
            .clone()
    });
    let extra: Vec<String> = sb.volume_mounts.iter().map(|m| m.guest.clone()).collect();
    let work = plan_work(state, &r.command, r.runtime, &run_cwd, &extra).await?;
    let (route, reason) = (work.route(), work.reason().map(str::to_owned));
    let exec_id = new_id("exec");
    let planned = Planned {
        sb,
        session,
        work,
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
                data: json!({ "command": command, "route": route, "routeReason": reason, "execId": exec_id, "session": session_id }),
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
                        let mut data = result_json(
                            &outcome,
                            &command,
                            &exec_id,
                            &session_id,
                            &cwd,
                            (route, reason.as_deref()),
                        );
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
    let body = result_json(
        &outcome,
        &command,
        &exec_id,
        &session_id,
        &cwd,
        (route, reason.as_deref()),
    );
    if let Some(e) = stop_error(&outcome, &limits, body.clone()) {
        return Err(e);
    }
    Ok(http::json(StatusCode::OK, &body))
}

/// `path` without `.`, `..` and repeated slashes (absolute; `..` above `/` refused).
fn normalize(path: &str) -> Result<String, ApiError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ApiError::InvalidRequest(format!("cwd {path:?} escapes /")));
                }
            }
            p => parts.push(p),
        }
    }
    if path.contains('\0') {
        return Err(ApiError::InvalidRequest("cwd holds a NUL byte".into()));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Decides where `command` runs and gets what that route needs.
async fn plan_work(
    state: &AppState,
    command: &str,
    choice: RuntimeChoice,
    cwd: &str,
    extra: &[String],
) -> Result<Work, ApiError> {
    let containers = state.containers.available();
    // The wasm route's planner needs to know whether the toolbox is there; a command forced
    // into the container never loads the wasm route.
    let runtime = if choice == RuntimeChoice::Container {
        None
    } else {
        Some(state.wasi.runtime().await?)
    };
    let has_toolbox = runtime.as_ref().is_some_and(|r| r.has_toolbox());
    match router::route(command, choice, has_toolbox, cwd, extra, containers)? {
        Decision::Wasi(script) => Ok(Work::Wasi {
            runtime: runtime.ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("wasm route planned without a runtime"))
            })?,
            script,
        }),
        Decision::Container { reason } => Ok(Work::Container {
            containers: state.containers.clone(),
            command: command.to_owned(),
            reason,
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::utf8_chunk;

    #[test]
    fn characters_split_between_chunks_survive() {
        let bytes = "héllo €".as_bytes();
        let mut carry = Vec::new();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&utf8_chunk(&mut carry, std::slice::from_ref(b)));
        }
        assert_eq!(out, "héllo €");
        assert!(carry.is_empty());
        let mut carry = Vec::new();
        assert_eq!(utf8_chunk(&mut carry, b"a\xffb\xe2\x82"), "a\u{fffd}b");
        assert_eq!(utf8_chunk(&mut carry, b"\xac"), "€");
    }
}
