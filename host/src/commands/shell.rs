//! Container verbs of the CLI: `hybox shell` (an interactive terminal over the terminal
//! WebSocket), `hybox ps`, `hybox expose`.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use clap::Args;
use futures_util::{SinkExt as _, StreamExt as _};
use http::Method;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::ServerArgs;
use crate::client::Client;

/// `hybox shell SANDBOX`
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Sandbox id (created if it does not exist).
    pub sandbox: String,
    /// Session whose working directory and environment the shell starts with.
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `hybox ps SANDBOX`
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Sandbox id.
    pub sandbox: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `hybox expose SANDBOX PORT`
#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// Sandbox id.
    pub sandbox: String,
    /// Port in the container (1024-65535).
    pub port: u16,
    /// A friendly name.
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the exposure instead.
    #[arg(long)]
    pub remove: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Puts the terminal in raw mode while alive; restores it when dropped.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

fn window() -> (u16, u16) {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map_or((80, 24), |w| (w.ws_col, w.ws_row))
}

/// `hybox shell`: a terminal in the sandbox's container until the shell exits; returns its code.
///
/// # Errors
/// Connection failures.
pub async fn shell(a: ShellArgs) -> anyhow::Result<i32> {
    let client = Client::new(&a.server.server, a.server.token.clone());
    client
        .call(
            Method::PUT,
            &format!("/v1/sandboxes/{}", a.sandbox),
            Some(&json!({})),
        )
        .await?;
    let (cols, rows) = window();
    let base = a.server.server.trim_end_matches('/');
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        format!("ws://{}", base.trim_start_matches("http://"))
    };
    let mut url = format!(
        "{ws_base}/v1/sandboxes/{}/terminal?cols={cols}&rows={rows}",
        a.sandbox
    );
    if let Some(s) = &a.session {
        url.push_str(&format!("&session={s}"));
    }
    let mut req = url.as_str().into_client_request().context("terminal URL")?;
    if let Some(t) = &a.server.token {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {t}")).context("token")?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("opening the terminal")?;
    let (mut tx, mut rx) = ws.split();
    let _raw = RawMode::enter();
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .context("SIGWINCH")?;
    let mut code = 0;
    loop {
        tokio::select! {
            n = stdin.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
            _ = winch.recv() => {
                let (cols, rows) = window();
                let msg = json!({ "type": "resize", "cols": cols, "rows": rows }).to_string();
                let _ = tx.send(Message::Text(msg.into())).await;
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&b);
                    let _ = out.flush();
                }
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                        && v["type"] == "exit"
                    {
                        code = v["code"].as_i64().map_or(1, |c| i32::try_from(c).unwrap_or(1));
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    Ok(code)
}

/// `hybox ps`.
///
/// # Errors
/// API errors.
pub async fn ps(a: PsArgs) -> anyhow::Result<i32> {
    let client = Client::new(&a.server.server, a.server.token.clone());
    let v = client
        .call(
            Method::GET,
            &format!("/v1/sandboxes/{}/processes", a.sandbox),
            None,
        )
        .await?;
    if a.server.json {
        println!("{v:#}");
        return Ok(0);
    }
    println!(
        "{:<20} {:>7} {:<10} {:>5}  COMMAND",
        "ID", "PID", "STATUS", "EXIT"
    );
    for p in v["processes"].as_array().into_iter().flatten() {
        println!(
            "{:<20} {:>7} {:<10} {:>5}  {}",
            p["id"].as_str().unwrap_or(""),
            p["pid"],
            p["status"].as_str().unwrap_or(""),
            p["exitCode"]
                .as_i64()
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            p["command"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

/// `hybox expose`.
///
/// # Errors
/// API errors.
pub async fn expose(a: ExposeArgs) -> anyhow::Result<i32> {
    let client = Client::new(&a.server.server, a.server.token.clone());
    let path = format!("/v1/sandboxes/{}/ports", a.sandbox);
    if a.remove {
        client
            .call(Method::DELETE, &format!("{path}/{}", a.port), None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(0);
    }
    let mut body = json!({ "port": a.port });
    if let Some(n) = &a.name {
        body["name"] = json!(n);
    }
    let v = client.call(Method::POST, &path, Some(&body)).await?;
    if a.server.json {
        println!("{v:#}");
    } else {
        let Some(url) = v["url"].as_str() else {
            bail!("unexpected answer: {v}");
        };
        println!("{url}");
        if let Some(p) = v["previewPath"].as_str() {
            println!("{}{p}", a.server.server.trim_end_matches('/'));
        }
    }
    Ok(0)
}
