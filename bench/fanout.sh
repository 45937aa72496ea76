#!/usr/bin/env bash
# Watch fan-out under a closed-loop writer: keel (SSE, one connection per watcher; and
# WebSocket, many watches per socket) against etcd (gRPC watch streams), same run.
#
#   bench/fanout.sh [SECONDS] [REPS] [WATCHERS...]   (defaults: 5 s, 3 repetitions, 1000 10000)
#
# For each repetition and each watcher count, every target runs on a fresh server (so no run
# inherits another's connections): one put client alone, then one put client with that many
# watchers on the prefix it writes. Prints one JSON line per run (keel-bench's, with the
# events delivered per second, the server's CPU per million events, and the deliveries
# still late 1 s after the writer stopped), then a table of medians. KEEL=path picks the
# keel binary (default target/release/keel); BENCH_OUT=FILE also keeps the JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
reps=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 10000)

bench/peers.sh install
cargo build --release --locked -p keel -p keel-bench >&2
bin=target/release
exe=$(realpath "${KEEL:-$bin/keel}")
mkdir -p target
work=$(mktemp -d -p "$PWD/target" fanout.XXXXXX)
source bench/lib.sh
cleanup() {
  [ -e "$work/etcd.pids" ] && bench/peers.sh stop etcd "$work" || true
  cleanup_servers
  rm -rf "$work"
}
trap cleanup EXIT
# 10,000 watchers need as many sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=${BENCH_OUT:-$work/fanout.jsonl}
: >"$out"

run() { # label target addr pid watchers
  local label=$1 target=$2 addr=$3 pid=$4 n=$5 extra=()
  [ "$n" -gt 0 ] && extra=(--watchers-attached "$n")
  "$bin/keel-bench" --target "$target" --label "$label" --addr "$addr" --workload put \
    --clients 1 --duration "$secs" --server-pid "$pid" "${extra[@]}" | tee -a "$out"
}

one_keel() { # label target watchers
  start_keel "$1-$rep-$3" "$exe"
  run "$1" "$2" "$keel" "${pids[-1]}" 0
  run "$1" "$2" "$keel" "${pids[-1]}" "$3"
  cleanup_servers
  rm -rf "$work/keel-$1-$rep-$3"
}

one_etcd() { # watchers
  local addr
  addr=$(bench/peers.sh start etcd "$work")
  run etcd etcd "$addr" "$(head -1 "$work/etcd.pids")" 0
  run etcd etcd "$addr" "$(head -1 "$work/etcd.pids")" "$1"
  bench/peers.sh stop etcd "$work"
}

for rep in $(seq 1 "$reps"); do
  echo "== repetition $rep of $reps" >&2
  for n in "${counts[@]}"; do
    one_keel keel keel "$n"
    one_keel keel-ws keel-ws "$n"
    one_etcd "$n"
  done
done

python3 - "$out" "$secs" "$reps" "${counts[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
alone = {}
for r in runs:
    if "watchers" not in r:
        alone.setdefault(r["target"], []).append(r["ops_per_sec"])
rows = {}
for r in runs:
    if "watchers" in r:
        rows.setdefault((r["watchers"], r["target"]), []).append(r)
print("| watchers | target | put/s alone | put/s with watchers | writer's loss | events/s | server CPU (cores) | server CPU s per M events | late 1 s after | catch-up ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (n, t), rs in sorted(rows.items()):
    a = med(alone.get(t, []))
    w = med([r["ops_per_sec"] for r in rs])
    col = lambda k: med([r[k] for r in rs if r.get(k) is not None])
    print(f"| {n:,} | {t} | {a:,.0f} | {w:,.0f} | {100 * (1 - w / a):.0f} % | {col('events_per_sec'):,.0f} | "
          f"{col('server_cpu'):.2f} | {col('server_cpu_s_per_m_events'):.2f} | {col('late_after_1s'):,.0f} | {col('catch_up_ms'):,.0f} |")
print(f"\n{len(runs)} runs; medians. Reproduce: bench/fanout.sh {' '.join(sys.argv[2:])}")
PY
