//! The wasm backend adapter: loads the guest runtime once in the background (so `hybox serve`
//! answers at once on a cold start) and runs contexts and programs off the async threads.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;

use hybox_wasi_runtime::{EngineOptions, Runtime, artifacts};

use crate::api::error::ApiError;

/// The wasm route's runtime, loaded lazily.
#[derive(Debug)]
pub struct WasiBackend {
    cache_dir: PathBuf,
    options: EngineOptions,
    runtime: OnceCell<Result<Arc<Runtime>, String>>,
}

impl WasiBackend {
    /// A backend that will load its guests from `cache_dir`.
    #[must_use]
    pub fn new(cache_dir: PathBuf, options: EngineOptions) -> Self {
        Self {
            cache_dir,
            options,
            runtime: OnceCell::new(),
        }
    }

    /// The runtime, loading it on first use (fetching and compiling guests if the cache is
    /// empty, which takes minutes once; then tens of milliseconds).
    ///
    /// # Errors
    /// [`ApiError::RuntimeUnavailable`] when the guests cannot be had.
    pub async fn runtime(&self) -> Result<Arc<Runtime>, ApiError> {
        let loaded = self
            .runtime
            .get_or_init(|| async {
                let cache = self.cache_dir.clone();
                let options = self.options.clone();
                let started = std::time::Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let say = |line: &str| tracing::info!(step = line, "preparing the wasm route");
                    let files = artifacts::ensure(&cache, &say)?;
                    Runtime::new(files, &cache, options, &say)
                })
                .await;
                match result {
                    Ok(Ok(rt)) => {
                        for (name, compiled, ms) in &rt.load_report.modules {
                            tracing::info!(module = %name, compiled, ms, "guest loaded");
                        }
                        tracing::info!(
                            ms = started.elapsed().as_secs_f64() * 1e3,
                            "wasm route ready"
                        );
                        Ok(Arc::new(rt))
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "wasm route unavailable");
                        Err(e.to_string())
                    }
                    Err(e) => Err(format!("loader panicked: {e}")),
                }
            })
            .await;
        loaded.clone().map_err(ApiError::RuntimeUnavailable)
    }

    /// Whether the runtime has finished loading (successfully or not).
    #[must_use]
    pub fn state(&self) -> &'static str {
        match self.runtime.get() {
            None => "loading",
            Some(Ok(_)) => "ready",
            Some(Err(_)) => "failed",
        }
    }
}
