#!/usr/bin/env bash
# Prepares everything (see setup.sh) and runs every check and the whole test suite: formatting,
# lints, the dependency license policy, unit tests and end-to-end tests against a real server.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
# Tests share one guest cache so each test server starts in milliseconds.
export HYBOX_CACHE_DIR=${HYBOX_CACHE_DIR:-${HYBOX_DATA_DIR:-$HOME/.local/share/hybox}/cache}

if [ "$(id -u)" = 0 ]; then
  # The rootless end-to-end test runs a server as this ordinary user, with a cgroup delegated
  # to it. Users mount FUSE through /dev/fuse (Debian's default mode 0666; some VMs ship 0600).
  say "preparing the rootless container test (user hybox-rootless, delegated cgroup)"
  id hybox-rootless >/dev/null 2>&1 ||
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin hybox-rootless
  ./scripts/delegate-cgroups.sh hybox-rootless
  [ "$(stat -c %a /dev/fuse)" = 666 ] || chmod 0666 /dev/fuse
  export HYBOX_TEST_ROOTLESS_USER=hybox-rootless
fi

say "formatting"
cargo fmt --all --check
say "lints"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
say "dependency licenses (Apache-2.0 OR MIT compatible only)"
python3 scripts/check-licenses.py
say "tests"
cargo test --release --workspace --locked
