#!/usr/bin/env bash
# keel side by side with etcd, Redis and NATS on this machine, in one command.
#
#   bench/run.sh [SECONDS] [REPS]      (defaults: 5 measured seconds per run, 3 repetitions)
#
# Installs the peers if missing (bench/peers.sh install), builds keel and keel-bench in
# release mode, measures this disk's fdatasync latency, starts every target on loopback with
# a fresh data directory, and runs the matrix REPS times, interleaving targets (and rotating
# their order each repetition) so machine drift hits all of them alike. Writes
# bench/results/DATE.md (medians, keel's ratios, the issue's targets, how each peer ran) and
# bench/results/DATE.jsonl (every run) with DATE.machine.json (so report.py can redo the
# table), and prints the Markdown. BENCH_RESULTS=DIR writes
# them elsewhere (a trial run).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
reps=${2:-3}
command="bench/run.sh${1:+ $1}${2:+ $2}"

bench/peers.sh install
cargo build --release --locked -p keel -p keel-bench >&2
bin=target/release
# Scratch space on the project's own filesystem (the one whose fsync is measured).
mkdir -p target
work=$(mktemp -d -p "$PWD/target" bench-run.XXXXXX)
source bench/lib.sh
peers=(etcd redis-always redis-everysec nats)
started_peers=()
cleanup() {
  for p in "${started_peers[@]}"; do bench/peers.sh stop "$p" "$work" || true; done
  cleanup_servers
  rm -rf "$work"
}
trap cleanup EXIT

# Machine facts, and fdatasync latency on this filesystem: 300-byte writes, first into a
# preallocated file (as keel's log segments are), then appending (as etcd's WAL and Redis's
# AOF mostly do).
python3 - "$work" "$secs" >"$work/machine.json" <<'PY'
import json, os, platform, sys, time
work, secs = sys.argv[1], float(sys.argv[2])
def fsync_lat(prealloc):
    p = os.path.join(work, "fsync-%s.test" % ("pre" if prealloc else "app"))
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    if prealloc:
        os.posix_fallocate(fd, 0, 8 << 20)
        os.fsync(fd)
    lat = []
    for i in range(2000):
        os.pwrite(fd, b"x" * 300, i * 300)
        t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
    os.close(fd); os.unlink(p)
    lat.sort()
    return lat[1000] * 1e6, lat[1980] * 1e6
pre, app = fsync_lat(True), fsync_lat(False)
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
print(json.dumps({
    "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "cpu": cpu,
    "mem_gib": mem / 2**20, "kernel": platform.release(), "seconds": secs,
    "fsync_prealloc_p50_us": pre[0], "fsync_prealloc_p99_us": pre[1],
    "fsync_append_p50_us": app[0], "fsync_append_p99_us": app[1], "targets": []}))
PY

# 10,000 watchers need as many sockets on each side (keel inherits this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Targets: label, keel-bench --target, address.
declare -A kind addr
start_keel main
kind[keel]=keel; addr[keel]=$keel
start_ceiling
kind[hyper]=hyper; addr[hyper]=$ceiling
for p in "${peers[@]}"; do
  a=$(bench/peers.sh start "$p" "$work")
  started_peers+=("$p")
  addr[$p]=$a
  case $p in etcd*) kind[$p]=etcd ;; redis*) kind[$p]=redis ;; nats) kind[$p]=nats ;; esac
done
echo "targets: $(for t in "${!addr[@]}"; do printf '%s=%s ' "$t" "${addr[$t]}"; done)" >&2

versions=$(python3 - "$("$bin/keel" --version 2>&1 | head -1)" "$(etcd --version | head -1)" \
  "$(redis-server --version)" "$(nats-server --version)" <<'PY'
import json, sys
k, e, r, n = sys.argv[1:5]
print(json.dumps([
  "**keel** (%s): `keel serve` with defaults — one-member Raft group, every write fsynced (group commit) and applied before it is acknowledged; reads linearizable." % k,
  "**etcd** (%s): one member, defaults (`etcd --data-dir …`); fsyncs its WAL before acknowledging a write; reads linearizable (the default)." % e,
  "**redis-always** (%s): `--appendonly yes --appendfsync always`, otherwise defaults (RDB save points included): fsync before every acknowledgement — the durable profile compared with keel." % r,
  "**redis-everysec**: same, `--appendfsync everysec`: shown for reference only; it acknowledges before the data is on disk (up to 1 s may be lost).",
  "**nats** (%s): `nats-server -js -sd …`, a KV bucket with file storage, history 1. **JetStream acknowledges before it fsyncs** (it syncs every 2 minutes by default; 2.9 has no per-write sync option), so its writes are not durable on acknowledgement." % n,
  "**hyper**: the `ceiling` server — a bare hyper HTTP/1.1 server answering a fixed 256-byte body: this machine's loopback HTTP limit with this load generator.",
]))
PY
)
python3 - "$work/machine.json" "$versions" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); m["targets"] = json.loads(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"))
PY

# watch-fanout against a fresh keel (its memory per watcher is then that run's alone).
fanout_keel() { # watchers
  local main=$keel
  start_keel "fanout-$rep-$1"
  local pid=${pids[-1]}
  "$bin/keel-bench" --target keel --label keel --addr "$keel" --workload watch-fanout \
    --clients 1 --duration "$secs" --watchers "$1" --rate 20 --server-pid "$pid" | tee -a "$results"
  kill "$pid"
  for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  rm -rf "$work/keel-fanout-$rep-$1"
  keel=$main
}

results="$work/results.jsonl"
bench() { # label workload clients [extra args]
  local label=$1 w=$2 c=$3; shift 3
  "$bin/keel-bench" --target "${kind[$label]}" --label "$label" --addr "${addr[$label]}" \
    --workload "$w" --clients "$c" --duration "$secs" "$@" | tee -a "$results"
}

# Every KV target gets its 10,000 keys once, so get runs read keys that exist.
for t in keel etcd redis-always redis-everysec nats; do bench "$t" load 64 >/dev/null; done

# Rotates the argument list by the repetition number, so no target always goes first.
rotate() { local n=$(( $1 % ($# - 1) )); shift; local a=("$@"); echo "${a[@]:$n}" "${a[@]:0:$n}"; }

for rep in $(seq 1 "$reps"); do
  echo "== repetition $rep of $reps" >&2
  for c in 1 16 64; do
    for t in $(rotate "$rep" keel etcd redis-always redis-everysec nats); do bench "$t" put "$c"; done
    for t in $(rotate "$rep" keel etcd redis-always nats); do bench "$t" get "$c" --no-fill; done
    bench hyper ceiling "$c"
  done
  for t in $(rotate "$rep" keel etcd redis-always redis-everysec nats); do bench "$t" cas 16; done
  # Watches: one writer at 20 writes/s, watchers on its prefix (keel: one SSE connection
  # each, as browsers hold them; etcd: gRPC watch streams over 10 connections).
  # keel's fan-out runs each get a fresh server, so that its memory per watcher is measured
  # on a process that has not already grown for earlier runs' connections.
  fanout_keel 1000
  bench etcd watch-fanout 1 --watchers 1000 --rate 20
  fanout_keel 10000
  # One closed-loop writer with watchers on the prefix it writes, against none (put, 1 client).
  bench keel put 1 --watchers-attached 1000
  bench keel put 1 --watchers-attached 10000
done

date=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["date"])' "$work/machine.json")
out=${BENCH_RESULTS:-bench/results}
mkdir -p "$out"
cp "$results" "$out/$date.jsonl"
cp "$work/machine.json" "$out/$date.machine.json"
python3 bench/report.py "$results" "$work/machine.json" "$command" >"$out/$date.md"
cat "$out/$date.md"
