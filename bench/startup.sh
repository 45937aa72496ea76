#!/usr/bin/env bash
# Start-up time and memory after N keys (default 1,000,000) of 100 bytes:
# fill a fresh keel, stop it (SIGTERM), start it again and time it until /readyz answers 200,
# then report its RSS. Repeats the restart 3 times. Usage: bench/startup.sh [keys]
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
cargo build --release -p keel -p keel-bench >&2
bin=target/release
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

serve() {
  "$bin/keel" serve --listen "127.0.0.1:$port" --data-dir "$work/data" 2>>"$work/keel.log" &
  pid=$!
}
started=0
wait_ready() {
  # keel logs "keel started" once it leads and has applied its whole log.
  started=$((started + 1))
  for _ in $(seq 1 6000); do
    [ "$(grep -c 'keel started' "$work/keel.log" 2>/dev/null || true)" -ge "$started" ] && return 0
    sleep 0.01
  done
  echo "not ready" >&2; return 1
}

serve; wait_ready
"$bin/keel-bench" --addr "127.0.0.1:$port" --workload load --keys "$keys" --value-size 100 --clients 64
echo "RSS after loading: $(awk '/VmRSS/{print $2, $3}' /proc/$pid/status)"
echo "data dir: $(du -sh "$work/data" | cut -f1)"
for run in 1 2 3; do
  kill -TERM "$pid"; wait "$pid" || true
  t0=$(date +%s.%N)
  serve; wait_ready
  t1=$(date +%s.%N)
  rss=$(awk '/VmRSS/{print $2, $3}' /proc/$pid/status)
  echo "restart $run: ready after $(python3 -c "print('%.2f' % ($t1 - $t0))") s, RSS $rss"
done
grep 'keel started' "$work/keel.log" | tail -3
