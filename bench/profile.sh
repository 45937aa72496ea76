#!/usr/bin/env bash
# Where a keel server spends its CPU under one workload: perf's top functions.
#
#   bench/profile.sh WORKLOAD CLIENTS [KEEL_BINARY]    e.g. bench/profile.sh put 64
#
# Starts keel (default target/release/keel) on a fresh data directory, runs keel-bench's
# WORKLOAD with CLIENTS clients for 8 s, samples the server with `perf record -F 2000`
# (software cpu-clock, which works where hardware counters do not) for 5 s in the middle,
# and prints the throughput, the top 40 functions by self time and the split by thread.
# Needs Debian's linux-perf (apt-get install linux-perf) and keel-bench built. For call
# graphs, build with RUSTFLAGS="-C force-frame-pointers=yes" into another target directory
# and set PERF_CALLGRAPH=-g.
set -euo pipefail
cd "$(dirname "$0")/.."
w=${1:?usage: bench/profile.sh WORKLOAD CLIENTS [KEEL_BINARY]}
c=${2:?usage: bench/profile.sh WORKLOAD CLIENTS [KEEL_BINARY]}
exe=$(realpath "${3:-target/release/keel}")
command -v perf >/dev/null || { echo "profile.sh: perf not found (apt-get install linux-perf)" >&2; exit 2; }
mkdir -p target
work=$(mktemp -d -p "$PWD/target" profile.XXXXXX)
source bench/lib.sh
trap 'cleanup_servers; rm -rf "$work"' EXIT
start_keel main "$exe"
pid=${pids[-1]}
addr=$keel
[ "$w" = get ] && target/release/keel-bench --target keel --addr "$addr" --workload load --clients 64 >/dev/null
target/release/keel-bench --target keel --addr "$addr" --workload "$w" --clients "$c" \
  --duration 8 --no-fill >"$work/out.json" &
lg=$!
sleep 2
# shellcheck disable=SC2086
perf record -q -e cpu-clock -F 2000 ${PERF_CALLGRAPH:-} -p "$pid" -o "$work/perf.data" -- sleep 5 \
  >/dev/null 2>&1
wait "$lg"
cat "$work/out.json"
report() { perf report -i "$work/perf.data" --no-children --stdio "$@" 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | sed 's/ *- *- *$//' | cut -c1-150; }
echo "== top functions (self time)"
report --sort symbol | head -40
echo "== by thread"
report --sort comm | head -8
