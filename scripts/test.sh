#!/usr/bin/env bash
# Runs every test of zonegate on a fresh machine: installs what the tests need (Debian
# packages, the wasm32-wasip2 target), builds the policies to WebAssembly, then runs the
# host's unit and integration tests, the end-to-end tests against the real binary, the
# guest SDK's and policies' native tests, lints, and the deploy manifest validation.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
need=()
for pair in named:bind9 dig:bind9-dnsutils docker-registry:docker-registry skopeo:skopeo ip:iproute2 iptables:iptables kubectl:kubernetes-client; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/usr/bin/$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packaged daemons must not start on install: the tests start their own copies.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

step "policies → WebAssembly (adds the wasm32-wasip2 target if missing)"
export ZONEGATE_WASM_DIR="$root/target/wasm"
bash scripts/build-policies.sh "$ZONEGATE_WASM_DIR"
ls -l "$ZONEGATE_WASM_DIR"

step "format"
cargo fmt --all -- --check

step "build the zonegate binary (used by the end-to-end tests)"
cargo build -p zonegate --bins
export ZONEGATE_BIN="$root/target/debug/zonegate"

step "host and end-to-end tests"
# The reliability scenarios measure latency and loss under load: they run afterwards, one at a
# time, so the rest of the suite does not starve them of the machine's two cores.
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast -E 'not binary(reliability)'
  step "reliability scenarios (one at a time)"
  cargo nextest run -p zonegate-testkit --test reliability --no-fail-fast -j 1
else
  cargo test --workspace --exclude zonegate-testkit --no-fail-fast
  cargo test -p zonegate-testkit --lib --bins --test binary --test node_local --test policies \
    --no-fail-fast
  step "reliability scenarios (one at a time)"
  cargo test -p zonegate-testkit --test reliability --no-fail-fast -- --test-threads 1
fi

step "guest SDK, policies and test guests (native tests)"
cargo test --manifest-path guest-sdk/Cargo.toml
cargo test --manifest-path policies/Cargo.toml
cargo test --manifest-path tests/guests/Cargo.toml --workspace

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path guest-sdk/Cargo.toml --all-targets -- -D warnings
cargo clippy --manifest-path policies/Cargo.toml --all-targets -- -D warnings
cargo clippy --manifest-path tests/guests/Cargo.toml --workspace --all-targets -- -D warnings

step "fuzzing (bounded: 20 s a target; longer locally with scripts/fuzz.sh 600)"
bash scripts/fuzz.sh 20

step "deploy manifests"
# Last, so its closing "N passed, N failed" line is the run's last line.
bash deploy/validate.sh
