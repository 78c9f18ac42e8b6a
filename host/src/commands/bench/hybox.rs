//! hybox's side of the bench: the `hybox serve` processes it starts and the timed requests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::client::Client;

/// How long a server may take to print its address: it binds before loading anything.
const LISTEN_LIMIT: Duration = Duration::from_secs(60);

/// How long the warm server may take to load the wasm route: minutes when the guest cache is
/// cold and Cranelift compiles the Python guest, about a second when it is warm.
const READY_LIMIT: Duration = Duration::from_secs(900);

/// A `hybox serve` started by the bench, killed when stopped or dropped.
#[derive(Debug)]
pub struct BenchServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its stderr, kept for the error message when it dies.
    log: PathBuf,
    /// Kept open: a closed stdout would make a later write of the server fail.
    _stdout: BufReader<ChildStdout>,
}

impl BenchServer {
    /// Spawns `exe serve` on loopback port 0 with `data_dir` and `cache_dir`, and returns once
    /// it printed its address (the listener is bound; the wasm route may still be loading).
    ///
    /// # Errors
    /// When the process cannot start or exits before it listens.
    pub async fn spawn(exe: &Path, data_dir: &Path, cache_dir: &Path) -> anyhow::Result<Self> {
        let log = data_dir.with_extension("log");
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("create server log {}", log.display()))?;
        let mut command = Command::new(exe);
        // The servers run with the defaults a new user gets: no HYBOX_* setting of the bench's
        // own environment (a token would even lock the bench's client out).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HYBOX_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--cache-dir")
            .arg(cache_dir)
            .env("HYBOX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {} serve", exe.display()))?;
        let stdout = child.stdout.take().context("server stdout was not piped")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(LISTEN_LIMIT, stdout.read_line(&mut line)).await;
        let base = line
            .trim()
            .strip_prefix("hybox listening on ")
            .map(str::to_owned);
        match (read, base) {
            (Ok(Ok(_)), Some(base)) => Ok(Self {
                child,
                base,
                log,
                _stdout: stdout,
            }),
            (Err(_), _) => bail!(
                "hybox serve printed no address within {LISTEN_LIMIT:?}: {}",
                log_tail(&log)
            ),
            (Ok(Err(e)), _) => Err(e).context("read the server's address line"),
            (Ok(Ok(_)), None) => bail!(
                "hybox serve did not start (first line {line:?}): {}",
                log_tail(&log)
            ),
        }
    }

    /// The server's process id.
    ///
    /// # Errors
    /// When it has already exited.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server has exited")
    }

    /// Why the server is no longer running (its exit status and the end of its log), or
    /// `None` while it runs.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the bench's server exited ({status}): {}",
                log_tail(&self.log)
            )),
            Ok(None) | Err(_) => None,
        }
    }

    /// Waits until `GET /v1/health` says the wasm route is `ready`.
    ///
    /// # Errors
    /// When the route failed to load, the server died, or it took longer than [`READY_LIMIT`].
    pub async fn wait_ready(&mut self, client: &Client) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("hybox serve exited ({status}): {}", log_tail(&self.log));
            }
            // A failed health call while loading is retried: only the deadline ends the wait.
            if let Ok(h) = client.call(Method::GET, "/v1/health", None).await {
                match h["wasi"].as_str() {
                    Some("ready") => return Ok(()),
                    Some("failed") => {
                        bail!("the wasm route failed to load: {}", log_tail(&self.log))
                    }
                    _ => {}
                }
            }
            if started.elapsed() > READY_LIMIT {
                bail!("the wasm route was not ready after {READY_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server and reaps it.
    pub async fn stop(mut self) {
        // Already gone is fine: either way nothing is left running.
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The last lines of a server log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        format!("(nothing in {})", log.display())
    } else {
        tail
    }
}

/// What a run must have produced.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// `logs.stdout`, concatenated, equals this.
    Stdout(&'static str),
    /// `results[0].text` equals this.
    Text(&'static str),
}

impl Expect {
    /// Checks a run answer.
    ///
    /// # Errors
    /// When the run raised or its output differs.
    pub fn check(self, run: &Value) -> anyhow::Result<()> {
        if !run["error"].is_null() {
            bail!("the code raised: {}", run["error"]);
        }
        match self {
            Self::Stdout(want) => {
                let got = match &run["logs"]["stdout"] {
                    Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                if got != want {
                    bail!("stdout was {got:?}, expected {want:?}");
                }
            }
            Self::Text(want) => {
                let got = run["results"][0]["text"].as_str();
                if got != Some(want) {
                    bail!("results[0].text was {got:?}, expected {want:?} in {run}");
                }
            }
        }
        Ok(())
    }
}

/// `PUT` a sandbox.
///
/// # Errors
/// API errors.
pub async fn create_sandbox(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .call(
            Method::PUT,
            &format!("/v1/sandboxes/{id}"),
            Some(&json!({})),
        )
        .await
        .with_context(|| format!("create sandbox {id}"))?;
    Ok(())
}

/// `POST` a context of `language` in sandbox `id`; its id.
///
/// # Errors
/// API errors.
pub async fn create_context(client: &Client, id: &str, language: &str) -> anyhow::Result<String> {
    let ctx = client
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{id}/contexts"),
            Some(&json!({ "language": language })),
        )
        .await
        .with_context(|| format!("create a {language} context in {id}"))?;
    ctx["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("context answer without an id: {ctx}"))
}

/// `POST .../contexts/{ctx}/run`; the run answer.
///
/// # Errors
/// API errors.
pub async fn run_code(client: &Client, id: &str, ctx: &str, code: &str) -> anyhow::Result<Value> {
    client
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{id}/contexts/{ctx}/run"),
            Some(&json!({ "code": code })),
        )
        .await
        .with_context(|| format!("run {code:?} in {id}/{ctx}"))
}

/// `DELETE` a sandbox; outside the timed region, so the warm server does not pile up contexts.
///
/// # Errors
/// API errors.
pub async fn delete_sandbox(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
        .await
        .with_context(|| format!("delete sandbox {id}"))?;
    Ok(())
}

/// What a user does first: new sandbox, new context, one run. Returns the time of the three
/// requests together and the run answer.
///
/// # Errors
/// API errors.
pub async fn new_sandbox_run(
    client: &Client,
    id: &str,
    language: &str,
    code: &str,
) -> anyhow::Result<(Duration, Value)> {
    let t0 = Instant::now();
    create_sandbox(client, id).await?;
    let ctx = create_context(client, id, language).await?;
    let run = run_code(client, id, &ctx, code).await?;
    Ok((t0.elapsed(), run))
}

/// `POST .../exec`; the time of the request and its answer.
///
/// # Errors
/// API errors.
pub async fn exec(client: &Client, id: &str, command: &str) -> anyhow::Result<(Duration, Value)> {
    let t0 = Instant::now();
    let answer = client
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{id}/exec"),
            Some(&json!({ "command": command })),
        )
        .await
        .with_context(|| format!("exec {command:?} in {id}"))?;
    Ok((t0.elapsed(), answer))
}

/// A server started from nothing and asked for one Python result: spawn → listening → sandbox
/// → context (waits for the route the server loads in the background) → run. The time runs
/// from just before the spawn to the run answer; the stop and the cleanup are outside it.
///
/// # Errors
/// Spawn and API errors, or a wrong answer.
pub async fn cold_server_run(
    exe: &Path,
    data_dir: &Path,
    cache_dir: &Path,
) -> anyhow::Result<Duration> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let t0 = Instant::now();
    let server = BenchServer::spawn(exe, data_dir, cache_dir).await?;
    // A fresh client: a first user has no pooled connection to this new server.
    let client = Client::new(&server.base, None);
    let answer = new_sandbox_run(&client, "bench-cold", "python", "print(1+1)").await;
    let elapsed = t0.elapsed();
    // SIGTERM, so it unmounts its workspaces (a killed server leaves a dead mount behind).
    super::fs::stop_server(server, data_dir).await;
    let _ = std::fs::remove_dir_all(data_dir);
    let _ = std::fs::remove_file(data_dir.with_extension("log"));
    Expect::Stdout("2\n").check(&answer?.1)?;
    Ok(elapsed)
}

/// Why an error answer means the server cannot do this here, rather than that it failed:
/// `ROUTE_UNAVAILABLE` or `RUNTIME_UNAVAILABLE`, any 501 or 503, or a 404 `ROUTE_NOT_FOUND`
/// or `NOT_FOUND` (a server without the endpoint). The reason to skip the cases with, or `None`.
#[must_use]
pub fn unavailable(e: &anyhow::Error) -> Option<String> {
    let f = e.downcast_ref::<crate::client::ApiFailure>()?;
    let declined = matches!(f.code.as_str(), "ROUTE_UNAVAILABLE" | "RUNTIME_UNAVAILABLE")
        || matches!(f.status, 501 | 503)
        || (f.status == 404 && matches!(f.code.as_str(), "ROUTE_NOT_FOUND" | "NOT_FOUND"));
    declined.then(|| {
        format!(
            "the server answered {} ({}): {}",
            f.code, f.status, f.message
        )
    })
}

/// `POST .../exec {"command": "/bin/true", "runtime": "container"}`; the time of the request
/// and its answer, checked: `exitCode` 0 and `route` `container`.
///
/// # Errors
/// API errors or another answer.
pub async fn container_true(client: &Client, id: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let answer = client
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{id}/exec"),
            Some(&json!({ "command": "/bin/true", "runtime": "container" })),
        )
        .await
        .with_context(|| format!("exec /bin/true in the container of {id}"))?;
    let elapsed = t0.elapsed();
    if answer["exitCode"] != 0 || answer["route"] != "container" {
        bail!("unexpected container exec answer: {answer}");
    }
    Ok(elapsed)
}

/// `POST .../ports {"port": port}`; the preview token of the answer.
///
/// # Errors
/// API errors, or an answer without a token.
pub async fn expose_port(client: &Client, id: &str, port: u16) -> anyhow::Result<String> {
    let answer = client
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{id}/ports"),
            Some(&json!({ "port": port })),
        )
        .await
        .with_context(|| format!("expose port {port} of {id}"))?;
    answer["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("port answer without a token: {answer}"))
}

/// `POST .../processes {"command", "processId"}`: starts a background process.
///
/// # Errors
/// API errors.
pub async fn start_process(
    client: &Client,
    id: &str,
    process: &str,
    command: &str,
) -> anyhow::Result<()> {
    client
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{id}/processes"),
            Some(&json!({ "command": command, "processId": process })),
        )
        .await
        .with_context(|| format!("start process {process} ({command:?}) in {id}"))?;
    Ok(())
}

/// `DELETE .../processes/{process}`: kills it.
///
/// # Errors
/// API errors.
pub async fn kill_process(client: &Client, id: &str, process: &str) -> anyhow::Result<()> {
    client
        .call(
            Method::DELETE,
            &format!("/v1/sandboxes/{id}/processes/{process}"),
            None,
        )
        .await
        .with_context(|| format!("kill process {process} in {id}"))?;
    Ok(())
}

/// The container image's file as `GET /v1/health` reports it (`containers.image.path`, or
/// `container.image.path`), when it does.
///
/// # Errors
/// API errors.
pub async fn container_image(client: &Client) -> anyhow::Result<Option<PathBuf>> {
    let health = client.call(Method::GET, "/v1/health", None).await?;
    Ok(["containers", "container"]
        .iter()
        .find_map(|k| health[*k]["image"]["path"].as_str())
        .map(PathBuf::from))
}
