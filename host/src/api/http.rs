//! HTTP plumbing: bodies, JSON in and out, query strings, Server-Sent Events.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::api::error::ApiError;

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (file writes carry base64 content).
pub const MAX_BODY: usize = 64 << 20;

/// Reads a whole request body, capped at [`MAX_BODY`].
///
/// # Errors
/// [`ApiError::PayloadTooLarge`] past the cap, [`ApiError::InvalidRequest`] on a broken stream.
pub async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY as u64,
        }),
        Err(e) => Err(ApiError::InvalidRequest(format!("cannot read body: {e}"))),
    }
}

/// Streams a request body into `file` (an upload too large to hold in memory), capped at
/// `limit` bytes. Returns the bytes written.
///
/// # Errors
/// [`ApiError::PayloadTooLarge`] past the cap, [`ApiError::InvalidRequest`] on a broken stream,
/// [`ApiError::Internal`] when the file cannot be written.
pub async fn body_to_file(
    mut body: Incoming,
    file: &mut tokio::fs::File,
    limit: u64,
) -> Result<u64, ApiError> {
    use tokio::io::AsyncWriteExt;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::InvalidRequest(format!("cannot read body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if total > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            file.write_all(&data)
                .await
                .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("write upload")))?;
        }
    }
    file.flush()
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("write upload")))?;
    Ok(total)
}

/// Parses a JSON body into `T` (an empty body is `{}`).
///
/// # Errors
/// [`ApiError::InvalidRequest`] with serde's message (unknown fields included).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

/// A JSON response.
#[must_use]
pub fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A body of fixed bytes.
#[must_use]
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// An error response: `{code, message, details}` with the mapped status.
#[must_use]
pub fn error(err: &ApiError) -> Response<Body> {
    let (_, status) = err.code_and_status();
    // 501 is "not on this server" (a declined route, a missing feature): the client's answer,
    // not a fault of the server's.
    if status == StatusCode::NOT_IMPLEMENTED {
        tracing::info!(error = %err, "request declined");
    } else if matches!(
        err,
        ApiError::PortNotListening { .. } | ApiError::ContainerNotReady(_)
    ) {
        // A preview of a server that is not up, a sandbox whose container is asleep or cannot
        // start: the client's answer to act on; logged, not an alarm.
        tracing::warn!(error = %err, "request not served");
    } else if status.is_server_error() {
        tracing::error!(error = ?err, "request failed");
    }
    json(status, &err.body())
}

/// The value of `name` in a query string, percent-decoded.
#[must_use]
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One SSE event.
#[derive(Debug)]
pub struct SseEvent {
    /// The event name (`stdout`, `complete`, ...).
    pub event: &'static str,
    /// Its JSON data.
    pub data: Value,
}

/// A streaming `text/event-stream` response fed by a channel; dropping the response (client
/// gone) closes the channel, which the producer watches to cancel its run.
#[must_use]
pub fn sse(rx: mpsc::UnboundedReceiver<SseEvent>) -> Response<Body> {
    let stream = tokio_stream_from(rx).map(|ev| {
        let text = format!("event: {}\ndata: {}\n\n", ev.event, ev.data);
        Ok::<_, Infallible>(Frame::data(Bytes::from(text)))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// A streamed run: `run` gets the sender for its events and returns the last event (`complete`
/// or `error`). It runs in its own task; when the client goes away (the stream is dropped),
/// `cancel` is cancelled, so an abandoned run stops at its next check instead of at its deadline.
pub fn stream_run<F>(
    cancel: hybox_wasi_runtime::CancelToken,
    run: impl FnOnce(mpsc::UnboundedSender<SseEvent>) -> F,
) -> Response<Body>
where
    F: std::future::Future<Output = SseEvent> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<SseEvent>();
    let watch = tx.clone();
    let watcher = tokio::spawn(async move {
        watch.closed().await;
        cancel.cancel();
    });
    let work = run(tx.clone());
    tokio::spawn(async move {
        let last = work.await;
        let _ = tx.send(last);
        watcher.abort();
    });
    sse(rx)
}

/// A response streaming a file's bytes (headers are the caller's).
#[must_use]
pub fn file_stream(file: tokio::fs::File) -> Response<Body> {
    use tokio::io::AsyncReadExt;
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Frame::data(Bytes::from(buf)), Some(file)))
            }
            Err(e) => {
                // The length header promised more: the client sees a truncated body.
                tracing::warn!(error = %e, "reading a streamed file failed");
                None
            }
        }
    })
    .map(Ok::<_, Infallible>);
    Response::new(BodyExt::boxed(StreamBody::new(stream)))
}

/// Whether the client asked for an event stream.
#[must_use]
pub fn wants_sse(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = Some("path=%2Fworkspace%2Fa%20b.txt&recursive=true&x");
        assert_eq!(
            query_param(q, "path").as_deref(),
            Some("/workspace/a b.txt")
        );
        assert_eq!(query_param(q, "recursive").as_deref(), Some("true"));
        assert_eq!(query_param(q, "x").as_deref(), Some(""));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(Some("p=%zz%2"), "p").as_deref(), Some("%zz%2"));
        assert_eq!(query_param(Some("p=a+b"), "p").as_deref(), Some("a b"));
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        let v: Value = parse_json(b"  ").expect("empty is {}");
        assert_eq!(v, serde_json::json!({}));
        assert!(parse_json::<Value>(b"{").is_err());
    }
}
