//! `hybox bench`: cold-start measurements side by side with peers.

use clap::Args;

/// Options of `hybox bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios to run (default: cold-start).
    pub scenarios: Vec<String>,
    /// Measured runs per case.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Warm-up runs per case (discarded).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Runs the benchmark.
///
/// # Errors
/// When a case cannot be set up.
pub async fn run(_a: BenchArgs) -> anyhow::Result<i32> {
    anyhow::bail!("bench is being written")
}
