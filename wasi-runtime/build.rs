//! Builds the toolbox guest (`guests/toolbox`, std-only Rust) for `wasm32-wasi` with Debian's
//! rustc 1.63 and `libstd-rust-dev-wasm32`: the rustup toolchain here has no wasm target. The
//! binary lands in OUT_DIR and is embedded; it is never committed. Without that compiler the
//! crate still builds, the toolbox is absent, and the shell route says so when it declines.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=guests/toolbox/src");
    println!("cargo:rerun-if-env-changed=HYBOX_TOOLBOX_RUSTC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("toolbox.wasm");
    let rustc = std::env::var("HYBOX_TOOLBOX_RUSTC").unwrap_or_else(|_| "/usr/bin/rustc".into());
    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "--target",
            "wasm32-wasi",
            "-C",
            "strip=symbols",
        ])
        .arg("guests/toolbox/src/main.rs")
        .arg("-o")
        .arg(&out)
        // Cargo's environment for build scripts points at the rustup toolchain's libraries.
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status();
    let ok = matches!(status, Ok(s) if s.success());
    if !ok {
        println!(
            "cargo:warning=toolbox guest not built ({rustc} --target wasm32-wasi failed: \
             install Debian's rustc and libstd-rust-dev-wasm32); shell commands will be declined"
        );
        std::fs::write(&out, b"").expect("write empty toolbox placeholder");
    }
    println!("cargo:rustc-env=HYBOX_TOOLBOX_WASM={}", out.display());
}
