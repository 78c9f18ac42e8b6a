//! `hybox serve`: binds, loads state, serves HTTP/1.1 until a shutdown signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use hybox_wasi_runtime::EngineOptions;

use crate::api::{self, AppState};
use crate::backend::wasi::WasiBackend;
use crate::sandbox::Registry;
use crate::snapshots::Snapshots;
use crate::volumes::Volumes;
use crate::workspaces::{FsModeChoice, Workspaces};

/// How long a new sandbox keeps its unused spare interpreters.
const SPARE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Sandboxes and their files.
    pub data_dir: PathBuf,
    /// Guest artifacts and precompiled code.
    pub cache_dir: PathBuf,
    /// Bearer token; required when `listen` is not loopback.
    pub token: Option<String>,
    /// Load the wasm route at start rather than on first use.
    pub eager: bool,
    /// Spare interpreter pairs kept ready for new sandboxes.
    pub pool_size: usize,
    /// Most guest instances alive at once (contexts, spares, running programs).
    pub max_instances: u32,
    /// How workspaces are provided (FUSE views or plain directories).
    pub fs_mode: FsModeChoice,
    /// How often the sweeper runs (idle spares, expired snapshots).
    pub sweep_interval: std::time::Duration,
    /// zstd level of snapshot images.
    pub snapshot_zstd_level: i32,
    /// Data block size of snapshot images, KiB.
    pub snapshot_block_kib: u32,
    /// The container route.
    pub containers: crate::backend::container::ContainerConfig,
    /// Domain of host-style preview URLs.
    pub preview_domain: String,
}

/// Runs the server until SIGINT/SIGTERM.
///
/// # Errors
/// When the address cannot be bound, the data dir cannot be opened, or the configuration is
/// unsafe (non-loopback without a token).
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    if !config.listen.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
        bail!(
            "refusing to listen on {} without a token: pass --token or set HYBOX_TOKEN",
            config.listen
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let mut workspaces = Workspaces::open(&config.data_dir, config.fs_mode)?;
    let set = workspaces.set_write_options(hybox_fs_layer::image::WriteOptions {
        compression_level: config.snapshot_zstd_level,
        block_size: config.snapshot_block_kib.saturating_mul(1024),
    });
    if let Err(e) = set {
        workspaces.shutdown();
        return Err(e.context("--snapshot-zstd-level / --snapshot-block-kib"));
    }
    let workspaces = Arc::new(workspaces);
    // From here on a failure must unmount what was mounted.
    let result = serve_with(config, workspaces.clone()).await;
    workspaces.shutdown();
    result
}

async fn serve_with(config: ServeConfig, workspaces: Arc<Workspaces>) -> anyhow::Result<()> {
    let volumes = Arc::new(
        Volumes::open(&config.data_dir, workspaces.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("opening volumes")?,
    );
    let registry = Registry::open(&config.data_dir, workspaces.clone(), volumes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("opening data dir {}", config.data_dir.display()))?;
    let snapshots = Snapshots::open(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("opening snapshot records")?;
    let wasi = WasiBackend::new(
        config.cache_dir.clone(),
        EngineOptions {
            max_instances: config.max_instances,
            ..EngineOptions::default()
        },
        config.data_dir.join("pool"),
        config.pool_size,
        workspaces,
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let cc = config.containers.clone();
    let containers = Arc::new(
        tokio::task::spawn_blocking(move || crate::backend::container::Containers::open(cc))
            .await?,
    );
    let state = Arc::new(AppState::new(
        registry,
        wasi,
        snapshots,
        config.token.clone(),
        containers.clone(),
        crate::api::Preview {
            domain: config.preview_domain.clone(),
            scheme: "http".into(),
            port: Some(addr.port()),
        },
    ));
    crate::api::collect_images(&state).await;
    // Sandboxes that asked for a warm container get it now.
    crate::api::start_kept_alive(&state).await;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), auth = config.token.is_some(), "hybox serve listening");
    // Machine-readable readiness line for scripts and tests (`--listen 127.0.0.1:0`).
    println!("hybox listening on http://{addr}");
    if config.eager {
        let s = state.clone();
        tokio::spawn(async move {
            let _ = s.wasi.runtime().await;
        });
    }
    let sweeper = state.clone();
    let sweep_interval = config.sweep_interval;
    tokio::spawn(async move {
        // Spares a sandbox took but never used are dropped: they hold memory.
        let mut tick = tokio::time::interval(sweep_interval);
        loop {
            tick.tick().await;
            for sb in sweeper.registry.list().await {
                sb.expire_spare(SPARE_TTL);
            }
            crate::api::expire_snapshots(&sweeper).await;
            sweeper
                .containers
                .sweep_idle(&sweeper.registry.list().await)
                .await;
        }
    });
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(api::serve(state, req).await) }
                    });
                    if let Err(e) = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
        }
    }
    containers.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
}
