#!/usr/bin/env bash
# Builds every WebAssembly component the project ships or tests with, and copies the .wasm
# files into one directory:
#   policies/      the real policies (fqdn_allowlist, blocklist, zone_router)
#   tests/guests/  deliberately bad guests for the host's tests (guest_loop, guest_alloc, ...)
#
#   scripts/build-policies.sh [OUT_DIR]      OUT_DIR defaults to target/wasm in the repository
#
# Release builds for wasm32-wasip2 (the target is added if missing), --locked. Idempotent:
# unchanged files are left alone, changed ones replaced atomically (a watching zonegate never
# reads half a file). Prints nothing unless something fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/wasm}
target=wasm32-wasip2

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Run a command with its output kept back, shown only if it fails.
quietly() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build-policies: failed: $*" >&2
    exit 1
  fi
}

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$target"; then
  quietly rustup target add "$target"
fi

mkdir -p "$out"
# BUILD_WORKSPACES=policies builds only the shipped policies (the container image).
for workspace in ${BUILD_WORKSPACES:-policies tests/guests}; do
  dir="$root/$workspace"
  quietly cargo build --release --locked --target "$target" \
    --manifest-path "$dir/Cargo.toml" --target-dir "$dir/target"
  built=("$dir/target/$target/release/"*.wasm)
  if [ ! -e "${built[0]}" ]; then
    echo "build-policies: no .wasm built in $workspace" >&2
    exit 1
  fi
  for wasm in "${built[@]}"; do
    dest="$out/$(basename "$wasm")"
    if ! cmp -s "$wasm" "$dest"; then
      cp "$wasm" "$dest.tmp"
      mv -f "$dest.tmp" "$dest"
    fi
  done
done
