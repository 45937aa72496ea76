#!/usr/bin/env bash
# Foundation benchmark: durable PUT and linearizable GET against keel, and the bare hyper
# ceiling, at 1/16/64 clients, each configuration 3 times, interleaved. Prints JSON lines and
# a table of medians. Usage: bench/run.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
cargo build --release -p keel -p keel-bench >&2
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# fdatasync latency of this disk, in the same run (preallocated file, 300-byte writes).
python3 - "$work" <<'PY' >&2
import os, sys, time
p = os.path.join(sys.argv[1], "fsync.test")
fd = os.open(p, os.O_RDWR | os.O_CREAT)
os.posix_fallocate(fd, 0, 8 << 20); os.fsync(fd)
lat = []
for i in range(2000):
    os.pwrite(fd, b"x" * 300, i * 300)
    t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
lat.sort()
print("fdatasync p50 %.0f us, p99 %.0f us (preallocated file)" % (lat[1000] * 1e6, lat[1980] * 1e6))
PY

# Starts keel in the background (stdout to /dev/null so no pipe is held open) and waits for
# its start-up line, which names the address it bound.
start_keel() {
  "$bin/keel" serve --listen 127.0.0.1:0 --data-dir "$work/keel-$1" >/dev/null 2>"$work/keel-$1.log" &
  pids+=($!)
  for _ in $(seq 1 300); do
    keel=$(grep -o 'listen=[0-9.:]*' "$work/keel-$1.log" | head -1 | cut -d= -f2 || true)
    [ -n "$keel" ] && return
    sleep 0.1
  done
  echo "keel did not start" >&2; exit 1
}

"$bin/ceiling" --listen 127.0.0.1:0 >"$work/ceiling.out" &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/ceiling.out" 2>/dev/null && break; sleep 0.1; done
ceiling=$(awk '{print $3}' "$work/ceiling.out")
start_keel main
echo "keel at $keel, ceiling at $ceiling" >&2

results="$work/results.jsonl"
for rep in 1 2 3; do
  for clients in 1 16 64; do
    "$bin/keel-bench" --addr "$keel" --workload put --clients "$clients" --duration "$secs" | tee -a "$results"
    "$bin/keel-bench" --addr "$keel" --workload get --clients "$clients" --duration "$secs" | tee -a "$results"
    "$bin/keel-bench" --addr "$ceiling" --workload ceiling --target hyper --clients "$clients" --duration "$secs" | tee -a "$results"
  done
done

python3 - "$results" <<'PY'
import json, sys, statistics
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in runs:
    groups.setdefault((r["target"], r["workload"], r["clients"]), []).append(r)
print("\n| target | workload | clients | ops/s (median of %d) | p50 us | p99 us |" % min(len(v) for v in groups.values()))
print("|---|---|---|---|---|---|")
med = {}
for (t, w, c), rs in sorted(groups.items()):
    ops = statistics.median(r["ops_per_sec"] for r in rs)
    med[(t, w, c)] = ops
    print("| %s | %s | %d | %.0f | %.0f | %.0f |" % (t, w, c, ops,
          statistics.median(r["p50_us"] for r in rs), statistics.median(r["p99_us"] for r in rs)))
p1, p64 = med.get(("keel", "put", 1)), med.get(("keel", "put", 64))
g64, h64 = med.get(("keel", "get", 64)), med.get(("hyper", "ceiling", 64))
if p1 and p64:
    print("\nPUT 64 clients / 1 client: %.1fx (goal >= 8x)" % (p64 / p1))
if g64 and h64:
    print("GET 64 clients / hyper ceiling: %.2f (goal >= 0.5, i.e. within 2x)" % (g64 / h64))
PY
