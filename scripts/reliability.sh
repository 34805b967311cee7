#!/usr/bin/env bash
# Runs the long versions of the reliability scenarios (tests/tests/reliability.rs with
# ZG_RELIABILITY_LONG=1: 60 s outages and overloads, 10 rolling restarts, 100 config reloads
# and 100 policy swaps, ...) one at a time, and writes their measured figures:
#   OUT_DIR/figures.jsonl   one JSON object per scenario
#   OUT_DIR/figures.md      the rows of RELIABILITY.md's table
#   OUT_DIR/test.log        the test output
#
#   scripts/reliability.sh [OUT_DIR] [TEST_FILTER]    OUT_DIR defaults to target/reliability
#
# Loopback only. Takes about ten minutes. Exits non-zero if any scenario fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/reliability}
filter=${2:-}
cd "$root"
mkdir -p "$out"

cargo build -p zonegate --bins
export ZONEGATE_BIN="$root/target/debug/zonegate"
export ZONEGATE_WASM_DIR=${ZONEGATE_WASM_DIR:-$root/target/wasm}
if [ ! -f "$ZONEGATE_WASM_DIR/blocklist.wasm" ] || [ ! -f "$ZONEGATE_WASM_DIR/guest_trap.wasm" ]; then
  bash scripts/build-policies.sh "$ZONEGATE_WASM_DIR"
fi

rm -f "$out/figures.jsonl" "$out/figures.md"
status=0
ZG_RELIABILITY_LONG=1 ZG_RELIABILITY_OUT="$out/figures.jsonl" \
  cargo test -p zonegate-testkit --test reliability -- --test-threads 1 --nocapture $filter \
  >"$out/test.log" 2>&1 || status=$?
grep -E '^test |^test result' "$out/test.log" || true

{
  echo "| scenario | reproduce (\`ZG_RELIABILITY_LONG=1 cargo test -p zonegate-testkit --test reliability -- --exact …\`) | load | duration | sent | answered | lost | peak RSS | fuzz executions | notes |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  cat "$out/figures.md" 2>/dev/null || true
} >"$out/table.md"
echo "figures: $out/table.md (kernel $(uname -r), $(nproc) CPUs, debug build)"
exit $status
