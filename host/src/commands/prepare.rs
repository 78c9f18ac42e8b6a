//! `hybox prepare`: fetch, verify and precompile the guests, with a progress spinner.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use hybox_wasi_runtime::{EngineOptions, Runtime, artifacts};

/// Makes the wasm route ready in `cache_dir`; prints what it did and how long loading took.
///
/// # Errors
/// When a guest cannot be fetched, verified or compiled.
pub fn run(cache_dir: &Path) -> anyhow::Result<()> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {msg}",
    )?);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message("checking guest artifacts");
    let say = |line: &str| {
        if bar.is_hidden() {
            // Not a terminal (CI logs): plain lines instead of a spinner.
            eprintln!("  {line}");
        } else {
            bar.println(format!("  {line}"));
        }
        bar.set_message(line.to_owned());
    };
    let files = artifacts::ensure(cache_dir, &say)?;
    bar.set_message("loading guests");
    let rt = Runtime::new(files, cache_dir, EngineOptions::default(), &say)?;
    bar.finish_and_clear();
    for (name, compiled, ms) in &rt.load_report.modules {
        let how = if *compiled {
            "compiled and cached"
        } else {
            "loaded from cache"
        };
        println!("{name}: {how} in {ms:.1} ms");
    }
    println!("wasm route ready (cache: {})", cache_dir.display());
    Ok(())
}
