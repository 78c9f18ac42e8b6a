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

fn failure(status: u16, bytes: &[u8]) -> anyhow::Error {
    let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    ApiFailure {
        status,
        code: value["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
        message: value["message"].as_str().unwrap_or("").to_owned(),
        body: value,
    }
    .into()
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
        Err(failure(status.as_u16(), &bytes))
    }

    /// Downloads `path` into `dest` (written to a temp file and renamed), calling
    /// `progress(done, total)` as bytes arrive. Returns the bytes written.
    ///
    /// # Errors
    /// Connection failures, API errors, a truncated body, and write failures.
    pub async fn download(
        &self,
        path: &str,
        dest: &std::path::Path,
        progress: impl Fn(u64, Option<u64>),
    ) -> anyhow::Result<u64> {
        use std::io::Write;
        let req = self.request(Method::GET, path, None, false)?;
        let resp = self
            .http
            .request(req)
            .await
            .with_context(|| format!("cannot reach hybox at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.into_body().collect().await?.to_bytes();
            return Err(failure(status.as_u16(), &bytes));
        }
        let total = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        let mut body = resp.into_body();
        let mut done = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                tmp.write_all(&data)?;
                done += data.len() as u64;
                progress(done, total);
            }
        }
        if total.is_some_and(|t| t != done) {
            bail!(
                "download ended after {done} of {} bytes",
                total.unwrap_or(0)
            );
        }
        // A file for the user, not a secret: the usual mode (tempfile makes 0600).
        {
            use std::os::unix::fs::PermissionsExt;
            let umask = 0o022;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o666 & !umask))?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(dest)
            .with_context(|| format!("writing {}", dest.display()))?;
        Ok(done)
    }

    /// Uploads a file as the raw body of a POST to `path` (streamed, not loaded in memory),
    /// calling `progress(done, total)`; returns the JSON answer.
    ///
    /// # Errors
    /// Connection failures, read failures and API errors.
    pub async fn upload(
        &self,
        path: &str,
        file: &std::path::Path,
        progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> anyhow::Result<Value> {
        use tokio::io::AsyncReadExt;
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let total = f.metadata().await?.len();
        let progress = std::sync::Arc::new(progress);
        let stream = futures_util::stream::unfold((f, 0u64), move |(mut f, done)| {
            let progress = progress.clone();
            async move {
                let mut buf = vec![0u8; 256 * 1024];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        let done = done + n as u64;
                        progress(done, total);
                        Some((
                            Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(buf))),
                            (f, done),
                        ))
                    }
                    Err(e) => Some((Err(e), (f, done))),
                }
            }
        });
        let body = http_body_util::StreamBody::new(Box::pin(stream));
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, total);
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = b.body(body)?;
        let client: HyperClient<HttpConnector, _> =
            HyperClient::builder(TokioExecutor::new()).build_http();
        let resp = client
            .request(req)
            .await
            .with_context(|| format!("cannot reach hybox at {}", self.base))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(failure(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("server answered {status} with a non-JSON body"))
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
            return Err(failure(status.as_u16(), &bytes));
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
