//! Builds the in-container agent (`agent/src/main.rs`, std only) as a static executable for the
//! target, into `$OUT_DIR/hybox-agent`, where `src/agent.rs` embeds it. A failed compile fails
//! the build: there is no placeholder agent.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=agent/src");
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = out_dir.join("hybox-agent");
    let output = Command::new(&rustc)
        .arg(manifest.join("agent/src/main.rs"))
        .args(["--edition", "2021", "--crate-type", "bin"])
        .args(["--crate-name", "hybox_agent"])
        .args(["-C", "opt-level=2"])
        .args(["-C", "target-feature=+crt-static"])
        .args(["-C", "strip=symbols"])
        .args(["--target", &target])
        .arg("-o")
        .arg(&out)
        // Read by `option_env!` in the agent.
        .env(
            "HYBOX_AGENT_VERSION",
            std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run {rustc} to build the agent: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "building the in-container agent (agent/src/main.rs, static for {target}) failed: \
         {}\n{stderr}",
        output.status
    );
    for line in stderr.lines().filter(|l| !l.trim().is_empty()).take(40) {
        println!("cargo:warning=agent: {line}");
    }
}
