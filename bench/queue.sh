#!/usr/bin/env bash
# Durable task cycles: keel's queues against Redis streams (appendfsync always) and a NATS
# JetStream work-queue stream with an explicit-ack pull consumer, same load generator, same
# run.
#
#   bench/queue.sh [SECONDS] [REPS] [CLIENTS]   (defaults: 5 s, 3 repetitions, 16 clients)
#
# A cycle is three durable steps on every system: enqueue a 256-byte payload (keel: POST
# …/tasks; Redis: XADD; NATS: publish and wait for the PubAck), claim the next task (keel:
# POST …/claim; Redis: XREADGROUP … BLOCK; NATS: fetch one), complete it (keel: POST
# …/complete; Redis: XACK; NATS: an ack the server confirms). Each CLIENT runs cycles back
# to back on its own connection. Every target runs on a fresh server for each repetition,
# targets interleaved. Prints one JSON line per run (ops/s = cycles/s, the cycle's p50/p99,
# the claim's own p50/p99), then a table of medians. KEEL=path picks the keel binary
# (default target/release/keel); BENCH_OUT=FILE also keeps the JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
reps=${2:-3}
clients=${3:-16}

bench/peers.sh install
cargo build --release --locked -p keel -p keel-bench >&2
bin=target/release
exe=$(realpath "${KEEL:-$bin/keel}")
mkdir -p target
work=$(mktemp -d -p "$PWD/target" queue.XXXXXX)
source bench/lib.sh
cleanup() {
  for peer in redis-always nats; do
    [ -e "$work/$peer.pids" ] && bench/peers.sh stop "$peer" "$work" || true
  done
  cleanup_servers
  rm -rf "$work"
}
trap cleanup EXIT
out=${BENCH_OUT:-$work/queue.jsonl}
: >"$out"

run() { # label target addr
  "$bin/keel-bench" --target "$2" --label "$1" --addr "$3" --workload task-cycle \
    --clients "$clients" --duration "$secs" | tee -a "$out"
}

for rep in $(seq 1 "$reps"); do
  echo "== repetition $rep of $reps" >&2
  start_keel "q-$rep" "$exe"
  run keel keel "$keel"
  cleanup_servers
  rm -rf "$work/keel-q-$rep"
  addr=$(bench/peers.sh start redis-always "$work")
  run redis-always redis "$addr"
  bench/peers.sh stop redis-always "$work"
  rm -rf "${work:?}/redis-always"
  addr=$(bench/peers.sh start nats "$work")
  run nats nats "nats://$addr"
  bench/peers.sh stop nats "$work"
  rm -rf "${work:?}/nats"
done

python3 - "$out" "$secs" "$reps" "$clients" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
by = {}
for r in runs:
    by.setdefault(r["target"], []).append(r)
keel = med([r["ops_per_sec"] for r in by.get("keel", [])])
print("| target | cycles/s (runs) | median cycles/s | cycle p50 | cycle p99 | claim p50 | claim p99 | errors | keel ÷ target |")
print("|---|---|---|---|---|---|---|---|---|")
for t in ["keel", "redis-always", "nats"]:
    rs = by.get(t, [])
    if not rs:
        continue
    col = lambda k: med([r[k] for r in rs])
    each = " / ".join(f"{r['ops_per_sec']:,.0f}" for r in rs)
    ratio = keel / col("ops_per_sec") if t != "keel" else 1.0
    print(f"| {t} | {each} | **{col('ops_per_sec'):,.0f}** | {col('p50_us'):,.0f} µs | {col('p99_us'):,.0f} µs | "
          f"{col('claim_p50_us'):,.0f} µs | {col('claim_p99_us'):,.0f} µs | {sum(r['errors'] for r in rs)} | {ratio:.2f}× |")
print(f"\n{len(runs)} runs; medians. Reproduce: bench/queue.sh {' '.join(sys.argv[2:])}")
PY
