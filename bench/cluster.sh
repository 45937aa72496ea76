#!/usr/bin/env bash
# A three-node keel cluster against one keel node and against a three-member etcd cluster,
# same load generator, same run; then failover time and snapshot catch-up.
#
#   bench/cluster.sh [SECONDS] [REPS] [CLIENTS] [TRIALS] [CATCHUP_KEYS]
#                    (defaults: 5 s, 3 repetitions, 32 clients, 10 failover trials, 300000 keys)
#
# Writes: `put` with CLIENTS closed-loop clients, against keel alone, the keel cluster's
# leader, a keel follower (every write forwarded to the leader), and etcd-cluster (its client
# spreads over the three members). Failover: kill -9 of the leader, then a client that tries
# a write through a surviving node every 100 ms; the time to its first acknowledged write.
# Catch-up: a fourth node joins a cluster holding CATCHUP_KEYS keys with a small
# --snapshot-every (REPS times, each on a fresh cluster); the time from its start until it is
# a healthy voter, the snapshot bytes it received, and how many installs that took. Prints JSON lines, then medians. KEEL=path picks the keel
# binary; BENCH_OUT=FILE also keeps the JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
reps=${2:-3}
clients=${3:-32}
trials=${4:-10}
catchup_keys=${5:-300000}

bench/peers.sh install
cargo build --release --locked -p keel -p keel-bench >&2
bin=target/release
exe=$(realpath "${KEEL:-$bin/keel}")
mkdir -p target
work=$(mktemp -d -p "$PWD/target" cluster.XXXXXX)
source bench/lib.sh
secret=bench-secret
cleanup() {
  [ -e "$work/etcd-cluster.pids" ] && bench/peers.sh stop etcd-cluster "$work" || true
  cleanup_servers
  rm -rf "$work"
}
trap cleanup EXIT
out=${BENCH_OUT:-$work/cluster.jsonl}
: >"$out"
now_ms() { date +%s%3N; }

# cluster_of N NAME [SERVE_ARGS...]: N nodes, the first forms the group, the others join;
# waits until all are voters and healthy. Sets nodes=(addr...), node_pids=(pid...).
cluster_of() {
  local n=$1 name=$2 i
  shift 2
  nodes=()
  node_pids=()
  for i in $(seq 1 "$n"); do
    local join=()
    [ "$i" -gt 1 ] && join=(--join "http://${nodes[0]}")
    start_keel "$name-$i" "$exe" --cluster-secret "$secret" "${join[@]}" "$@"
    nodes+=("$keel")
    node_pids+=("${pids[-1]}")
  done
  wait_members "${nodes[0]}" "$n"
}

# wait_members ADDR N: until the cluster as ADDR reports it has N healthy members, no learner.
wait_members() {
  for _ in $(seq 1 300); do
    if curl -sf "http://$1/v1/cluster" | python3 -c '
import json, sys
s = json.load(sys.stdin)
m = s["members"]
ok = s["leader"] is not None and len(m) == int(sys.argv[1]) and all(x["healthy"] and x["role"] != "learner" for x in m)
sys.exit(0 if ok else 1)' "$2"; then
      return 0
    fi
    sleep 0.1
  done
  echo "the cluster did not form" >&2
  return 1
}

# leader_addr ADDR: the leader's address, as ADDR reports it.
leader_addr() {
  curl -sf "http://$1/v1/cluster" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(next(m["address"] for m in s["members"] if m["id"] == s["leader"]).removeprefix("http://"))'
}

put() { # label addr pid
  "$bin/keel-bench" --target "${4:-keel}" --label "$1" --addr "$2" --workload put \
    --clients "$clients" --duration "$secs" --server-pid "$3" | tee -a "$out"
}

for rep in $(seq 1 "$reps"); do
  echo "== throughput, repetition $rep of $reps" >&2
  start_keel "one-$rep" "$exe"
  put keel-1 "$keel" "${pids[-1]}"
  cleanup_servers
  cluster_of 3 "three-$rep"
  lead=$(leader_addr "${nodes[0]}")
  lead_pid=
  for i in 0 1 2; do [ "${nodes[$i]}" = "$lead" ] && lead_pid=${node_pids[$i]}; done
  put keel-3-leader "$lead" "$lead_pid"
  for i in 0 1 2; do
    if [ "${nodes[$i]}" != "$lead" ]; then
      put keel-3-follower "${nodes[$i]}" "$lead_pid"
      break
    fi
  done
  cleanup_servers
  addr=$(bench/peers.sh start etcd-cluster "$work")
  put etcd-3 "$addr" "$(head -1 "$work/etcd-cluster.pids")" etcd
  bench/peers.sh stop etcd-cluster "$work"
done

echo "== failover, $trials trials" >&2
cluster_of 3 failover
for t in $(seq 1 "$trials"); do
  lead=$(leader_addr "${nodes[0]}")
  [ "$lead" = "${nodes[0]}" ] && lead=$(leader_addr "${nodes[1]}")
  idx=
  for i in 0 1 2; do [ "${nodes[$i]}" = "$lead" ] && idx=$i; done
  survivor=${nodes[$(( (idx + 1) % 3 ))]}
  kill -9 "${node_pids[$idx]}"
  killed=$(now_ms)
  took=
  for _ in $(seq 1 300); do
    if curl -sf -m 1 -X PUT "http://$survivor/v1/kv/failover/$t" -d x >/dev/null; then
      took=$(( $(now_ms) - killed ))
      break
    fi
    sleep 0.1
  done
  echo "{\"target\":\"keel-3\",\"workload\":\"failover\",\"trial\":$t,\"ms\":${took:-null}}" | tee -a "$out"
  # Bring it back on its address, then wait until all three are healthy again.
  "$exe" serve --listen "$lead" --data-dir "$work/keel-failover-$((idx + 1))" \
    --cluster-secret "$secret" >/dev/null 2>>"$work/keel-failover-$((idx + 1)).log" &
  pids+=($!)
  node_pids[idx]=$!
  wait_members "$survivor" 3
done
cleanup_servers

for rep in $(seq 1 "$reps"); do
  echo "== catch-up by snapshot, $catchup_keys keys, repetition $rep of $reps" >&2
  cluster_of 3 "catchup-$rep" --snapshot-every 1000
  lead=$(leader_addr "${nodes[0]}")
  "$bin/keel-bench" --target keel --addr "$lead" --workload load --keys "$catchup_keys" \
    --clients 32 >&2
  started=$(now_ms)
  start_keel "catchup-$rep-4" "$exe" --cluster-secret "$secret" --join "http://$lead" \
    --snapshot-every 1000
  new=$keel
  wait_members "$lead" 4
  took=$(( $(now_ms) - started ))
  bytes=$(curl -sf "http://$new/metrics" | awk '/^keel_snapshot_received_bytes_total/ {print $2}')
  installs=$(grep -c "installing a snapshot from the leader" "$work/keel-catchup-$rep-4.log" || true)
  echo "{\"target\":\"keel-3\",\"workload\":\"catchup\",\"keys\":$catchup_keys,\"ms\":$took,\"snapshot_bytes\":${bytes:-0},\"installs\":$installs}" | tee -a "$out"
  cleanup_servers
  rm -rf "$work"/keel-catchup-"$rep"-*
done

python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = statistics.median
put = {}
for r in runs:
    if r.get("workload") == "put":
        put.setdefault(r["target"], []).append(r)
print("\n| target | puts/s (median) | p99 ms (median) | runs |")
print("|---|---|---|---|")
for t, rs in put.items():
    p99 = [r.get("p99_us", r.get("latency_us", {}).get("p99", 0)) / 1000 for r in rs]
    print(f"| {t} | {med(r['ops_per_sec'] for r in rs):,.0f} | {med(p99):.1f} | {len(rs)} |")
fo = [r["ms"] for r in runs if r.get("workload") == "failover" and r["ms"] is not None]
if fo:
    print(f"\nfailover (kill -9 of the leader → first acknowledged write): median {med(fo)} ms, "
          f"max {max(fo)} ms, {len(fo)} trials")
cu = [r for r in runs if r.get("workload") == "catchup"]
if cu:
    rate = [r["snapshot_bytes"] / 1e6 / (r["ms"] / 1000) for r in cu]
    print(f"catch-up: {cu[0]['keys']:,} keys; snapshot MB received {[round(r['snapshot_bytes'] / 1e6, 1) for r in cu]}, "
          f"installs {[r.get('installs') for r in cu]}, ms {[r['ms'] for r in cu]}; "
          f"median {med(rate):.1f} MB/s end to end")
PY
