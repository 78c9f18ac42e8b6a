//! `hybox snapshot create|restore|ls|rm|export|import` and `hybox fork`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::ServerArgs;
use crate::client::Client;

/// `hybox snapshot ...`
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub verb: SnapshotVerb,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What to do with snapshots.
#[derive(Debug, Subcommand)]
pub enum SnapshotVerb {
    /// Snapshot a sandbox's workspace (or a directory in it).
    Create {
        /// Sandbox id.
        sandbox: String,
        /// Directory to snapshot (guest path; default `/workspace`).
        #[arg(long)]
        dir: Option<String>,
        /// A label.
        #[arg(long)]
        name: Option<String>,
        /// Seconds until it is removed automatically.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Restore a snapshot into a sandbox (the one it was taken of, or another).
    Restore {
        /// Sandbox id.
        sandbox: String,
        /// Snapshot id.
        snapshot: String,
        /// Directory to restore into (default: the one it was taken of).
        #[arg(long)]
        dir: Option<String>,
    },
    /// List snapshots (of one sandbox, or all).
    Ls {
        /// Sandbox id.
        sandbox: Option<String>,
    },
    /// Delete a snapshot.
    Rm {
        /// Snapshot id.
        snapshot: String,
    },
    /// Save a snapshot as one `.sqfs` file (mountable with `mount -t squashfs` or
    /// `squashfuse`, readable with `unsquashfs`).
    Export {
        /// Snapshot id.
        snapshot: String,
        /// Output file.
        file: PathBuf,
    },
    /// Make a snapshot from a `.sqfs` file (for instance one exported on another host).
    Import {
        /// The `.sqfs` file.
        file: PathBuf,
        /// A label.
        #[arg(long)]
        name: Option<String>,
    },
}

/// `hybox fork SANDBOX [--count N]`
#[derive(Debug, Args)]
pub struct ForkArgs {
    /// Sandbox to fork.
    pub sandbox: String,
    /// How many copies.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Ids for the copies (repeatable; default: generated).
    #[arg(long = "id")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn spinner(msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

fn bytes_bar(msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(msg.to_owned());
    pb
}

fn print_snapshot(v: &Value) {
    println!(
        "{:<24} {:<20} {:>8} {:>10} {:>4} {:<24} {}",
        v["id"].as_str().unwrap_or(""),
        v["sandboxId"].as_str().unwrap_or("-"),
        v["files"],
        human(v["size"].as_u64().unwrap_or(0)),
        v["layerCount"],
        v["createdAt"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or("")
    );
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// Runs `hybox snapshot ...`.
///
/// # Errors
/// Connection, API and local file errors.
pub async fn snapshot(a: SnapshotArgs) -> anyhow::Result<i32> {
    let c = Client::new(&a.server.server, a.server.token.clone());
    let quiet = a.server.json;
    let v = match a.verb {
        SnapshotVerb::Create {
            sandbox,
            dir,
            name,
            ttl,
        } => {
            let pb = spinner(&format!("snapshotting {sandbox}"), quiet);
            let bar = pb.clone();
            let mut last = None;
            let streamed = c
                .stream(
                    &format!("/v1/sandboxes/{sandbox}/snapshots"),
                    &json!({ "dir": dir, "name": name, "ttl": ttl }),
                    |event, data| match event {
                        "progress" => bar.set_message(format!(
                            "snapshotting {sandbox}: {} files, {}",
                            data["files"],
                            human(data["bytes"].as_u64().unwrap_or(0))
                        )),
                        "complete" | "error" => last = Some((event == "complete", data)),
                        _ => {}
                    },
                )
                .await;
            pb.finish_and_clear();
            streamed?;
            let v = match last {
                Some((true, v)) => Ok(v),
                Some((false, e)) => Err(anyhow::anyhow!(
                    "{}: {}",
                    e["code"].as_str().unwrap_or("ERROR"),
                    e["message"].as_str().unwrap_or("")
                )),
                None => Err(anyhow::anyhow!(
                    "the server closed the stream without a result"
                )),
            };
            let v = v?;
            if !quiet {
                println!(
                    "{}  {} files, {} stored in {} layer(s), {:.1} ms",
                    v["id"].as_str().unwrap_or(""),
                    v["files"],
                    human(v["size"].as_u64().unwrap_or(0)),
                    v["layerCount"],
                    v["ms"].as_f64().unwrap_or(0.0)
                );
            }
            v
        }
        SnapshotVerb::Restore {
            sandbox,
            snapshot,
            dir,
        } => {
            let pb = spinner(&format!("restoring {snapshot} into {sandbox}"), quiet);
            let v = c
                .call(
                    Method::POST,
                    &format!("/v1/sandboxes/{sandbox}/snapshots/{snapshot}/restore"),
                    Some(&json!({ "dir": dir })),
                )
                .await;
            pb.finish_and_clear();
            let v = v?;
            if !quiet {
                println!(
                    "restored {snapshot} into {sandbox}:{} ({}, {:.1} ms)",
                    v["dir"].as_str().unwrap_or(""),
                    v["restoreMode"].as_str().unwrap_or(""),
                    v["ms"].as_f64().unwrap_or(0.0)
                );
            }
            v
        }
        SnapshotVerb::Ls { sandbox } => {
            let path = match &sandbox {
                Some(s) => format!("/v1/sandboxes/{s}/snapshots"),
                None => "/v1/snapshots".to_owned(),
            };
            let v = c.call(Method::GET, &path, None).await?;
            if !quiet {
                println!(
                    "{:<24} {:<20} {:>8} {:>10} {:>4} {:<24} NAME",
                    "ID", "SANDBOX", "FILES", "SIZE", "LAYR", "CREATED"
                );
                for s in v["snapshots"].as_array().cloned().unwrap_or_default() {
                    print_snapshot(&s);
                }
            }
            v
        }
        SnapshotVerb::Rm { snapshot } => {
            let v = c
                .call(Method::DELETE, &format!("/v1/snapshots/{snapshot}"), None)
                .await?;
            if !quiet {
                println!("removed {snapshot}");
            }
            v
        }
        SnapshotVerb::Export { snapshot, file } => {
            let pb = bytes_bar(&format!("exporting {snapshot}"), quiet);
            let bar = pb.clone();
            let n = c
                .download(
                    &format!("/v1/snapshots/{snapshot}/export"),
                    &file,
                    move |done, total| {
                        if let Some(t) = total {
                            bar.set_length(t);
                        }
                        bar.set_position(done);
                    },
                )
                .await;
            pb.finish_and_clear();
            let n = n?;
            if !quiet {
                println!("wrote {} ({})", file.display(), human(n));
            }
            json!({ "id": snapshot, "file": file, "bytes": n })
        }
        SnapshotVerb::Import { file, name } => {
            let pb = bytes_bar(&format!("importing {}", file.display()), quiet);
            let bar = pb.clone();
            let mut path = "/v1/snapshots/import".to_owned();
            if let Some(n) = &name {
                path.push_str("?name=");
                path.push_str(&percent_encode(n));
            }
            let v = c
                .upload(&path, &file, move |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await;
            pb.finish_and_clear();
            let v = v?;
            if !quiet {
                println!(
                    "{}  {} files, {}",
                    v["id"].as_str().unwrap_or(""),
                    v["files"],
                    human(v["size"].as_u64().unwrap_or(0))
                );
            }
            v
        }
    };
    if quiet {
        println!("{v:#}");
    }
    Ok(0)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `hybox fork`.
///
/// # Errors
/// Connection and API errors.
pub async fn fork(a: ForkArgs) -> anyhow::Result<i32> {
    let c = Client::new(&a.server.server, a.server.token.clone());
    let body = if a.ids.is_empty() {
        json!({ "count": a.count })
    } else {
        json!({ "ids": a.ids })
    };
    let pb = spinner(&format!("forking {}", a.sandbox), a.server.json);
    let v = c
        .call(
            Method::POST,
            &format!("/v1/sandboxes/{}/fork", a.sandbox),
            Some(&body),
        )
        .await;
    pb.finish_and_clear();
    let v = v?;
    if a.server.json {
        println!("{v:#}");
    } else {
        for s in v["sandboxes"].as_array().cloned().unwrap_or_default() {
            println!("{}", s["id"].as_str().unwrap_or(""));
        }
        eprintln!(
            "{} fork(s) of {} in {:.1} ms ({})",
            v["count"],
            a.sandbox,
            v["ms"].as_f64().unwrap_or(0.0),
            v["restoreMode"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}
