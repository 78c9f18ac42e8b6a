//! A small HTTP client for the CLI verbs: JSON requests and SSE streams to `hybox serve`.

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A connection to a hybox server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// Stable code.
    pub code: String,
    /// Message.
    pub message: String,
    /// The whole body.
    pub body: Value,
}

impl Client {
    /// A client for `base` (`http://127.0.0.1:7700`).
    #[must_use]
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        sse: bool,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if sse {
            b = b.header(header::ACCEPT, "text/event-stream");
        }
        let bytes = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        Ok(b.body(Full::new(bytes))?)
    }

    /// Sends a JSON request and returns the JSON answer; an error answer becomes [`ApiFailure`].
    ///
    /// # Errors
    /// Connection failures, non-JSON answers and API errors.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let req = self.request(method, path, body, false)?;
        let resp = self.http.request(req).await.with_context(|| {
            format!(
                "cannot reach hybox at {} (is `hybox serve` running?)",
                self.base
            )
        })?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("server answered {status} with a non-JSON body"))?;
        if status.is_success() {
            return Ok(value);
        }
        Err(ApiFailure {
            status: status.as_u16(),
            code: value["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
            message: value["message"].as_str().unwrap_or("").to_owned(),
            body: value,
        }
        .into())
    }

    /// Sends a request that answers with an SSE stream, calling `on_event(name, data)` for each
    /// event as it arrives.
    ///
    /// # Errors
    /// Connection failures and API errors (an error answer before the stream starts).
    pub async fn stream(
        &self,
        path: &str,
        body: &Value,
        mut on_event: impl FnMut(&str, Value),
    ) -> anyhow::Result<()> {
        let req = self.request(Method::POST, path, Some(body), true)?;
        let resp = self
            .http
            .request(req)
            .await
            .with_context(|| format!("cannot reach hybox at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.into_body().collect().await?.to_bytes();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(ApiFailure {
                status: status.as_u16(),
                code: value["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
                body: value,
            }
            .into());
        }
        let mut body = resp.into_body();
        let mut buf = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.push_str(&String::from_utf8_lossy(data));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut name, mut payload) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        payload.push_str(v);
                    }
                }
                let value =
                    serde_json::from_str(&payload).map_err(|e| anyhow!("bad event data: {e}"))?;
                on_event(&name, value);
            }
        }
        if !buf.trim().is_empty() {
            bail!("stream ended in the middle of an event");
        }
        Ok(())
    }
}
