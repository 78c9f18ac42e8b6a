//! The `hybox` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use hybox_host::commands::{self, Cli, Command};
use hybox_host::server::{self, ServeConfig};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HYBOX_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hybox: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(70);
        }
    };
    let result: anyhow::Result<i32> = runtime.block_on(async move {
        match cli.command {
            Command::Serve {
                listen,
                token,
                lazy,
                pool_size,
                max_instances,
                fs_mode,
                sweep_interval_ms,
                snapshot_zstd_level,
                snapshot_block_kib,
                containers,
                dirs,
            } => {
                let container_config = containers.config(&dirs.data_dir(), &dirs.cache_dir())?;
                server::run(ServeConfig {
                    listen,
                    data_dir: dirs.data_dir(),
                    cache_dir: dirs.cache_dir(),
                    token,
                    eager: !lazy,
                    pool_size,
                    max_instances,
                    fs_mode,
                    sweep_interval: std::time::Duration::from_millis(sweep_interval_ms.max(50)),
                    snapshot_zstd_level,
                    snapshot_block_kib,
                    containers: container_config,
                    preview_domain: containers.preview_domain.clone(),
                })
                .await?;
                Ok(0)
            }
            Command::Prepare { dirs } => {
                let cache = dirs.cache_dir();
                tokio::task::spawn_blocking(move || commands::prepare::run(&cache)).await??;
                Ok(0)
            }
            Command::Exec(a) => commands::client_verbs_exec(a).await,
            Command::Run(a) => commands::client_verbs_run(a).await,
            Command::Sessions(a) => commands::client_verbs_sessions(a).await,
            Command::Ls { server } => commands::client_verbs_ls(server).await,
            Command::Rm { sandbox, server } => commands::client_verbs_rm(&sandbox, server).await,
            Command::Snapshot(a) => commands::snapshot::snapshot(a).await,
            Command::Fork(a) => commands::snapshot::fork(a).await,
            Command::Bench(a) => commands::bench::run(a).await,
            Command::Image {
                args,
                image_dir,
                json,
                dirs,
            } => {
                let dir = image_dir.unwrap_or_else(|| dirs.cache_dir().join("images"));
                tokio::task::spawn_blocking(move || commands::image::run(args, &dir, json))
                    .await??;
                Ok(0)
            }
            Command::Shell(a) => commands::shell::shell(a).await,
            Command::Ps(a) => commands::shell::ps(a).await,
            Command::Expose(a) => commands::shell::expose(a).await,
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("hybox: {}", commands::describe(&e));
            std::process::ExitCode::from(1)
        }
    }
}
