//! `/v1/sandboxes/{id}/ports`: exposing a port of the sandbox's container under a preview URL.
//! Exposures are kept in the sandbox's metadata, so they survive a container restart and a
//! server restart; the proxy ([`crate::proxy`]) serves them.

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::http::{self, Body};
use super::{AppState, Preview};
use crate::sandbox::{ExposedPort, SandboxId};

/// Lowest port that can be exposed (below are privileged ports).
pub const MIN_PORT: u16 = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExposeReq {
    port: u32,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    token: Option<String>,
    /// Accepted for parity with the reference product (the preview host comes from the
    /// server's `--preview-domain`).
    #[serde(default)]
    hostname: Option<String>,
}

/// Whether `t` is a valid preview token: 1-16 of `[a-z0-9_]` (no `-`: it separates the parts
/// of a preview host name).
#[must_use]
pub fn valid_token(t: &str) -> bool {
    (1..=16).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A random 16-character token from the kernel's CSPRNG.
fn new_token() -> Result<String, ApiError> {
    use std::io::Read;
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("read /dev/urandom")))?;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    Ok(raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

fn check_port(port: u32) -> Result<u16, ApiError> {
    match u16::try_from(port) {
        Ok(p) if p >= MIN_PORT => Ok(p),
        _ => Err(ApiError::PortReserved(format!(
            "port {port} cannot be exposed: use {MIN_PORT}-65535"
        ))),
    }
}

/// The preview URLs of an exposed port.
pub(super) fn port_json(p: &Preview, id: &SandboxId, port: u16, e: &ExposedPort) -> Value {
    let host_port = p.port.map(|n| format!(":{n}")).unwrap_or_default();
    json!({
        "port": port,
        "name": e.name,
        "token": e.token,
        "exposedAt": e.exposed_at,
        "url": format!("{}://{port}-{id}-{}.{}{host_port}/", p.scheme, e.token, p.domain),
        "previewPath": format!("/preview/{id}/{port}/?token={}", e.token),
    })
}

pub(super) async fn expose(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let r: ExposeReq = http::parse_json(req.body())?;
    let port = check_port(r.port)?;
    let _ = r.hostname;
    if let Some(t) = &r.token
        && !valid_token(t)
    {
        return Err(ApiError::InvalidRequest(format!(
            "token {t:?}: 1-16 of [a-z0-9_]"
        )));
    }
    if let Some(n) = &r.name
        && (n.len() > 64 || n.chars().any(char::is_control))
    {
        return Err(ApiError::InvalidRequest(
            "name: at most 64 printable characters".into(),
        ));
    }
    let meta = sb.meta();
    if let Some(existing) = meta.ports.get(&port) {
        // Re-exposing with the same token (or none) is idempotent.
        if r.token.as_ref().is_none_or(|t| *t == existing.token) {
            return Ok(http::json(
                StatusCode::OK,
                &port_json(&state.preview, id, port, existing),
            ));
        }
        return Err(ApiError::PortAlreadyExposed(port));
    }
    let token = match r.token {
        Some(t) => {
            if meta.ports.values().any(|e| e.token == t) {
                return Err(ApiError::InvalidRequest(format!(
                    "token {t:?} is used by another port of this sandbox"
                )));
            }
            t
        }
        None => new_token()?,
    };
    let exposed = ExposedPort {
        token,
        name: r.name,
        exposed_at: crate::timestamp::now(),
    };
    let e = exposed.clone();
    let meta = sb.update_meta(move |m| {
        m.ports.entry(port).or_insert(e);
    })?;
    let stored = meta.ports.get(&port).unwrap_or(&exposed);
    tracing::info!(sandbox = %id, port, "port exposed");
    Ok(http::json(
        StatusCode::CREATED,
        &port_json(&state.preview, id, port, stored),
    ))
}

pub(super) async fn list(state: &AppState, id: &SandboxId) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let ports: Vec<Value> = sb
        .meta()
        .ports
        .iter()
        .map(|(p, e)| port_json(&state.preview, id, *p, e))
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({ "count": ports.len(), "ports": ports }),
    ))
}

fn parse_port(raw: &str) -> Result<u16, ApiError> {
    raw.parse::<u16>()
        .map_err(|_| ApiError::InvalidRequest(format!("port {raw:?} is not a number 1-65535")))
}

pub(super) async fn get(
    state: &AppState,
    id: &SandboxId,
    port: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let port = parse_port(port)?;
    let meta = sb.meta();
    let e = meta
        .ports
        .get(&port)
        .ok_or(ApiError::PortNotExposed(port))?;
    Ok(http::json(
        StatusCode::OK,
        &port_json(&state.preview, id, port, e),
    ))
}

pub(super) async fn unexpose(
    state: &AppState,
    id: &SandboxId,
    port: &str,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let port = parse_port(port)?;
    if !sb.meta().ports.contains_key(&port) {
        return Err(ApiError::PortNotExposed(port));
    }
    sb.update_meta(|m| {
        m.ports.remove(&port);
    })?;
    tracing::info!(sandbox = %id, port, "port unexposed");
    Ok(http::json(
        StatusCode::OK,
        &json!({ "port": port, "unexposed": true }),
    ))
}

/// `GET .../ports/{port}/validate?token=`: whether a token opens that port's preview.
pub(super) async fn validate(
    state: &AppState,
    id: &SandboxId,
    port: &str,
    req: &Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let port = parse_port(port)?;
    let token = http::query_param(req.uri().query(), "token").unwrap_or_default();
    let valid = sb
        .meta()
        .ports
        .get(&port)
        .is_some_and(|e| crate::proxy::same_token(&e.token, &token));
    Ok(http::json(
        StatusCode::OK,
        &json!({ "port": port, "valid": valid }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_ports() {
        assert!(valid_token("abc_123"));
        assert!(!valid_token("a-b"));
        assert!(!valid_token("ABC"));
        assert!(!valid_token(""));
        assert!(!valid_token(&"a".repeat(17)));
        let t = new_token().expect("token");
        assert!(valid_token(&t) && t.len() == 16);
        assert_ne!(t, new_token().expect("token"));
        assert!(check_port(80).is_err());
        assert!(check_port(70000).is_err());
        assert_eq!(check_port(8080).ok(), Some(8080));
    }
}
