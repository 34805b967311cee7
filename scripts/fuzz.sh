#!/usr/bin/env bash
# Fuzzes the host crate (issue 6, "Hostile input"): builds every libFuzzer target in
# host/fuzz with the nightly toolchain and runs each for SECONDS_PER_TARGET (default 30; CI
# runs 20 from scripts/test.sh; run longer locally, e.g. `scripts/fuzz.sh 600`). Fails on any crash, panic,
# timeout or out-of-memory; prints executions per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# No cargo-fuzz needed: the targets are plain libfuzzer-sys binaries, and host/fuzz/Cargo.toml
# puts the coverage instrumentation (`profile-rustflags`, nightly) on the crates worth
# exploring only. A crash leaves its input in host/fuzz/artifacts/<target>/; reproduce it
# with `host/fuzz/target/<triple>/release/<target> <file>`, then add it as a unit test beside
# the code it crashes. New inputs the fuzzer finds go to host/fuzz/target/corpus/<target>/
# (not committed; the committed seeds are host/fuzz/corpus/<target>/, from seeds.py).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
shift || true
fuzz=host/fuzz
all=(query_ingress upstream_response tcp_framing config_toml aks_json)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v c++ >/dev/null 2>&1; then
  # libfuzzer-sys compiles libFuzzer itself (C++).
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
rustc +nightly --version

step "build (release, libFuzzer, coverage on zonegate and its parsers)"
start=$SECONDS
# --target keeps build scripts and proc macros out of the instrumented profile.
cargo +nightly build --manifest-path "$fuzz/Cargo.toml" --release --target "$triple" --bins
echo "built in $((SECONDS - start)) s"
bin=$fuzz/target/$triple/release

max_len() {
  case $1 in
    upstream_response) echo 65536 ;; # one control byte + the largest DNS message
    tcp_framing) echo 140000 ;;      # room for two maximal frames and the split seed
    *) echo 16384 ;;
  esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
  step "fuzz $t for ${secs} s"
  work=$fuzz/target/corpus/$t
  artifacts=$fuzz/artifacts/$t
  log=$fuzz/target/$t.log
  mkdir -p "$work" "$artifacts"
  # The first corpus directory receives new inputs; the committed seeds stay untouched.
  status=0
  "$bin/$t" "$work" "$fuzz/corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    echo "FAILED (exit $status); last lines of $log:"
    tail -40 "$log"
    ls -l "$artifacts"
  fi
  summary+=("$(printf '%-18s %12s execs %8s/s  %-10s %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-}" \
    "$([ "$status" -eq 0 ] && echo ok || echo CRASH)")")
  printf '%s\n' "${summary[-1]}"
done

step "summary (${secs} s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in $fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets clean"
