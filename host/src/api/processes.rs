//! `/v1/sandboxes/{id}/processes`: background processes in the sandbox's container, their
//! logs (kept on disk by the agent, bounded), and server-side waits for a port, a log line or
//! the exit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use hybox_container_fallback::agent::{
    self, AgentClient, AgentError, LogEvent, LogStream, Logs, ProcInfo, ProcSpec, ProcStatus,
};

use super::AppState;
use super::code::check_env;
use super::error::ApiError;
use super::http::{self, Body, SseEvent};
use crate::sandbox::session::DEFAULT_SESSION;
use crate::sandbox::{Sandbox, SandboxId};

/// Longest server-side wait.
const MAX_WAIT_MS: u64 = 15 * 60 * 1000;
/// Default server-side wait.
const DEFAULT_WAIT_MS: u64 = 60 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StartReq {
    command: String,
    #[serde(default, alias = "id")]
    process_id: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "sessionId")]
    session: Option<String>,
}

fn ms_to_rfc3339(ms: u64) -> String {
    crate::timestamp::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

fn status_name(s: ProcStatus) -> &'static str {
    match s {
        ProcStatus::Running => "running",
        ProcStatus::Completed => "completed",
        ProcStatus::Failed => "failed",
        ProcStatus::Killed => "killed",
        ProcStatus::Lost => "lost",
    }
}

/// The API view of a process (the reference product's `ProcessInfo` fields).
pub(super) fn info_json(p: &ProcInfo) -> Value {
    json!({
        "id": p.id,
        "pid": p.pid,
        "command": p.command,
        "cwd": p.cwd,
        "status": status_name(p.status),
        "exitCode": p.exit_code,
        "signal": p.signal,
        "startedAt": ms_to_rfc3339(p.started_at_ms),
        "endedAt": p.ended_at_ms.map(ms_to_rfc3339),
    })
}

/// Maps an agent failure to the API's error.
pub(super) fn agent_err(e: AgentError) -> ApiError {
    match e {
        AgentError::NotFound(id) => ApiError::ProcessNotFound(id),
        AgentError::Exists(id) => ApiError::ProcessExists(id),
        AgentError::Refused(why) => ApiError::InvalidRequest(why),
        AgentError::Unreachable(why) => ApiError::ContainerNotReady(why),
        other => ApiError::ContainerNotReady(other.to_string()),
    }
}

fn check_process_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "processId {id:?}: 1-64 of [A-Za-z0-9_.-], not starting with '.'"
        )))
    }
}

/// Parses a signal name or number (`SIGTERM`, `TERM`, `15`).
fn parse_signal(s: Option<&str>) -> Result<i32, ApiError> {
    let Some(s) = s else { return Ok(libc::SIGTERM) };
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        other => other.parse().map_err(|_| {
            ApiError::InvalidRequest(format!("unknown signal {s:?} (e.g. SIGTERM, SIGKILL, 9)"))
        })?,
    };
    if (1..=64).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::InvalidRequest(format!("signal {n} out of range")))
    }
}

/// A new process id when none is given.
fn new_process_id() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("proc-{:x}", n & 0xffff_ffff_ffff)
}

pub(super) async fn start(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let r: StartReq = http::parse_json(req.body())?;
    if r.command.trim().is_empty() {
        return Err(ApiError::InvalidRequest("command is empty".into()));
    }
    if let Some(env) = &r.env {
        check_env(env)?;
    }
    let pid = r.process_id.clone().unwrap_or_else(new_process_id);
    check_process_id(&pid)?;
    let (cwd, session_env) = session_start(&sb, r.session.as_deref())?;
    let cwd = match r.cwd {
        Some(c) if c.starts_with('/') => c,
        Some(c) => format!("{}/{c}", cwd.trim_end_matches('/')),
        None => cwd,
    };
    let handle = state.containers.handle(&sb).await?;
    let env = container_env(&handle.base_env, session_env, r.env.unwrap_or_default());
    let info = handle
        .client
        .start_process(ProcSpec {
            id: pid,
            argv: vec!["/bin/bash".into(), "-c".into(), r.command.clone()],
            command: r.command,
            env,
            cwd,
        })
        .await
        .map_err(agent_err)?;
    Ok(http::json(StatusCode::CREATED, &info_json(&info)))
}

/// Where a program started from a session (a process, the terminal, a git checkout) begins:
/// the session's working directory and exported environment. It does not change the session.
///
/// # Errors
/// [`ApiError::SessionNotFound`] and the like, from the session store.
pub(super) fn session_start(
    sb: &Sandbox,
    session: Option<&str>,
) -> Result<(String, Vec<(String, String)>), ApiError> {
    let session = sb
        .sessions
        .get(session.unwrap_or(DEFAULT_SESSION), &sb.meta().env)?;
    let st = session
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok((st.cwd.clone(), st.environment()))
}

/// A container program's whole environment: the image's, the session's over it, then `extra`
/// over both.
pub(super) fn container_env(
    base: &[(String, String)],
    session: Vec<(String, String)>,
    extra: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut all: BTreeMap<String, String> = base.iter().cloned().collect();
    all.extend(session);
    all.extend(extra);
    all.into_iter().collect()
}

/// The logs the agent kept for `pid`, read from its state dir (the container is stopped).
async fn kept_logs(state: &AppState, sb: &Sandbox, pid: &str) -> Result<Logs, ApiError> {
    let dir = state.containers.state_dir(sb.id.as_str());
    let p = pid.to_owned();
    tokio::task::spawn_blocking(move || agent::read_logs(&dir, &p))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(agent_err)
}

/// The agent of a running container, or `None` when it is stopped (then records come from
/// its state dir).
async fn running(state: &AppState, sb: &Sandbox) -> Option<AgentClient> {
    let c = state.containers.running(sb.id.as_str()).await;
    if c.is_some() {
        state.containers.touch(sb.id.as_str());
    }
    c
}

async fn records(state: &AppState, sb: &Sandbox) -> Result<Vec<ProcInfo>, ApiError> {
    match running(state, sb).await {
        Some(c) => c.list_processes().await.map_err(agent_err),
        None => {
            let dir = state.containers.state_dir(sb.id.as_str());
            tokio::task::spawn_blocking(move || agent::read_records(&dir))
                .await
                .map_err(|e| ApiError::Internal(e.into()))?
                .map_err(agent_err)
        }
    }
}

async fn one(state: &AppState, sb: &Sandbox, pid: &str) -> Result<ProcInfo, ApiError> {
    check_process_id(pid)?;
    match running(state, sb).await {
        Some(c) => c.get_process(pid).await.map_err(agent_err),
        None => records(state, sb)
            .await?
            .into_iter()
            .find(|p| p.id == pid)
            .ok_or_else(|| ApiError::ProcessNotFound(pid.to_owned())),
    }
}

pub(super) async fn list(state: &AppState, id: &SandboxId) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let all: Vec<Value> = records(state, &sb).await?.iter().map(info_json).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({ "count": all.len(), "processes": all }),
    ))
}

pub(super) async fn get(
    state: &AppState,
    id: &SandboxId,
    pid: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let p = one(state, &sb, pid).await?;
    Ok(http::json(StatusCode::OK, &info_json(&p)))
}

pub(super) async fn kill(
    state: &AppState,
    id: &SandboxId,
    pid: &str,
    req: &Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    check_process_id(pid)?;
    let signal = parse_signal(http::query_param(req.uri().query(), "signal").as_deref())?;
    let info = match running(state, &sb).await {
        Some(c) => c.kill_process(pid, signal).await.map_err(agent_err)?,
        // A stopped container runs nothing: the record is what there is.
        None => one(state, &sb, pid).await?,
    };
    Ok(http::json(StatusCode::OK, &info_json(&info)))
}

pub(super) async fn kill_all(
    state: &AppState,
    id: &SandboxId,
    req: &Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let signal = parse_signal(http::query_param(req.uri().query(), "signal").as_deref())?;
    let n = match running(state, &sb).await {
        Some(c) => c.kill_all(signal).await.map_err(agent_err)?,
        None => 0,
    };
    Ok(http::json(
        StatusCode::OK,
        &json!({ "killed": n, "signal": signal }),
    ))
}

pub(super) async fn logs(
    state: &AppState,
    id: &SandboxId,
    pid: &str,
    req: &Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    check_process_id(pid)?;
    let follow = http::wants_sse(req.headers())
        || http::query_param(req.uri().query(), "follow").is_some_and(|v| v != "false");
    if follow {
        return stream_logs(state, &sb, pid).await;
    }
    let logs = match running(state, &sb).await {
        Some(c) => c.logs(pid).await.map_err(agent_err)?,
        None => kept_logs(state, &sb, pid).await?,
    };
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "id": pid,
            "stdout": String::from_utf8_lossy(&logs.stdout),
            "stderr": String::from_utf8_lossy(&logs.stderr),
            "truncated": logs.truncated,
        }),
    ))
}

fn log_event(e: &LogEvent) -> SseEvent {
    match e {
        LogEvent::Data {
            stream,
            data,
            timestamp_ms,
        } => SseEvent {
            event: match stream {
                LogStream::Stdout => "stdout",
                LogStream::Stderr => "stderr",
            },
            data: json!({
                "type": match stream { LogStream::Stdout => "stdout", LogStream::Stderr => "stderr" },
                "data": String::from_utf8_lossy(data),
                "timestamp": ms_to_rfc3339(*timestamp_ms),
            }),
        },
        LogEvent::Exit(info) => SseEvent {
            event: "exit",
            data: info_json(info),
        },
    }
}

/// `GET .../processes/{pid}/logs` with `Accept: text/event-stream` (or `?follow`): what is kept,
/// then new output as it comes, then `exit`.
async fn stream_logs(
    state: &AppState,
    sb: &Sandbox,
    pid: &str,
) -> Result<Response<Body>, ApiError> {
    let Some(client) = running(state, sb).await else {
        // Nothing runs: the kept logs and the record, then the end.
        let info = one(state, sb, pid).await?;
        let logs = kept_logs(state, sb, pid).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let now = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
        )
        .unwrap_or(0);
        for (stream, data) in [
            (LogStream::Stdout, logs.stdout),
            (LogStream::Stderr, logs.stderr),
        ] {
            if !data.is_empty() {
                let _ = tx.send(log_event(&LogEvent::Data {
                    stream,
                    data,
                    timestamp_ms: now,
                }));
            }
        }
        let _ = tx.send(log_event(&LogEvent::Exit(info)));
        return Ok(http::sse(rx));
    };
    let mut follow = client.follow_logs(pid).await.map_err(agent_err)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (containers, sid) = (state.containers.clone(), sb.id.to_string());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => break,
                ev = follow.next() => match ev {
                    Ok(Some(e)) => {
                        containers.touch(&sid);
                        let last = matches!(e, LogEvent::Exit(_));
                        if tx.send(log_event(&e)).is_err() || last {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(SseEvent { event: "error", data: agent_err(e).body() });
                        break;
                    }
                },
            }
        }
    });
    Ok(http::sse(rx))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WaitReq {
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default, alias = "timeoutMs")]
    timeout: Option<u64>,
}

fn wait_timeout(ms: Option<u64>) -> Result<Duration, ApiError> {
    match ms.unwrap_or(DEFAULT_WAIT_MS) {
        0 => Err(ApiError::InvalidRequest("timeout must be positive".into())),
        ms if ms > MAX_WAIT_MS => Err(ApiError::InvalidRequest(format!(
            "timeout must be at most {MAX_WAIT_MS} ms"
        ))),
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn timed_out(timeout: Duration, details: Value) -> ApiError {
    ApiError::Timeout {
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        details,
    }
}

/// `POST .../processes/{pid}/waitForPort|waitForLog|waitForExit`.
pub(super) async fn wait(
    state: &AppState,
    id: &SandboxId,
    pid: &str,
    what: &str,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let r: WaitReq = http::parse_json(req.body())?;
    let timeout = wait_timeout(r.timeout)?;
    let started = Instant::now();
    let info = one(state, &sb, pid).await?;
    let client = running(state, &sb).await;
    match what {
        "waitForPort" => {
            let port = r
                .port
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::InvalidRequest("port (1-65535) is required".into()))?;
            let Some(client) = client else {
                return Err(ApiError::InvalidRequest(format!(
                    "process {pid} is not running (the container is stopped)"
                )));
            };
            // Ready when the port accepts, or failed when the process ends first.
            let deadline = started + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let slice = left.min(Duration::from_millis(500));
                if client.wait_port(port, slice).await.map_err(agent_err)? {
                    break;
                }
                let now = client.get_process(pid).await.map_err(agent_err)?;
                if now.status != ProcStatus::Running {
                    return Err(ApiError::InvalidRequest(format!(
                        "process {pid} ended ({}) before port {port} was ready",
                        status_name(now.status)
                    )));
                }
                if Instant::now() >= deadline {
                    return Err(timed_out(
                        timeout,
                        json!({ "port": port, "process": info_json(&now) }),
                    ));
                }
            }
            state.containers.touch(sb.id.as_str());
            Ok(http::json(
                StatusCode::OK,
                &json!({ "ready": true, "port": port, "waitedMs": started.elapsed().as_secs_f64() * 1e3 }),
            ))
        }
        "waitForLog" => {
            let pattern = r
                .pattern
                .ok_or_else(|| ApiError::InvalidRequest("pattern is required".into()))?;
            let re = regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ApiError::InvalidRequest(format!("pattern: {e}")))?;
            let Some(client) = client else {
                // Stopped: only the kept logs can match.
                let logs = kept_logs(state, &sb, pid).await?;
                for (stream, data) in [("stdout", logs.stdout), ("stderr", logs.stderr)] {
                    let text = String::from_utf8_lossy(&data);
                    if let Some(line) = text.lines().find(|l| re.is_match(l)) {
                        return Ok(log_match(line, &re, stream, started));
                    }
                }
                return Err(ApiError::InvalidRequest(format!(
                    "process {pid} is not running and its logs do not match"
                )));
            };
            let mut follow = client.follow_logs(pid).await.map_err(agent_err)?;
            // Lines are matched whole: a partial line waits for the rest of it.
            let mut partial = [String::new(), String::new()];
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let ev = tokio::select! {
                    ev = follow.next() => ev.map_err(agent_err)?,
                    () = tokio::time::sleep_until(deadline) => {
                        return Err(timed_out(timeout, json!({ "pattern": pattern })));
                    }
                };
                match ev {
                    Some(LogEvent::Data { stream, data, .. }) => {
                        let (i, name) = match stream {
                            LogStream::Stdout => (0, "stdout"),
                            LogStream::Stderr => (1, "stderr"),
                        };
                        partial[i].push_str(&String::from_utf8_lossy(&data));
                        while let Some(nl) = partial[i].find('\n') {
                            let line: String = partial[i].drain(..=nl).collect();
                            let line = line.trim_end_matches(['\n', '\r']);
                            if re.is_match(line) {
                                return Ok(log_match(line, &re, name, started));
                            }
                        }
                        if re.is_match(&partial[i]) && partial[i].len() > 64 * 1024 {
                            let line = std::mem::take(&mut partial[i]);
                            return Ok(log_match(&line, &re, name, started));
                        }
                    }
                    Some(LogEvent::Exit(end)) => {
                        for (i, name) in [(0, "stdout"), (1, "stderr")] {
                            if re.is_match(&partial[i]) {
                                return Ok(log_match(&partial[i].clone(), &re, name, started));
                            }
                        }
                        return Err(ApiError::InvalidRequest(format!(
                            "process {pid} ended ({}) without a log line matching {pattern:?}",
                            status_name(end.status)
                        )));
                    }
                    None => {
                        return Err(ApiError::ContainerNotReady("the log stream ended".into()));
                    }
                }
            }
        }
        "waitForExit" => {
            let deadline = started + timeout;
            let mut now = info;
            while now.status == ProcStatus::Running {
                if Instant::now() >= deadline {
                    return Err(timed_out(timeout, json!({ "process": info_json(&now) })));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                now = one(state, &sb, pid).await?;
            }
            Ok(http::json(StatusCode::OK, &info_json(&now)))
        }
        _ => Err(ApiError::RouteNotFound(format!("processes/{pid}/{what}"))),
    }
}

fn log_match(line: &str, re: &regex::Regex, stream: &str, started: Instant) -> Response<Body> {
    let m = re.find(line).map(|m| m.as_str().to_owned());
    http::json(
        StatusCode::OK,
        &json!({
            "line": line,
            "match": m,
            "stream": stream,
            "waitedMs": started.elapsed().as_secs_f64() * 1e3,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_ids() {
        assert_eq!(parse_signal(None).ok(), Some(libc::SIGTERM));
        assert_eq!(parse_signal(Some("SIGKILL")).ok(), Some(libc::SIGKILL));
        assert_eq!(parse_signal(Some("int")).ok(), Some(libc::SIGINT));
        assert_eq!(parse_signal(Some("9")).ok(), Some(9));
        assert!(parse_signal(Some("SIGNOPE")).is_err());
        assert!(parse_signal(Some("0")).is_err());
        assert!(check_process_id("web-1.a_b").is_ok());
        assert!(check_process_id("").is_err());
        assert!(check_process_id(".hidden").is_err());
        assert!(check_process_id("a/b").is_err());
        assert!(check_process_id(&"x".repeat(65)).is_err());
        assert!(check_process_id(&new_process_id()).is_ok());
    }
}
