# Shared by run.sh, smoke.sh, ab.sh, profile.sh and tests/fixtures/make-datadir.sh (sourced):
# start keel and the ceiling server on loopback ports and remember their PIDs in $pids;
# `cleanup_servers` stops them.
# Needs: $bin (directory of keel, ceiling, keel-bench) and $work (a scratch directory).

pids=()

cleanup_servers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
  done
  pids=()
}

# start_keel NAME [KEEL_BINARY [SERVE_ARGS...]]: a keel node (default $bin/keel) with its data
# in $work/keel-NAME and its log in $work/keel-NAME.log. Sets $keel to its address, read from
# its start-up line (logged once it leads and has applied its log).
start_keel() {
  local name=$1 exe=${2:-$bin/keel}
  shift
  if [ $# -gt 0 ]; then shift; fi
  "$exe" serve --listen 127.0.0.1:0 --data-dir "$work/keel-$name" "$@" >/dev/null \
    2>"$work/keel-$name.log" &
  pids+=($!)
  keel=
  for _ in $(seq 1 300); do
    keel=$(grep -o 'listen=[0-9.:]*' "$work/keel-$name.log" | head -1 | cut -d= -f2 || true)
    [ -n "$keel" ] && return 0
    sleep 0.1
  done
  echo "keel did not start; its log:" >&2
  cat "$work/keel-$name.log" >&2
  return 1
}

# start_ceiling: the bare hyper server. Sets $ceiling to its address.
start_ceiling() {
  "$bin/ceiling" --listen 127.0.0.1:0 >"$work/ceiling.out" &
  pids+=($!)
  ceiling=
  for _ in $(seq 1 100); do
    ceiling=$(awk '/listening/ {print $3}' "$work/ceiling.out" 2>/dev/null || true)
    [ -n "$ceiling" ] && return 0
    sleep 0.1
  done
  echo "ceiling did not start" >&2
  return 1
}
