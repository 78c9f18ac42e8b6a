//! `POST /v1/sandboxes/{id}/git/checkout`: `gitCheckout(repoUrl, {branch, depth, targetDir})`,
//! run by `git` in the sandbox's container. Arguments go to git as an argument vector, never
//! through a shell, and options cannot be smuggled in as the URL or the directory.

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use hybox_container_fallback::agent::{ExecEvent, ExecSpec};

use super::AppState;
use super::code::limits;
use super::error::ApiError;
use super::http::{self, Body};
use crate::sandbox::SandboxId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CheckoutReq {
    repo_url: String,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    depth: Option<u32>,
    #[serde(default)]
    target_dir: Option<String>,
    #[serde(default, alias = "timeout")]
    timeout_ms: Option<u64>,
    #[serde(default, alias = "sessionId")]
    session: Option<String>,
}

/// The directory a clone of `url` gets by default: the last path part without `.git`.
fn default_dir(url: &str) -> Option<String> {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()?
        .trim_end_matches(".git");
    (!last.is_empty() && last != "." && last != "..").then(|| last.to_owned())
}

fn check(r: &CheckoutReq) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::InvalidRequest(m));
    if r.repo_url.is_empty()
        || r.repo_url.starts_with('-')
        || r.repo_url.chars().any(char::is_control)
    {
        return bad(format!("repoUrl {:?} is not a repository URL", r.repo_url));
    }
    // `ext::` runs commands; `fd::` reads descriptors. Neither is a repository.
    let lower = r.repo_url.to_ascii_lowercase();
    if lower.starts_with("ext::") || lower.starts_with("fd::") {
        return bad("repoUrl: the ext:: and fd:: transports are refused".into());
    }
    if let Some(b) = &r.branch
        && (b.is_empty() || b.starts_with('-') || b.chars().any(|c| c.is_control() || c == ' '))
    {
        return bad(format!("branch {b:?} is not a branch name"));
    }
    if let Some(d) = &r.target_dir
        && (d.is_empty() || d.starts_with('-') || d.contains('\0'))
    {
        return bad(format!("targetDir {d:?} is not a directory"));
    }
    if r.depth == Some(0) {
        return bad("depth must be at least 1".into());
    }
    Ok(())
}

pub(super) async fn checkout(
    state: &AppState,
    id: &SandboxId,
    req: Request<Bytes>,
) -> Result<Response<Body>, ApiError> {
    let sb = state.registry.get(id).await?;
    let r: CheckoutReq = http::parse_json(req.body())?;
    check(&r)?;
    let limits = limits(r.timeout_ms.or(Some(10 * 60 * 1000)))?;
    let (cwd, session_env) = super::processes::session_start(&sb, r.session.as_deref())?;
    let target = match &r.target_dir {
        Some(d) if d.starts_with('/') => d.clone(),
        Some(d) => format!("{}/{d}", cwd.trim_end_matches('/')),
        None => format!(
            "{}/{}",
            cwd.trim_end_matches('/'),
            default_dir(&r.repo_url).ok_or_else(|| ApiError::InvalidRequest(
                "cannot name a directory after this repoUrl: give targetDir".into()
            ))?
        ),
    };
    let mut argv = vec![
        "git".to_owned(),
        "-c".to_owned(),
        "protocol.ext.allow=never".to_owned(),
        "clone".to_owned(),
        "--quiet".to_owned(),
    ];
    if let Some(b) = &r.branch {
        argv.extend(["--branch".to_owned(), b.clone()]);
    }
    if let Some(d) = r.depth {
        argv.extend(["--depth".to_owned(), d.to_string()]);
    }
    argv.extend(["--".to_owned(), r.repo_url.clone(), target.clone()]);
    let handle = state.containers.handle(&sb).await?;
    let env = super::processes::container_env(
        &handle.base_env,
        session_env,
        [("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned())],
    );
    let started = std::time::Instant::now();
    let mut stream = handle
        .client
        .exec(ExecSpec {
            argv,
            env,
            cwd: cwd.clone(),
            stdin: Vec::new(),
            state_fd: false,
            tail: None,
        })
        .await
        .map_err(super::processes::agent_err)?;
    let (mut stdout, mut stderr, mut code) = (Vec::new(), Vec::new(), None);
    let run = async {
        while let Some(ev) = stream.next().await.map_err(super::processes::agent_err)? {
            match ev {
                ExecEvent::Stdout(b) => stdout.extend(b),
                ExecEvent::Stderr(b) => stderr.extend(b),
                ExecEvent::Exit {
                    code: c, signal, ..
                } => {
                    code = Some(c.unwrap_or_else(|| 128 + signal.unwrap_or(9)));
                }
            }
        }
        Ok::<_, ApiError>(())
    };
    if tokio::time::timeout(limits.timeout, run).await.is_err() {
        return Err(ApiError::Timeout {
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            details: json!({ "stderr": String::from_utf8_lossy(&stderr) }),
        });
    }
    let code = code.unwrap_or(1);
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "success": code == 0,
            "exitCode": code,
            "repoUrl": r.repo_url,
            "branch": r.branch,
            "targetDir": target,
            "stdout": String::from_utf8_lossy(&stdout),
            "stderr": String::from_utf8_lossy(&stderr),
            "durationMs": started.elapsed().as_secs_f64() * 1e3,
            "route": "container",
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str) -> CheckoutReq {
        CheckoutReq {
            repo_url: url.into(),
            branch: None,
            depth: None,
            target_dir: None,
            timeout_ms: None,
            session: None,
        }
    }

    #[test]
    fn urls_and_dirs() {
        assert_eq!(default_dir("https://h/x/repo.git").as_deref(), Some("repo"));
        assert_eq!(default_dir("git@h:x/tool").as_deref(), Some("tool"));
        assert_eq!(default_dir("git://127.0.0.1/r.git/").as_deref(), Some("r"));
        assert!(check(&req("https://h/x.git")).is_ok());
        assert!(check(&req("--upload-pack=touch /x")).is_err());
        assert!(check(&req("ext::sh -c touch% /tmp/x")).is_err());
        let mut r = req("https://h/x.git");
        r.branch = Some("-b".into());
        assert!(check(&r).is_err());
        r.branch = Some("main".into());
        r.depth = Some(0);
        assert!(check(&r).is_err());
    }
}
