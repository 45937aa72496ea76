#!/usr/bin/env bash
# CI's smoke test of the harness: builds keel and keel-bench (debug), then runs every
# workload keel supports for one second against a fresh keel (and the ceiling workload
# against the ceiling server), failing on any error or on a run that did nothing.
# Measures nothing worth reading: benchmarks never run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p keel -p keel-bench >&2
bin=target/debug
work=$(mktemp -d)
source bench/lib.sh
trap 'cleanup_servers; rm -rf "$work"' EXIT
start_keel smoke
start_ceiling

check() { # one JSON line: ops > 0, errors == 0
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["ops"] > 0 and r["errors"] == 0 and r.get("missed", 0) == 0 else 1)' "$1" \
    || { echo "smoke: bad run: $1" >&2; exit 1; }
  echo "$1"
}
common=(--duration 1 --warmup 0.2 --keys 500)
check "$("$bin/keel-bench" --target keel --addr "$keel" --workload put --clients 4 "${common[@]}")"
check "$("$bin/keel-bench" --target keel --addr "$keel" --workload get --clients 4 "${common[@]}")"
check "$("$bin/keel-bench" --target keel --addr "$keel" --workload cas --clients 4 "${common[@]}")"
check "$("$bin/keel-bench" --target keel --addr "$keel" --workload watch-fanout --watchers 20 --rate 50 "${common[@]}")"
check "$("$bin/keel-bench" --target keel --addr "$keel" --workload put --clients 2 --watchers-attached 10 "${common[@]}")"
check "$("$bin/keel-bench" --target keel-ws --addr "$keel" --workload watch-fanout --watchers 20 --watch-conns 2 --rate 50 "${common[@]}")"
check "$("$bin/keel-bench" --target keel-ws --addr "$keel" --workload put --clients 2 --watchers-attached 10 --watch-conns 2 "${common[@]}")"
check "$("$bin/keel-bench" --target keel --addr "$keel" --workload task-cycle --clients 4 "${common[@]}")"
check "$("$bin/keel-bench" --target hyper --addr "$ceiling" --workload ceiling --clients 4 "${common[@]}")"
# A workload a target cannot run is refused up front, not run wrongly.
if "$bin/keel-bench" --target hyper --addr "$ceiling" --workload put --duration 1 2>/dev/null; then
  echo "smoke: the ceiling target accepted a put workload" >&2; exit 1
fi
echo "smoke: every workload ran against keel without errors"
