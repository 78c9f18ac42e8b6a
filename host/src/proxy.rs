//! Preview URLs: HTTP and WebSocket traffic for an exposed port of a sandbox, forwarded into its
//! container through the agent (which connects to `127.0.0.1:<port>` there, so a server bound to
//! loopback inside is reachable too).
//!
//! Two forms:
//! - by host name: `{port}-{sandbox}-{token}.{domain}` (wildcard DNS to this server; `localhost`
//!   subdomains resolve to loopback on most systems);
//! - by path, for localhost use: `/preview/{sandbox}/{port}/...?token=...`. The token may also come
//!   in an `X-Hybox-Preview-Token` header or the cookie this form sets on its first answer, so
//!   relative links of the served page keep working.
//!
//! A port that is not exposed, or a wrong token, gets 404 `INVALID_TOKEN`, the same answer for
//! both so a scan learns nothing. A stopped container is not started by preview traffic.

use std::convert::Infallible;

use ::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::http::{self as apihttp, Body};
use crate::sandbox::SandboxId;

/// A request addressed to a preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The sandbox.
    pub sandbox: String,
    /// The port in the container.
    pub port: u16,
    /// The token the request carries (may be empty).
    pub token: String,
    /// Path and query to forward.
    pub path_and_query: String,
    /// Set a cookie with the token (path form, token given in the query).
    pub set_cookie: Option<String>,
}

/// Whether `given` is the port's token (compared in constant time; an empty token never is).
#[must_use]
pub fn same_token(expected: &str, given: &str) -> bool {
    !expected.is_empty() && crate::api::constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// The preview a request is for, if it is one: `Ok(None)` for API requests.
///
/// # Errors
/// [`ApiError::InvalidToken`] for a host under the preview domain that is not a preview name.
pub fn target(
    domain: &str,
    headers: &HeaderMap,
    uri: &::http::Uri,
) -> Result<Option<Target>, ApiError> {
    let pq = uri
        .path_and_query()
        .map_or("/", ::http::uri::PathAndQuery::as_str);
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let host = host.to_ascii_lowercase();
        let suffix = format!(".{}", domain.to_ascii_lowercase());
        if let Some(label) = host.strip_suffix(&suffix) {
            let parsed = label.split_once('-').and_then(|(port, rest)| {
                let (sandbox, token) = rest.rsplit_once('-')?;
                Some((port.parse::<u16>().ok()?, sandbox, token))
            });
            let Some((port, sandbox, token)) =
                parsed.filter(|(_, s, _)| !s.is_empty() && !label.contains('.'))
            else {
                return Err(ApiError::InvalidToken);
            };
            return Ok(Some(Target {
                sandbox: sandbox.to_owned(),
                port,
                token: token.to_owned(),
                path_and_query: pq.to_owned(),
                set_cookie: None,
            }));
        }
    }
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/preview/") else {
        return Ok(None);
    };
    let mut parts = rest.splitn(3, '/');
    let (Some(sandbox), Some(port)) = (parts.next(), parts.next()) else {
        return Err(ApiError::InvalidToken);
    };
    let port: u16 = port.parse().map_err(|_| ApiError::InvalidToken)?;
    let tail = parts.next().unwrap_or("");
    // The token: query, header or cookie; the query's is removed before forwarding.
    let mut query_token = None;
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| {
            if let Some(v) = kv.strip_prefix("token=") {
                query_token = Some(v.to_owned());
                false
            } else {
                !kv.is_empty()
            }
        })
        .collect();
    let cookie_name = format!("hybox_preview_{port}");
    let token = query_token
        .clone()
        .or_else(|| {
            headers
                .get("x-hybox-preview-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    c.trim()
                        .strip_prefix(&format!("{cookie_name}="))
                        .map(str::to_owned)
                })
        })
        .unwrap_or_default();
    let mut pq = format!("/{tail}");
    if !kept.is_empty() {
        pq.push('?');
        pq.push_str(&kept.join("&"));
    }
    let set_cookie = query_token.map(|t| {
        format!("{cookie_name}={t}; Path=/preview/{sandbox}/{port}/; HttpOnly; SameSite=Lax")
    });
    Ok(Some(Target {
        sandbox: sandbox.to_owned(),
        port,
        token,
        path_and_query: pq,
        set_cookie,
    }))
}

/// Headers that belong to one hop and are not forwarded (RFC 9110 §7.6.1); `Connection` and
/// `Upgrade` are kept for a WebSocket handshake.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
}

/// A body that forwards the upstream's frames and ends early (logged) if the upstream fails.
fn forward_body(body: Incoming) -> Body {
    let stream = futures_util::stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        match body.frame().await {
            Some(Ok(frame)) => Some((Ok::<_, Infallible>(frame), Some(body))),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "preview upstream body ended with an error");
                None
            }
            None => None,
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// Serves a preview request.
pub async fn serve(state: &AppState, t: Target, req: Request<Incoming>) -> Response<Body> {
    match forward(state, &t, req).await {
        Ok(resp) => resp,
        Err(e) => {
            if !matches!(e, ApiError::InvalidToken) {
                tracing::debug!(sandbox = %t.sandbox, port = t.port, "preview: {e}");
            }
            apihttp::error(&e)
        }
    }
}

async fn forward(
    state: &AppState,
    t: &Target,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = SandboxId::parse(&t.sandbox).map_err(|_| ApiError::InvalidToken)?;
    let sb = state
        .registry
        .get(&id)
        .await
        .map_err(|_| ApiError::InvalidToken)?;
    let exposed = sb
        .meta()
        .ports
        .get(&t.port)
        .cloned()
        .ok_or(ApiError::InvalidToken)?;
    if !same_token(&exposed.token, &t.token) {
        return Err(ApiError::InvalidToken);
    }
    let Some(client) = state.containers.running(id.as_str()).await else {
        return Err(ApiError::ContainerNotReady(format!(
            "the container of sandbox {id} is not running; start the server process in it again"
        )));
    };
    state.containers.touch(id.as_str());
    let stream = client
        .connect(t.port)
        .await
        .map_err(|e| ApiError::PortNotListening {
            port: t.port,
            why: e.to_string(),
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::PortNotListening {
            port: t.port,
            why: e.to_string(),
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "preview upstream connection ended");
        }
    });
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(t.path_and_query.as_str());
    let original_host = req
        .headers()
        .get(header::HOST)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
    for (k, v) in req.headers() {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name)
            || (!upgrade && (k == header::CONNECTION || k == header::UPGRADE))
        {
            continue;
        }
        if name == "x-hybox-preview-token" || k == header::AUTHORIZATION && state.token.is_some() {
            continue;
        }
        out = out.header(k, v);
    }
    out = out
        .header("x-forwarded-host", original_host)
        .header("x-forwarded-proto", state.preview.scheme.as_str())
        .header("x-sandbox-id", id.as_str());
    let body = req.into_body();
    let out = out
        .body(body)
        .map_err(|e| ApiError::InvalidRequest(format!("preview request: {e}")))?;
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| ApiError::PortNotListening {
            port: t.port,
            why: e.to_string(),
        })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let server_upgrade = hyper::upgrade::on(&mut resp);
        if let Some(client_upgrade) = client_upgrade {
            let (containers, sid) = (state.containers.clone(), id.to_string());
            tokio::spawn(async move {
                match (client_upgrade.await, server_upgrade.await) {
                    (Ok(c), Ok(s)) => {
                        let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                        containers.touch(&sid);
                    }
                    (c, s) => tracing::debug!(
                        client = c.is_ok(),
                        upstream = s.is_ok(),
                        "preview upgrade failed"
                    ),
                }
            });
        }
    }
    let (mut parts, body) = resp.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(*h);
    }
    if let Some(c) = &t.set_cookie
        && let Ok(v) = HeaderValue::from_str(c)
    {
        parts.headers.append(header::SET_COOKIE, v);
    }
    Ok(Response::from_parts(parts, forward_body(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: Option<&str>, uri: &str) -> Result<Option<Target>, ApiError> {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        }
        target("localhost", &h, &uri.parse().expect("uri"))
    }

    #[test]
    fn host_form() {
        let got = t(Some("8080-my-box-abc123.localhost:7700"), "/a?b=1")
            .expect("ok")
            .expect("preview");
        assert_eq!(got.sandbox, "my-box");
        assert_eq!(got.port, 8080);
        assert_eq!(got.token, "abc123");
        assert_eq!(got.path_and_query, "/a?b=1");
        assert!(
            t(Some("127.0.0.1:7700"), "/v1/health")
                .expect("ok")
                .is_none()
        );
        assert!(t(Some("localhost"), "/v1/health").expect("ok").is_none());
        assert!(matches!(
            t(Some("x.localhost"), "/"),
            Err(ApiError::InvalidToken)
        ));
        assert!(matches!(
            t(Some("a.b-c-d.localhost"), "/"),
            Err(ApiError::InvalidToken)
        ));
    }

    #[test]
    fn path_form() {
        let got = t(
            Some("127.0.0.1:7700"),
            "/preview/box/3000/x/y?token=tok&q=1",
        )
        .expect("ok")
        .expect("preview");
        assert_eq!(
            (got.sandbox.as_str(), got.port, got.token.as_str()),
            ("box", 3000, "tok")
        );
        assert_eq!(got.path_and_query, "/x/y?q=1");
        assert!(
            got.set_cookie
                .is_some_and(|c| c.starts_with("hybox_preview_3000=tok; Path=/preview/box/3000/"))
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hybox_preview_3000=tok2"),
        );
        let got = target("localhost", &h, &"/preview/box/3000/".parse().expect("uri"))
            .expect("ok")
            .expect("preview");
        assert_eq!(got.token, "tok2");
        assert!(got.set_cookie.is_none());
        assert!(matches!(
            t(None, "/preview/box/notaport/"),
            Err(ApiError::InvalidToken)
        ));
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("", ""));
    }
}
