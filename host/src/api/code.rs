//! Code contexts, code runs and `exec`: the wasm route's API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use hybox_wasi_runtime::{
    CancelToken, Context, Event, EventSink, GuestSpec, Language, MimeBundle, RunLimits, RunOutcome,
    StopReason,
};

use super::AppState;
use super::error::ApiError;
use super::http::{self, Body, SseEvent};
use crate::backend::Route;
use crate::sandbox::context::ApiLanguage;
use crate::sandbox::{CodeContext, Sandbox, SandboxId};

/// The longest deadline a caller may ask for.
const MAX_TIMEOUT_MS: u64 = 30 * 60 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateContextReq {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default, alias = "envVars")]
    env: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunReq {
    code: String,
    #[serde(default, alias = "timeout")]
    timeout_ms: Option<u64>,
    /// Only for `POST .../run` (default context of a language).
    #[serde(default)]
    language: Option<String>,
    /// Only for `POST .../run`: an existing context id.
    #[serde(default)]
    context: Option<String>,
}

pub(super) fn limits(timeout_ms: Option<u64>) -> Result<RunLimits, ApiError> {
    let timeout = match timeout_ms {
        None => hybox_wasi_runtime::DEFAULT_TIMEOUT,
        Some(0) => {
            return Err(ApiError::InvalidRequest(
                "timeoutMs must be positive".into(),
            ));
        }
        Some(ms) if ms > MAX_TIMEOUT_MS => {
            return Err(ApiError::InvalidRequest(format!(
                "timeoutMs must be at most {MAX_TIMEOUT_MS}"
            )));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    Ok(RunLimits {
        timeout,
        ..RunLimits::default()
    })
}

/// Normalises a guest cwd: absolute under `/workspace` or `/tmp`, or relative to `/workspace`.
pub(super) fn guest_cwd(cwd: Option<&str>) -> Result<String, ApiError> {
    let raw = cwd.unwrap_or("/workspace");
    let joined = if raw.starts_with('/') {
        raw.to_owned()
    } else {
        format!("/workspace/{raw}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ApiError::InvalidRequest(format!("cwd {raw:?} escapes /")));
                }
            }
            p => parts.push(p),
        }
    }
    let norm = format!("/{}", parts.join("/"));
    if norm == "/workspace"
        || norm.starts_with("/workspace/")
        || norm == "/tmp"
        || norm.starts_with("/tmp/")
    {
        Ok(norm)
    } else {
        Err(ApiError::InvalidRequest(format!(
            "cwd {raw:?} is outside /workspace and /tmp"
        )))
    }
}

/// [`guest_cwd`], then checked to be an existing directory of the sandbox (a guest started in a
/// missing directory would fail in less clear ways).
pub(super) async fn sandbox_cwd(sb: &Sandbox, cwd: Option<&str>) -> Result<String, ApiError> {
    let norm = guest_cwd(cwd)?;
    let (root, rel) = match norm.strip_prefix("/workspace") {
        Some(rest) => (sb.workspace_dir(), rest.trim_start_matches('/').to_owned()),
        None => (
            sb.tmp_dir(),
            norm.trim_start_matches("/tmp")
                .trim_start_matches('/')
                .to_owned(),
        ),
    };
    let is_dir = tokio::task::spawn_blocking(move || {
        cap_std::fs::Dir::open_ambient_dir(&root, cap_std::ambient_authority())
            .and_then(|d| d.metadata(if rel.is_empty() { "." } else { rel.as_str() }))
            .is_ok_and(|m| m.is_dir())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    if is_dir {
        Ok(norm)
    } else {
        Err(ApiError::InvalidRequest(format!(
            "cwd {norm} is not an existing directory"
        )))
    }
}

/// Environment names are shell identifiers and values hold no NUL: anything else cannot reach a
/// process environment intact.
pub(super) fn check_env(env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (k, v) in env {
        if !hybox_wasi_runtime::shell::is_name(k) {
            return Err(ApiError::InvalidRequest(format!(
                "invalid environment variable name {k:?}"
            )));
        }
        if v.contains('\0') {
            return Err(ApiError::InvalidRequest(format!(
                "environment variable {k} holds a NUL byte"
            )));
        }
    }
    Ok(())
}

pub(super) fn guest_spec(sb: &Sandbox, cwd: String, env: BTreeMap<String, String>) -> GuestSpec {
    GuestSpec {
        cwd,
        env: env.into_iter().collect(),
        mounts: {
            let mut m = crate::backend::wasi::mounts(&sb.workspace_dir(), &sb.tmp_dir());
            m.extend(sb.volume_mounts.iter().cloned());
            m
        },
        memory_limit: sb.meta().memory_limit_mb.saturating_mul(1 << 20),
        tools: sb.tools.clone(),
    }
}

pub(super) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", crate::sandbox::random_hex(16))
}

async fn start_context(
    state: &AppState,
    sb: &Arc<Sandbox>,
    id: String,
    language: ApiLanguage,
    cwd: Option<&str>,
    env: BTreeMap<String, String>,
) -> Result<Arc<CodeContext>, ApiError> {
    check_env(&env)?;
    // The workspace root always exists; other directories are checked on the disk.
    let cwd = match cwd {
        None | Some("/workspace") => "/workspace".to_owned(),
        Some(c) => sandbox_cwd(sb, Some(c)).await?,
    };
    let runtime = state.wasi.runtime().await?;
    let mut merged = sb.meta().env;
    merged.extend(env.clone());
    let spec = guest_spec(sb, cwd.clone(), merged);
    let lang = match language {
        ApiLanguage::Python => Language::Python,
        ApiLanguage::Javascript | ApiLanguage::Typescript => Language::JavaScript,
    };
    let spare = sb.take_spare(lang);
    let live = tokio::task::spawn_blocking(move || match spare {
        Some(mut ctx) => ctx.adopt(spec).map(|()| ctx),
        None => Context::start(&runtime, lang, spec),
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    let ctx = Arc::new(CodeContext {
        id: id.clone(),
        language,
        cwd,
        env,
        created_at: crate::timestamp::now(),
        runs: std::sync::atomic::AtomicU64::new(0),
        live: Arc::new(live),
    });
    sb.contexts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id, ctx.clone());
    Ok(ctx)
}

pub(super) async fn create_context(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let body = req.into_body();
    let r: CreateContextReq = http::parse_json(&body)?;
    let name = r.language.unwrap_or_else(|| "python".into());
    let language = ApiLanguage::parse(&name).ok_or(ApiError::UnsupportedLanguage(name))?;
    let ctx = start_context(
        state,
        &sb,
        new_id("ctx"),
        language,
        r.cwd.as_deref(),
        r.env.unwrap_or_default(),
    )
    .await?;
    Ok(http::json(
        StatusCode::CREATED,
        &serde_json::to_value(ctx.info()).unwrap_or(Value::Null),
    ))
}

pub(super) async fn list_contexts(
    state: &AppState,
    id: &SandboxId,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let mut all: Vec<Value> = sb
        .contexts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .map(|c| serde_json::to_value(c.info()).unwrap_or(Value::Null))
        .collect();
    all.sort_by(|a, b| a["createdAt"].as_str().cmp(&b["createdAt"].as_str()));
    Ok(http::json(
        StatusCode::OK,
        &json!({ "count": all.len(), "contexts": all }),
    ))
}

pub(super) async fn get_context(
    state: &AppState,
    id: &SandboxId,
    ctx: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let c = sb.context(ctx)?;
    Ok(http::json(
        StatusCode::OK,
        &serde_json::to_value(c.info()).unwrap_or(Value::Null),
    ))
}

pub(super) async fn delete_context(
    state: &AppState,
    id: &SandboxId,
    ctx: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    sb.contexts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(ctx)
        .ok_or_else(|| ApiError::ContextNotFound(ctx.to_owned()))?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "id": ctx, "deleted": true }),
    ))
}

pub(super) async fn run_context(
    state: &AppState,
    id: &SandboxId,
    ctx: &str,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let c = sb.context(ctx)?;
    let stream = http::wants_sse(req.headers());
    let body = req.into_body();
    let r: RunReq = http::parse_json(&body)?;
    if r.language.is_some() || r.context.is_some() {
        return Err(ApiError::InvalidRequest(
            "language and context belong to POST /v1/sandboxes/{id}/run".into(),
        ));
    }
    run_code(c, r.code, limits(r.timeout_ms)?, stream).await
}

/// `runCode` without an explicit context: the sandbox's default context of the language.
pub(super) async fn run_default(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let stream = http::wants_sse(req.headers());
    let body = req.into_body();
    let r: RunReq = http::parse_json(&body)?;
    let ctx = if let Some(cid) = &r.context {
        sb.context(cid)?
    } else {
        let name = r.language.clone().unwrap_or_else(|| "python".into());
        let language = ApiLanguage::parse(&name).ok_or(ApiError::UnsupportedLanguage(name))?;
        let default_id = format!(
            "default-{}",
            serde_json::to_value(language)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        match sb.context(&default_id) {
            Ok(c) => c,
            Err(_) => {
                start_context(state, &sb, default_id, language, None, BTreeMap::new()).await?
            }
        }
    };
    run_code(ctx, r.code, limits(r.timeout_ms)?, stream).await
}

/// Cancels a run when the request future is dropped (the client went away).
pub(super) struct CancelOnDrop(pub(super) Option<CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.cancel();
        }
    }
}

fn result_json(bundle: &MimeBundle) -> Value {
    const SHORT: &[(&str, &str)] = &[
        ("text/plain", "text"),
        ("text/html", "html"),
        ("image/png", "png"),
        ("image/jpeg", "jpeg"),
        ("image/svg+xml", "svg"),
        ("text/markdown", "markdown"),
        ("text/latex", "latex"),
        ("application/json", "json"),
    ];
    let mut v = json!({ "data": bundle });
    let mut formats = Vec::new();
    for (mime, short) in SHORT {
        if let Some(data) = bundle.get(*mime) {
            let value = if *mime == "application/json" {
                data.as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_else(|| data.clone())
            } else {
                data.clone()
            };
            v[*short] = value;
            formats.push(*short);
        }
    }
    v["formats"] = json!(formats);
    v
}

fn run_json(outcome: &RunOutcome, count: u64, restarted: bool) -> Value {
    json!({
        "results": outcome.results.iter().map(result_json).collect::<Vec<_>>(),
        "logs": { "stdout": outcome.stdout, "stderr": outcome.stderr },
        "error": outcome.error,
        "route": Route::Wasi,
        "durationMs": outcome.duration.as_secs_f64() * 1e3,
        "executionCount": count,
        "contextRestarted": restarted,
    })
}

/// Maps a run the sandbox had to stop (or that crashed the guest) to its API error.
pub(super) fn stop_error(
    outcome: &RunOutcome,
    limits: &RunLimits,
    details: Value,
) -> Option<ApiError> {
    match outcome.stopped {
        Some(StopReason::Timeout) => Some(ApiError::Timeout {
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            details,
        }),
        Some(StopReason::Cancelled) => Some(ApiError::Cancelled { details }),
        Some(StopReason::OutputLimit) => Some(ApiError::OutputLimit {
            limit: limits.output_limit,
            details,
        }),
        None => outcome.trap.as_ref().map(|why| {
            if outcome.memory_limit_hit {
                ApiError::MemoryLimit { details }
            } else {
                ApiError::Wasm(hybox_wasi_runtime::Error::Trap(why.clone()))
            }
        }),
    }
}

pub(super) fn event_json(event: Event) -> SseEvent {
    match event {
        Event::Stdout(text) => SseEvent {
            event: "stdout",
            data: json!({ "text": text }),
        },
        Event::Stderr(text) => SseEvent {
            event: "stderr",
            data: json!({ "text": text }),
        },
        Event::Result(bundle) => SseEvent {
            event: "result",
            data: result_json(&bundle),
        },
        Event::Error(error) => SseEvent {
            event: "error",
            data: json!(error),
        },
        Event::Progress {
            done,
            total,
            message,
        } => SseEvent {
            event: "progress",
            data: json!({ "done": done, "total": total, "message": message }),
        },
    }
}

fn strip_if_typescript(
    ctx: &CodeContext,
    code: String,
) -> Result<String, hybox_wasi_runtime::CodeError> {
    if ctx.language != ApiLanguage::Typescript {
        return Ok(code);
    }
    crate::typescript::strip_types(&code).map_err(|e| {
        let (name, position) = match &e {
            crate::typescript::TsError::Syntax { line, column, .. } => (
                "SyntaxError",
                vec![format!("at line {line}, column {column}")],
            ),
            crate::typescript::TsError::Transform(_) => ("TypeScriptError", vec![]),
        };
        hybox_wasi_runtime::CodeError {
            name: name.into(),
            value: e.to_string(),
            traceback: position,
        }
    })
}

async fn run_code(
    ctx: Arc<CodeContext>,
    code: String,
    limits: RunLimits,
    stream: bool,
) -> Result<Response<Body>, ApiError> {
    let count = ctx.runs.fetch_add(1, Ordering::Relaxed) + 1;
    let code = match strip_if_typescript(&ctx, code) {
        Ok(code) => code,
        Err(error) => {
            let outcome = RunOutcome {
                error: Some(error),
                ..RunOutcome::default()
            };
            return Ok(if stream {
                let (tx, rx) = mpsc::unbounded_channel();
                if let Some(e) = &outcome.error {
                    let _ = tx.send(SseEvent {
                        event: "error",
                        data: json!(e),
                    });
                }
                let _ = tx.send(SseEvent {
                    event: "complete",
                    data: json!({ "success": false, "executionCount": count, "durationMs": 0.0 }),
                });
                http::sse(rx)
            } else {
                http::json(StatusCode::OK, &run_json(&outcome, count, false))
            });
        }
    };
    if stream {
        let cancel = limits.cancel.clone();
        return Ok(http::stream_run(cancel, move |events| async move {
            let sink: EventSink = Box::new(move |e| {
                let _ = events.send(event_json(e));
            });
            let live = ctx.live.clone();
            let lim = limits.clone();
            let result =
                tokio::task::spawn_blocking(move || live.run(&code, &lim, Some(sink))).await;
            match result {
                Ok(Ok(run)) => {
                    let details =
                        json!({ "executionCount": count, "contextRestarted": run.restarted });
                    match stop_error(&run.outcome, &limits, details) {
                        Some(e) => SseEvent {
                            event: "error",
                            data: e.body(),
                        },
                        None => SseEvent {
                            event: "complete",
                            data: json!({
                                "success": run.outcome.error.is_none(),
                                "executionCount": count,
                                "durationMs": run.outcome.duration.as_secs_f64() * 1e3,
                                "contextRestarted": run.restarted,
                                "route": Route::Wasi,
                            }),
                        },
                    }
                }
                Ok(Err(e)) => SseEvent {
                    event: "error",
                    data: ApiError::from(e).body(),
                },
                Err(e) => SseEvent {
                    event: "error",
                    data: ApiError::Internal(e.into()).body(),
                },
            }
        }));
    }
    let mut guard = CancelOnDrop(Some(limits.cancel.clone()));
    let live = ctx.live.clone();
    let lim = limits.clone();
    let run = tokio::task::spawn_blocking(move || live.run(&code, &lim, None))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    guard.0 = None;
    let body = run_json(&run.outcome, count, run.restarted);
    if let Some(e) = stop_error(&run.outcome, &limits, body.clone()) {
        return Err(e);
    }
    Ok(http::json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_is_confined() {
        assert_eq!(guest_cwd(None).expect("default"), "/workspace");
        assert_eq!(
            guest_cwd(Some("src/../lib")).expect("rel"),
            "/workspace/lib"
        );
        assert_eq!(guest_cwd(Some("/tmp/x/")).expect("tmp"), "/tmp/x");
        for bad in ["/", "/etc", "../..", "/workspace/../etc", "/workspacex"] {
            assert!(guest_cwd(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn results_carry_mime_data_and_short_names() {
        let mut b = MimeBundle::new();
        b.insert("text/plain".into(), json!("{'a': 1}"));
        b.insert("application/json".into(), json!("{\"a\": 1}"));
        let v = result_json(&b);
        assert_eq!(v["text"], "{'a': 1}");
        assert_eq!(v["json"]["a"], 1);
        assert_eq!(v["formats"], json!(["text", "json"]));
        assert_eq!(v["data"]["text/plain"], "{'a': 1}");
    }
}
