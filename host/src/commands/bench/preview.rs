//! The `preview-first-byte` scenario's clock: from starting a web server to the first byte of
//! a successful answer from it, through hybox's preview proxy or straight on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::Command;

use super::hybox;
use crate::client::Client;

/// The port the sandbox's web server listens on.
pub(super) const PORT: u16 = 8080;

/// The command the sandbox runs, and (with the real interpreter) the native peer.
pub(super) const SERVER_COMMAND: &str = "python3 -m http.server 8080";

/// How often the client asks until the server answers.
const POLL: Duration = Duration::from_millis(5);

/// The longest a server may take to answer (the bench never hangs).
const LIMIT: Duration = Duration::from_secs(60);

/// One `GET path` on a new connection to `addr`: the status and the instant the answer's
/// first byte arrived. The rest of the answer is not read.
async fn first_byte(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Instant)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    let mut first = None;
    // `HTTP/1.1 200` is 12 bytes; they may come in more than one read.
    while head.len() < 12 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        first.get_or_insert_with(Instant::now);
        head.extend_from_slice(&buf[..n]);
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    Ok((status, first.unwrap_or_else(Instant::now)))
}

/// Asks `GET path` every [`POLL`] until an answer is 2xx: the time from `t0` to its first
/// byte. Refused connections and 502, 503 and 504 answers (the proxy's "nothing listens yet")
/// are retried; any other status fails.
async fn until_first_byte(addr: SocketAddr, path: &str, t0: Instant) -> anyhow::Result<Duration> {
    let mut last = String::from("no answer yet");
    while t0.elapsed() < LIMIT {
        match first_byte(addr, path).await {
            Ok((200..=299, at)) => return Ok(at.duration_since(t0)),
            Ok((status @ (502..=504), _)) => last = format!("answered {status}"),
            Ok((status, _)) => bail!("GET {path} answered {status}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("GET {path} gave no 2xx answer within {LIMIT:?} (last: {last})")
}

/// The `host:port` of a base URL such as `http://127.0.0.1:7700`.
///
/// # Errors
/// Another form of URL.
pub(super) fn socket_of(base: &str) -> anyhow::Result<SocketAddr> {
    base.strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|hostport| hostport.parse().ok())
        .with_context(|| format!("{base:?} is not http://IP:PORT"))
}

/// One hybox run: from `POST .../processes` of [`SERVER_COMMAND`] as `process` to the first
/// byte of a 2xx answer of `GET /preview/{id}/8080/?token=...` through the server. The process
/// is killed after, untimed, and the port polled until it no longer answers 2xx.
///
/// # Errors
/// API errors, or no answer in time.
pub(super) async fn hybox_run(
    client: &Client,
    server: SocketAddr,
    id: &str,
    token: &str,
    process: &str,
) -> anyhow::Result<Duration> {
    let path = format!("/preview/{id}/{PORT}/?token={token}");
    let t0 = Instant::now();
    hybox::start_process(client, id, process, SERVER_COMMAND).await?;
    let elapsed = until_first_byte(server, &path, t0).await;
    hybox::kill_process(client, id, process).await?;
    // The next run binds the same port: wait until this server is gone.
    let gone = Instant::now();
    while gone.elapsed() < Duration::from_secs(10) {
        match first_byte(server, &path).await {
            Ok((200..=299, _)) => tokio::time::sleep(POLL).await,
            _ => break,
        }
    }
    elapsed
}

/// A free loopback port (bound and let go: the server started next takes it).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The native peer: from spawning `python -m http.server PORT --bind 127.0.0.1` in `dir` to
/// the first byte of a 2xx answer of `GET /` on loopback. Killed and reaped after, untimed.
///
/// # Errors
/// Spawn failures, or no answer in time.
pub(super) async fn native_run(python: &Path, dir: &Path) -> anyhow::Result<Duration> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let t0 = Instant::now();
    let mut child = Command::new(python)
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {} -m http.server", python.display()))?;
    let elapsed = until_first_byte(addr, "/", t0).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    elapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_give_their_socket() {
        assert_eq!(
            socket_of("http://127.0.0.1:7700").expect("ip:port"),
            SocketAddr::from(([127, 0, 0, 1], 7700))
        );
        assert!(socket_of("https://example.com").is_err());
    }

    /// The first byte of a real answer, on a loopback listener that answers once.
    #[tokio::test]
    async fn first_byte_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
                .await
                .expect("answer");
        });
        let (status, _) = first_byte(addr, "/").await.expect("answer");
        assert_eq!(status, 503);
        server.await.expect("server");
    }
}
