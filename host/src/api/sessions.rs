//! `/v1/sandboxes/{id}/sessions`: shell sessions (cwd, env, `$?`) that persist across commands.

use std::collections::BTreeMap;

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::code::{check_env, new_id, sandbox_cwd};
use super::error::ApiError;
use super::http::{self, Body};
use crate::sandbox::SandboxId;
use crate::sandbox::session::Session;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateReq {
    #[serde(default, alias = "name")]
    id: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default, alias = "envVars")]
    env: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvReq {
    #[serde(alias = "envVars")]
    env: BTreeMap<String, Option<String>>,
}

fn view(s: &Session) -> Value {
    serde_json::to_value(s.info()).unwrap_or(Value::Null)
}

pub(super) async fn create(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let body = req.into_body();
    let r: CreateReq = http::parse_json(&body)?;
    let cwd = sandbox_cwd(&sb, r.cwd.as_deref()).await?;
    if let Some(env) = &r.env {
        check_env(env)?;
    }
    // Session env sits above the sandbox's: start from the sandbox env, then the session's.
    let mut env = sb.meta().env;
    env.extend(r.env.unwrap_or_default());
    let sid = r.id.unwrap_or_else(|| new_id("session"));
    let s = sb.sessions.create(Session::new(&sid, &cwd, env))?;
    Ok(http::json(StatusCode::CREATED, &view(&s)))
}

pub(super) async fn list(state: &AppState, id: &SandboxId) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let all: Vec<Value> = sb.sessions.list().iter().map(|s| view(s)).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({ "count": all.len(), "sessions": all }),
    ))
}

pub(super) async fn get(
    state: &AppState,
    id: &SandboxId,
    sid: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let s = sb.sessions.get(sid, &sb.meta().env)?;
    Ok(http::json(StatusCode::OK, &view(&s)))
}

pub(super) async fn delete(
    state: &AppState,
    id: &SandboxId,
    sid: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    sb.sessions.delete(sid)?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "id": sid, "deleted": true }),
    ))
}

/// `setEnvVars`: sets (string) or unsets (null) variables, exported, for later commands.
pub(super) async fn set_env(
    state: &AppState,
    id: &SandboxId,
    sid: &str,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let body = req.into_body();
    let r: EnvReq = http::parse_json(&body)?;
    let named: BTreeMap<String, String> = r
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    check_env(&named)?;
    let s = sb.sessions.get(sid, &sb.meta().env)?;
    {
        let mut st = s
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (k, v) in r.env {
            match v {
                Some(v) => {
                    st.vars.insert(k.clone(), v);
                    st.exported.insert(k);
                }
                None => {
                    st.vars.remove(&k);
                    st.exported.remove(&k);
                }
            }
        }
    }
    sb.sessions.persist();
    Ok(http::json(StatusCode::OK, &view(&s)))
}
