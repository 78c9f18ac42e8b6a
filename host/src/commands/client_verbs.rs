//! Client verbs: `exec`, `run`, `ls`, `rm`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use http::Method;
use serde_json::{Value, json};

use super::ServerArgs;
use crate::client::{ApiFailure, Client};

/// `hybox exec SANDBOX -- CMD...`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox id (created if it does not exist).
    pub sandbox: String,
    /// The command line (joined with spaces; quote shell syntax as one argument).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// Working directory (guest path).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Environment variables, `NAME=value`, repeatable.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Deadline in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Route: auto, wasi or container.
    #[arg(long, default_value = "auto")]
    pub runtime: String,
    /// Session whose cwd and environment the command uses and changes (default: `default`).
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `hybox run SANDBOX --lang python -c CODE | FILE`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sandbox id (created if it does not exist).
    pub sandbox: String,
    /// A file with the code to run (read on this machine).
    pub file: Option<PathBuf>,
    /// Code to run.
    #[arg(short = 'c', long = "code", conflicts_with = "file")]
    pub code: Option<String>,
    /// python, javascript or typescript.
    #[arg(long, default_value = "python")]
    pub lang: String,
    /// Run in this context instead of the sandbox's default one for the language.
    #[arg(long)]
    pub context: Option<String>,
    /// Deadline in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Where images from rich results are saved.
    #[arg(long, default_value = "hybox-output")]
    pub save_images: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn client(s: &ServerArgs) -> Client {
    Client::new(&s.server, s.token.clone())
}

async fn ensure_sandbox(c: &Client, id: &str) -> anyhow::Result<()> {
    c.call(
        Method::PUT,
        &format!("/v1/sandboxes/{id}"),
        Some(&json!({})),
    )
    .await?;
    Ok(())
}

fn env_map(pairs: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--env {p:?} is not NAME=value"))?;
        m.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(m)
}

/// Runs `exec`, streaming output live; returns the command's exit code.
///
/// # Errors
/// Connection and API errors.
pub async fn exec(a: ExecArgs) -> anyhow::Result<i32> {
    let c = client(&a.server);
    ensure_sandbox(&c, &a.sandbox).await?;
    let mut body = json!({
        "command": a.command.join(" "),
        "env": env_map(&a.env)?,
        "runtime": a.runtime,
    });
    if let Some(cwd) = &a.cwd {
        body["cwd"] = json!(cwd);
    }
    if let Some(t) = a.timeout_ms {
        body["timeoutMs"] = json!(t);
    }
    if let Some(s) = &a.session {
        body["session"] = json!(s);
    }
    let path = format!("/v1/sandboxes/{}/exec", a.sandbox);
    if a.server.json {
        let v = c.call(Method::POST, &path, Some(&body)).await?;
        println!("{v:#}");
        return Ok(v["exitCode"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(1));
    }
    let mut code = 1;
    let mut failure: Option<String> = None;
    c.stream(&path, &body, |event, data| match event {
        "stdout" => {
            let mut out = std::io::stdout();
            let _ = out.write_all(data["data"].as_str().unwrap_or("").as_bytes());
            let _ = out.flush();
        }
        "stderr" => {
            let mut err = std::io::stderr();
            let _ = err.write_all(data["data"].as_str().unwrap_or("").as_bytes());
            let _ = err.flush();
        }
        "complete" => {
            code = data["exitCode"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(1)
        }
        "error" => {
            failure = Some(format!(
                "{}: {}",
                data["code"].as_str().unwrap_or("ERROR"),
                data["message"].as_str().unwrap_or("")
            ))
        }
        _ => {}
    })
    .await?;
    if let Some(f) = failure {
        eprintln!("hybox: {f}");
        return Ok(124);
    }
    Ok(code)
}

/// Runs `run`; returns 0 on success, 1 when the code raised.
///
/// # Errors
/// Connection and API errors.
pub async fn run(a: RunArgs) -> anyhow::Result<i32> {
    let code = match (&a.code, &a.file) {
        (Some(c), _) => c.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("give code with -c or a file"),
    };
    let c = client(&a.server);
    ensure_sandbox(&c, &a.sandbox).await?;
    let mut body = json!({ "code": code, "language": a.lang });
    if let Some(ctx) = &a.context {
        body = json!({ "code": code, "context": ctx });
    }
    if let Some(t) = a.timeout_ms {
        body["timeoutMs"] = json!(t);
    }
    let v = c
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{}/run", a.sandbox),
            Some(&body),
        )
        .await?;
    if a.server.json {
        println!("{v:#}");
    } else {
        print!(
            "{}",
            v["logs"]["stdout"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<String>())
                .unwrap_or_default()
        );
        eprint!(
            "{}",
            v["logs"]["stderr"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<String>())
                .unwrap_or_default()
        );
        let mut saved = 0;
        for (i, r) in v["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            for (key, ext) in [("png", "png"), ("jpeg", "jpg"), ("svg", "svg")] {
                if let Some(data) = r[key].as_str() {
                    std::fs::create_dir_all(&a.save_images)?;
                    let path = a.save_images.join(format!("result-{i}.{ext}"));
                    let bytes = if key == "svg" {
                        data.as_bytes().to_vec()
                    } else {
                        base64::engine::general_purpose::STANDARD.decode(data)?
                    };
                    std::fs::write(&path, bytes)?;
                    println!("[{key} image saved to {}]", path.display());
                    saved += 1;
                }
            }
            // A figure's text is only its repr; everything else is printed.
            if let Some(t) = r["text"].as_str()
                && (saved == 0 || !t.starts_with("<Figure"))
            {
                println!("{t}");
            }
        }
        if let Some(e) = v["error"].as_object() {
            for line in e
                .get("traceback")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                eprintln!("{}", line.as_str().unwrap_or(""));
            }
        }
    }
    Ok(if v["error"].is_null() { 0 } else { 1 })
}

/// `hybox ls`.
///
/// # Errors
/// Connection and API errors.
pub async fn ls(s: ServerArgs) -> anyhow::Result<i32> {
    let v = client(&s).call(Method::GET, "/v1/sandboxes", None).await?;
    if s.json {
        println!("{v:#}");
    } else {
        println!("{:<40} {:<26} CONTEXTS", "ID", "CREATED");
        for sb in v["sandboxes"].as_array().cloned().unwrap_or_default() {
            println!(
                "{:<40} {:<26} {}",
                sb["id"].as_str().unwrap_or(""),
                sb["createdAt"].as_str().unwrap_or(""),
                sb["contexts"]
            );
        }
    }
    Ok(0)
}

/// `hybox rm SANDBOX`.
///
/// # Errors
/// Connection and API errors.
pub async fn rm(id: &str, s: ServerArgs) -> anyhow::Result<i32> {
    let v = client(&s)
        .call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
        .await?;
    if s.json {
        println!("{v:#}");
    } else {
        println!("removed {id}");
    }
    Ok(0)
}

/// `hybox sessions SANDBOX [ls|create|rm|env]`.
///
/// # Errors
/// Connection and API errors.
pub async fn sessions(a: super::SessionsArgs) -> anyhow::Result<i32> {
    use super::SessionsVerb;
    let c = client(&a.server);
    let base = format!("/v1/sandboxes/{}/sessions", a.sandbox);
    let v = match &a.verb {
        SessionsVerb::Ls => c.call(Method::GET, &base, None).await?,
        SessionsVerb::Create { id, cwd, env } => {
            ensure_sandbox(&c, &a.sandbox).await?;
            let mut body = json!({ "env": env_map(env)? });
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            if let Some(cwd) = cwd {
                body["cwd"] = json!(cwd);
            }
            c.call(Method::POST, &base, Some(&body)).await?
        }
        SessionsVerb::Rm { id } => {
            c.call(Method::DELETE, &format!("{base}/{id}"), None)
                .await?
        }
        SessionsVerb::Env { id, env } => {
            c.call(
                Method::POST,
                &format!("{base}/{id}/env"),
                Some(&json!({ "env": env_map(env)? })),
            )
            .await?
        }
    };
    if a.server.json {
        println!("{v:#}");
        return Ok(0);
    }
    match &a.verb {
        SessionsVerb::Ls => {
            println!("{:<24} {:<40} ENV", "ID", "CWD");
            for s in v["sessions"].as_array().cloned().unwrap_or_default() {
                let env = s["env"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<40} {env}",
                    s["id"].as_str().unwrap_or(""),
                    s["cwd"].as_str().unwrap_or("")
                );
            }
        }
        SessionsVerb::Rm { id } => println!("removed session {id}"),
        SessionsVerb::Create { .. } | SessionsVerb::Env { .. } => {
            println!(
                "{} {}",
                v["id"].as_str().unwrap_or(""),
                v["cwd"].as_str().unwrap_or("")
            );
        }
    }
    Ok(0)
}

/// Prints an API failure the way a CLI user wants to read it.
#[must_use]
pub fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ApiFailure>() {
        Some(f) => format!("{} ({}): {}", f.code, f.status, f.message),
        None => format!("{e:#}"),
    }
}
