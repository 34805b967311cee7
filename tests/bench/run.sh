#!/usr/bin/env bash
# Load benchmark: dnsperf against zonegate, unbound and dnsdist in one run, each a caching
# forwarder (one worker/thread, pinned to CPU 1) to the same bind9 `named` (pinned to CPU 0)
# serving a generated zone of 100,000+ names. dnsperf runs on CPU 0 too.
#
# Workloads, per proxy, on a freshly started proxy:
#   hot   1,000 names, warmed once, then queried in a loop for --duration seconds
#   cold  100,000 distinct names never asked before, each once (bounded by --cold-limit seconds)
#   policy  (with --policy FILE, zonegate only) the hot workload again on a fresh zonegate with
#           fqdn-allowlist (FILE, e.g. target/wasm/fqdn_allowlist.wasm) and 20 rules in the path;
#           --policy-cache-for N sets its memoization hint (default 60, the policy's own
#           default; 0 = the guest runs on every query)
# Reported per proxy and workload: qps, answered, lost, NOERROR share, mean latency, proxy CPU
# time per answered query (utime+stime from /proc/PID/stat, delta over the workload ÷ answered)
# and memory (VmRSS and VmHWM after the workload). A Markdown table goes to stdout and --out.
#
# --rounds N repeats the whole sequence N times (each proxy freshly started every round) and
# adds a table of per-round medians and the ratios of the targets: on a shared machine the
# load changes between proxies, and interleaved rounds with medians are what to compare.
# Each round starts with the next proxy in turn (round 1: zonegate, unbound, dnsdist; round 2:
# unbound, dnsdist, zonegate; …): the proxy measured right after another one's cold run
# meets a busier upstream CPU, so a fixed order would always handicap the same proxy.
#
# Usage: tests/bench/run.sh [--only zonegate,unbound,dnsdist] [--duration S] [--cold-limit S]
#                           [--policy FILE [--policy-cache-for N]] [--rounds N] [--out FILE]
# Environment: ZONEGATE_BIN (default target/release/zonegate: `cargo build --release -p zonegate`),
#   BENCH_PORT_BASE (default 25350; ports base … base+6 on 127.0.0.1), BENCH_OUTSTANDING (dnsperf
#   -q, default 100), BENCH_KEEP=1 keeps the work dir (configs, logs, dnsperf outputs).
# Installs dnsperf, unbound, dnsdist, bind9 and dig if missing (as root, without starting them).
# All traffic is on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

only=zonegate,unbound,dnsdist
duration=10
cold_limit=120
out="$root/target/bench/results-$(date +%Y%m%d-%H%M%S).md"
hot_names=1000
cold_names=100000
outstanding=${BENCH_OUTSTANDING:-100}
zonegate_bin=${ZONEGATE_BIN:-$root/target/release/zonegate}
policy=
policy_cache_for=60
rounds=1

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --cold-limit) cold_limit=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --policy) policy=$2; shift 2 ;;
    --policy-cache-for) policy_cache_for=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
IFS=, read -r -a proxies <<< "$only"
if [ -n "$policy" ]; then
  [ -f "$policy" ] || { echo "policy not found: $policy" >&2; exit 2; }
  policy=$(cd "$(dirname "$policy")" && pwd)/$(basename "$policy")
  [[ ",$only," == *,zonegate,* ]] || { echo "--policy needs zonegate in --only" >&2; exit 2; }
fi
for proxy in "${proxies[@]}"; do
  case $proxy in zonegate|unbound|dnsdist) ;; *) echo "unknown proxy: $proxy" >&2; exit 2 ;; esac
done

base=${BENCH_PORT_BASE:-25350}
named_port=$base
declare -A port=([zonegate]=$((base + 1)) [unbound]=$((base + 2)) [dnsdist]=$((base + 3)))
metrics_port=$((base + 4)) health_port=$((base + 5)) ready_port=$((base + 6))

# --- packages ---------------------------------------------------------------------------------
need=()
for pair in dnsperf:dnsperf unbound:unbound dnsdist:dnsdist named:bind9 dig:bind9-dnsutils taskset:util-linux; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Packaged daemons must not start on install: this script starts its own copies.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
  if [ -d /run/systemd/system ]; then
    systemctl disable --now unbound dnsdist named >/dev/null 2>&1 || true
  fi
fi
export PATH=$PATH:/usr/sbin
if [[ ",$only," == *,zonegate,* ]] && [ ! -x "$zonegate_bin" ]; then
  echo "zonegate binary not found at $zonegate_bin: build it (cargo build --release -p zonegate)," >&2
  echo "set ZONEGATE_BIN, or leave it out with --only unbound,dnsdist" >&2
  exit 1
fi

# CPU 0: named and dnsperf; CPU 1: the proxy under test.
if [ "$(nproc)" -ge 2 ]; then
  pin_upstream=(taskset -c 0) pin_proxy=(taskset -c 1)
else
  echo "warning: fewer than 2 CPUs, nothing pinned" >&2
  pin_upstream=() pin_proxy=()
fi

# --- work dir, cleanup ------------------------------------------------------------------------
work=$(mktemp -d /tmp/zonegate-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

render() { # template → file, with every {{KEY}} filled in
  sed -e "s|{{DIR}}|$work|g" -e "s|{{NAMED_PORT}}|$named_port|g" -e "s|{{PORT}}|$2|g" \
      -e "s|{{METRICS_PORT}}|$metrics_port|g" -e "s|{{HEALTH_PORT}}|$health_port|g" \
      -e "s|{{READY_PORT}}|$ready_port|g" -e "s|{{LAST}}|$((hot_names + cold_names - 1))|g" \
      -e "s|{{POLICY}}|$policy|g" -e "s|{{CACHE_FOR}}|$policy_cache_for|g" \
      "$here/$1" > "$work/$3"
}

wait_answering() { # port name pid: poll (at most 10 s) until SOA bench.test answers
  for _ in $(seq 1 100); do
    if ! kill -0 "$3" 2>/dev/null; then
      echo "$2 exited; its log:" >&2; cat "$work/$2.log" >&2; exit 1
    fi
    if dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 bench.test SOA 2>/dev/null | grep -q hostmaster; then
      return 0
    fi
    sleep 0.1
  done
  echo "$2 does not answer on 127.0.0.1:$1 after 10 s; its log:" >&2; cat "$work/$2.log" >&2; exit 1
}

cpu_ticks() { # utime+stime of a process, all threads, in clock ticks
  local stat
  stat=$(< "/proc/$1/stat")
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  echo $(( ${12} + ${13} ))
}
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

# --- upstream ---------------------------------------------------------------------------------
render bench.zone.in 0 bench.zone
render named.conf.in 0 named.conf
seq 0 $((hot_names - 1)) | awk '{ print "h" $1 ".bench.test A" }' > "$work/hot.txt"
seq "$hot_names" $((hot_names + cold_names - 1)) | awk '{ print "h" $1 ".bench.test A" }' > "$work/cold.txt"
"${pin_upstream[@]}" named -g -4 -n 1 -c "$work/named.conf" > "$work/named.log" 2>&1 &
named_pid=$!
pids+=("$named_pid")
wait_answering "$named_port" named "$named_pid"

# --- proxies ----------------------------------------------------------------------------------
start_proxy() { # name → sets proxy_pid
  local p=${port[${1%+policy}]}
  case $1 in
    zonegate|zonegate+policy)
      local template=zonegate.toml.in
      [ "$1" = zonegate+policy ] && template=zonegate-policy.toml.in
      render "$template" "$p" zonegate.toml
      RUST_LOG=${RUST_LOG:-warn} "${pin_proxy[@]}" "$zonegate_bin" run --config "$work/zonegate.toml" \
        --ready-file "$work/zonegate.ready" > "$work/zonegate.log" 2>&1 &
      ;;
    unbound)
      render unbound.conf.in "$p" unbound.conf
      "${pin_proxy[@]}" unbound -d -c "$work/unbound.conf" > "$work/unbound.log" 2>&1 &
      ;;
    dnsdist)
      render dnsdist.conf.in "$p" dnsdist.conf
      "${pin_proxy[@]}" dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" > "$work/dnsdist.log" 2>&1 &
      ;;
  esac
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_answering "$p" "${1%+policy}" "$proxy_pid"
}

stop_proxy() {
  kill "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
}

dnsperf_run() { # proxy output-file dnsperf-args…
  local p=${port[${1%+policy}]} file=$2
  shift 2
  "${pin_upstream[@]}" dnsperf -s 127.0.0.1 -p "$p" -c 1 -T 1 -q "$outstanding" -t 2 "$@" > "$file" 2>&1
}

field() { awk -v key="$2" 'index($0, key) { sub(/.*: */, ""); split($0, v, " "); print v[1]; exit }' "$1"; }

clk=$(getconf CLK_TCK)
rows=()
measure() { # proxy workload dnsperf-args…
  local proxy=$1 workload=$2
  shift 2
  local file="$work/$proxy-$workload.dnsperf"
  local before after
  before=$(cpu_ticks "$proxy_pid")
  dnsperf_run "$proxy" "$file" "$@"
  after=$(cpu_ticks "$proxy_pid")
  kill -0 "$proxy_pid" 2>/dev/null || { echo "$proxy died during $workload" >&2; cat "$work/${proxy%+policy}.log" >&2; exit 1; }
  local qps answered lost noerror latency rss hwm
  qps=$(field "$file" "Queries per second:")
  answered=$(field "$file" "Queries completed:")
  lost=$(field "$file" "Queries lost:")
  noerror=$(awk '/Response codes:/ { for (i = 1; i <= NF; i++) if ($i == "NOERROR") { gsub(/[()]/, "", $(i + 2)); print $(i + 2) } }' "$file")
  latency=$(field "$file" "Average Latency (s):")
  rss=$(status_kib "$proxy_pid" VmRSS)
  hwm=$(status_kib "$proxy_pid" VmHWM)
  rows+=("$(awk -v p="$proxy" -v w="$workload" -v q="$qps" -v a="$answered" -v l="$lost" -v n="${noerror:-0%}" \
    -v lat="$latency" -v t=$((after - before)) -v clk="$clk" -v rss="$rss" -v hwm="$hwm" 'BEGIN {
      us = a > 0 ? t / clk * 1e6 / a : 0
      printf "| %s | %s | %.0f | %d | %d | %s | %.3f | %.2f | %.1f | %.1f |", p, w, q, a, l, n, lat * 1000, us, rss / 1024, hwm / 1024
    }')")
  echo "${rows[-1]}" >&2
}

for round in $(seq 1 "$rounds"); do
n=${#proxies[@]}
order=()
for i in $(seq 0 $((n - 1))); do order+=("${proxies[$(((round - 1 + i) % n))]}"); done
for proxy in "${order[@]}"; do
  echo "== round $round/$rounds: $proxy on 127.0.0.1:${port[$proxy]}" >&2
  start_proxy "$proxy"
  dnsperf_run "$proxy" "$work/$proxy-warm.dnsperf" -d "$work/hot.txt" -n 1 -l 30
  measure "$proxy" hot -d "$work/hot.txt" -l "$duration"
  measure "$proxy" cold -d "$work/cold.txt" -n 1 -l "$cold_limit"
  stop_proxy
  if [ "$proxy" = zonegate ] && [ -n "$policy" ]; then
    echo "== zonegate with fqdn-allowlist (cache_for $policy_cache_for)" >&2
    start_proxy zonegate+policy
    dnsperf_run zonegate+policy "$work/zonegate-policy-warm.dnsperf" -d "$work/hot.txt" -n 1 -l 30
    measure zonegate+policy hot -d "$work/hot.txt" -l "$duration"
    stop_proxy
  fi
done
done

# Per (proxy, workload): medians over the rounds (lost: the sum; NOERROR: the lowest), then
# the target ratios from those medians.
medians() {
  printf '%s\n' "${rows[@]}" | awk -F' *\\| *' '
    function median(list,   n, v, i, j, t) {
      n = split(list, v, " ")
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    {
      k = $2 " | " $3
      if (!(k in seen)) { seen[k] = 1; order[++m] = k }
      qps[k] = qps[k] " " $4; lost[k] += $6; lat[k] = lat[k] " " $8; us[k] = us[k] " " $9
      rss[k] = rss[k] " " $10; hwm[k] = hwm[k] " " $11; rounds[k]++
      n = $7; sub(/%.*/, "", n); if (!(k in noe) || n + 0 < noe[k] + 0) noe[k] = n
    }
    END {
      print "| proxy | workload | rounds | qps | lost (sum) | NOERROR (min) | mean latency ms | CPU µs/q | VmRSS MiB | VmHWM MiB |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= m; i++) {
        k = order[i]
        printf "| %s | %d | %.0f | %d | %s%% | %.3f | %.2f | %.1f | %.1f |\n", k, rounds[k], median(qps[k]), lost[k], noe[k], median(lat[k]), median(us[k]), median(rss[k]), median(hwm[k])
        cpu[k] = median(us[k])
      }
      print ""
      z = "zonegate | hot"; u = "unbound | hot"; d = "dnsdist | cold"; zc = "zonegate | cold"; zp = "zonegate+policy | hot"
      if ((z in cpu) && (u in cpu) && cpu[u] > 0) printf "- hot: zonegate / unbound CPU µs/q = %.2f (target ≤ 0.80)\n", cpu[z] / cpu[u]
      if ((zc in cpu) && (d in cpu) && cpu[d] > 0) printf "- cold: zonegate / dnsdist CPU µs/q = %.2f (target ≤ 1.00)\n", cpu[zc] / cpu[d]
      if ((zp in cpu) && (z in cpu) && cpu[z] > 0) printf "- hot with fqdn-allowlist / without = %.2f (target ≤ 1.15)\n", cpu[zp] / cpu[z]
      if (zc in cpu) printf "- zonegate VmRSS after the cold run (100,000 cached names): %.1f MiB (target ≤ 40)\n", median(rss[zc])
    }'
}

# --- report -----------------------------------------------------------------------------------
version() {
  case $1 in
    zonegate) "$zonegate_bin" --version 2>/dev/null | head -1 || echo zonegate ;;
    unbound) unbound -V 2>/dev/null | awk '/^Version/ { print "unbound " $2 }' ;;
    dnsdist) dnsdist --version 2>/dev/null | head -1 | awk '{ print $1 " " $2 }' ;;
  esac
}
mkdir -p "$(dirname "$out")"
{
  echo "# zonegate load benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- Machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- Upstream: $(named -v) on CPU 0, serving $((hot_names + cold_names)) names; dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }') on CPU 0 (1 client, 1 thread, $outstanding outstanding, 2 s timeout)"
  names=()
  for p in "${proxies[@]}"; do names+=("$(version "$p")"); done
  joined=$(IFS=,; echo "${names[*]}")
  echo "- Proxies on CPU 1, one worker each: ${joined//,/, }"
  echo "- hot: $hot_names names, warmed, looped for ${duration} s; cold: $cold_names new names, each once"
  if [ -n "$policy" ]; then
    echo "- zonegate+policy: hot again with fqdn-allowlist ($(basename "$policy"), 20 rules, cache_for $policy_cache_for) in the path"
  fi
  echo "- CPU µs/q: proxy utime+stime over the workload ÷ answered queries (clock tick $((1000000 / clk)) µs)."
  echo "  With one dnsperf thread sharing CPU 0, hot qps is usually bounded by the load generator, not"
  echo "  the proxy: compare proxies on CPU µs/q."
  echo
  echo "| proxy | workload | qps | answered | lost | NOERROR | mean latency ms | CPU µs/q | VmRSS MiB | VmHWM MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  if [ "$rounds" -gt 1 ]; then
    echo
    echo "Medians over $rounds rounds:"
    echo
    medians
  fi
} | tee "$out"
echo >&2
echo "written to $out" >&2
