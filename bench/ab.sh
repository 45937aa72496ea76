#!/usr/bin/env bash
# Two keel builds against each other on this machine, interleaved, so that drift hits both.
#
#   bench/ab.sh KEEL_A KEEL_B [REPS] [SECONDS]     (defaults: 5 repetitions, 5 s per run)
#
# For each of put (64 clients), put (1 client) and get (64 clients) it runs A then B, REPS
# times, each on a fresh server and data directory, and prints per build the median ops/s,
# median p50 latency, and the server's CPU time per operation (from /proc, over the last
# 3 s of each run). Use it to show what one change does: build the old revision into another
# target directory (git worktree + CARGO_TARGET_DIR) and compare. Needs keel-bench built
# (cargo build --release -p keel-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "${1:?usage: bench/ab.sh KEEL_A KEEL_B [REPS] [SECONDS]}")
B=$(realpath "${2:?usage: bench/ab.sh KEEL_A KEEL_B [REPS] [SECONDS]}")
reps=${3:-5}
secs=${4:-5}
[ "$secs" -ge 4 ] || { echo "ab.sh: runs of at least 4 s are needed" >&2; exit 2; }
loadgen=target/release/keel-bench
mkdir -p target
work=$(mktemp -d -p "$PWD/target" ab.XXXXXX)
source bench/lib.sh
trap 'cleanup_servers; rm -rf "$work"' EXIT

# run BIN WORKLOAD CLIENTS: one run on a fresh server; prints "ops p50_us cpu_us_per_op".
runs=0
run() {
  local exe=$1 w=$2 c=$3
  runs=$((runs + 1))
  start_keel "$runs" "$exe"
  local pid=${pids[-1]}
  [ "$w" = get ] && "$loadgen" --target keel --addr "$keel" --workload load --clients 64 >/dev/null
  "$loadgen" --target keel --addr "$keel" --workload "$w" --clients "$c" --duration "$secs" \
    --no-fill >"$work/out.json" &
  local lg=$!
  # Sample the server's CPU over 3 s inside the measured part of the run.
  sleep $((secs - 2))
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep 3
  t1=$(date +%s.%N); c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  wait "$lg"
  python3 - "$work/out.json" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c0, c1, t0, t1, hz = map(float, sys.argv[2:7])
ops = d["ops_per_sec"]
print(round(ops), round(d["p50_us"]), round((c1 - c0) / hz / (t1 - t0) / ops * 1e6, 1))
PY
  cleanup_servers
  rm -rf "$work/keel-$runs" "$work/keel-$runs.log"
}

for spec in "put 64" "put 1" "get 64"; do
  set -- $spec
  a=(); b=()
  for _ in $(seq 1 "$reps"); do
    a+=("$(run "$A" "$1" "$2")")
    b+=("$(run "$B" "$1" "$2")")
  done
  python3 - "$1" "$2" "${a[@]}" -- "${b[@]}" <<'PY'
import statistics, sys
w, c, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
i = rest.index("--")
for name, runs in (("A", rest[:i]), ("B", rest[i + 1:])):
    rows = [tuple(map(float, r.split())) for r in runs]
    med = lambda k: statistics.median(r[k] for r in rows)
    print("{} {} clients {}: median {:,.0f} ops/s, p50 {:.0f} µs, {:.1f} µs CPU per op  (runs: {})".format(
        w, c, name, med(0), med(1), med(2), ", ".join("{:,.0f}".format(r[0]) for r in rows)))
PY
done
