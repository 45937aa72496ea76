#!/usr/bin/env bash
# Snapshots under load at N keys (default 1,000,000 of 100 bytes), for one or more keel builds.
#
#   bench/snapshot.sh [KEYS] [SECONDS] KEEL_BINARY...     (defaults: 1000000 keys, 30 s)
#
# For each build, on a fresh server started with --snapshot-every 5000: fill KEYS keys, then
# report
#   - RSS after the fill, and per key;
#   - one writer overwriting random keys for SECONDS (a snapshot every 5,000 entries): its
#     put rate, p99 and worst latency;
#   - from /metrics after that run: how many snapshots were taken, and the longest time
#     applying waited for the state (keel_apply_lock_wait_seconds; builds before it existed
#     stalled applying for the whole keel_snapshot_encode_seconds, so that is reported for
#     them), as the upper bound of the highest non-empty histogram bucket;
#   - GET, 64 clients, 10 s: ops/s.
# Needs keel-bench built (cargo build --release -p keel-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
secs=${2:-30}
shift 2 || { echo "usage: bench/snapshot.sh KEYS SECONDS KEEL_BINARY..." >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: bench/snapshot.sh KEYS SECONDS KEEL_BINARY..." >&2; exit 2; }
loadgen=target/release/keel-bench
mkdir -p target
work=$(mktemp -d -p "$PWD/target" snapshot.XXXXXX)
source bench/lib.sh
trap 'cleanup_servers; rm -rf "$work"' EXIT

# The upper bound of the highest non-empty bucket of histogram $1 in metrics file $2, in ms.
longest() {
  python3 - "$1" "$2" <<'PY'
import re, sys
name, path = sys.argv[1], sys.argv[2]
prev, worst = 0.0, None
for line in open(path):
    m = re.match(r'%s_bucket\{.*le="([^"]+)"\} (\d+)' % re.escape(name), line)
    if not m:
        continue
    le, count = m.group(1), float(m.group(2))
    if count > prev:
        worst = le
    prev = count
print("none" if worst is None else ("%.3g ms" % (float(worst) * 1000) if worst != "+Inf" else "> top bucket"))
PY
}

n=0
for exe in "$@"; do
  n=$((n + 1))
  exe=$(realpath "$exe")
  echo "== $exe"
  start_keel "snap$n" "$exe" --snapshot-every 5000
  pid=${pids[-1]}
  "$loadgen" --target keel --addr "$keel" --workload load --keys "$keys" --value-size 100 \
    --clients 64 >/dev/null
  rss_kb=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  echo "RSS after $keys keys: $((rss_kb / 1024)) MiB, $((rss_kb * 1024 / keys)) B/key"
  "$loadgen" --target keel --addr "$keel" --workload put --clients 1 --keys "$keys" \
    --value-size 100 --duration "$secs" --no-fill >"$work/put.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('1 writer: %.0f puts/s, p99 %.1f ms, worst %.1f ms' % (r['ops_per_sec'], r['p99_us']/1000, r['max_us']/1000))" "$work/put.json"
  curl -s "http://$keel/metrics" >"$work/metrics.txt"
  snaps=$(awk '/^keel_snapshot_save_seconds_count/{print $2}' "$work/metrics.txt")
  echo "snapshots taken: ${snaps:-0}"
  if grep -q '^keel_apply_lock_wait_seconds_bucket' "$work/metrics.txt"; then
    echo "longest wait of applying for the state: $(longest keel_apply_lock_wait_seconds "$work/metrics.txt")"
    echo "longest snapshot capture (under the read lock): $(longest keel_snapshot_capture_seconds "$work/metrics.txt")"
    echo "longest snapshot save, encoding included (off the lock): $(longest keel_snapshot_save_seconds "$work/metrics.txt")"
  else
    echo "longest snapshot encode (under the read lock: applying waits): $(longest keel_snapshot_encode_seconds "$work/metrics.txt")"
  fi
  "$loadgen" --target keel --addr "$keel" --workload get --clients 64 --keys "$keys" \
    --duration 10 --no-fill >"$work/get.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('GET, 64 clients: %.0f ops/s, p50 %.0f us' % (r['ops_per_sec'], r['p50_us']))" "$work/get.json"
  cleanup_servers
done
