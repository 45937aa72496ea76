#!/usr/bin/env bash
# The stores keel is compared with, run on loopback the way each is documented to run
# durably, each with a fresh data directory, started and stopped by PID.
#
#   bench/peers.sh install          apt-get what is missing: etcd, Redis, nats-server, and
#                                   what keel-bench's build needs (below)
#   bench/peers.sh install-build    only protoc and the well-known .proto files: keel-bench's
#                                   etcd client compiles etcd's protocol at build time
#   bench/peers.sh start PEER DIR   start PEER with its data under DIR; prints its client
#                                   address (host:port; etcd-cluster: three, comma-separated)
#   bench/peers.sh stop PEER DIR    stop PEER by the PIDs recorded in DIR, then remove its data
#
# PEER is one of:
#   etcd            one member (etcd fsyncs its WAL before it answers a write)
#   etcd-cluster    three members on loopback ports
#   redis-always    appendonly yes, appendfsync always (fsync before every answer)
#   redis-everysec  appendonly yes, appendfsync everysec (reference only: not durable on ack)
#   nats            nats-server with JetStream file storage (acknowledges before it fsyncs)
set -euo pipefail

die() { echo "peers.sh: $*" >&2; exit 2; }

install() { # [build-only]
  local missing=()
  if [ "${1:-}" != build-only ]; then
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v etcdctl >/dev/null || missing+=(etcd-client)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v nats-server >/dev/null || missing+=(nats-server)
  fi
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  [ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "peers.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

# A port the kernel just handed out on 127.0.0.1 (free at the time of asking).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (at most 15 s) until "$@" succeeds.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 150); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not become ready (logs in $dir)"
}

# Process name each peer runs under (Debian's redis-server is a symlink, so the name,
# not the executable path, identifies it).
proc_name() {
  case $1 in
    etcd|etcd-cluster) echo etcd ;;
    redis-*) echo redis-server ;;
    nats) echo nats-server ;;
    *) die "unknown peer $1" ;;
  esac
}

start_etcd_member() { # name client-port peer-port initial-cluster
  local name=$1 cport=$2 pport=$3 cluster=$4
  mkdir -p "$dir/$peer/$name"
  etcd --name "$name" --data-dir "$dir/$peer/$name" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench-$$" \
    --logger zap --log-outputs "$dir/$peer/$name.log" >/dev/null 2>&1 &
  echo $! >>"$dir/$peer.pids"
}

start() {
  [ -e "$dir/$peer.pids" ] && die "$peer already has a PID file in $dir"
  mkdir -p "$dir/$peer"
  local addr
  case $peer in
    etcd)
      local c p; c=$(free_port); p=$(free_port)
      start_etcd_member n1 "$c" "$p" "n1=http://127.0.0.1:$p"
      addr="127.0.0.1:$c"
      wait_for etcd env ETCDCTL_API=3 etcdctl --endpoints "$addr" endpoint health
      ;;
    etcd-cluster)
      local cs=() ps=() cluster="" i
      for i in 1 2 3; do cs+=("$(free_port)"); ps+=("$(free_port)"); done
      for i in 0 1 2; do cluster+="${cluster:+,}n$((i + 1))=http://127.0.0.1:${ps[$i]}"; done
      for i in 0 1 2; do start_etcd_member "n$((i + 1))" "${cs[$i]}" "${ps[$i]}" "$cluster"; done
      addr="127.0.0.1:${cs[0]},127.0.0.1:${cs[1]},127.0.0.1:${cs[2]}"
      wait_for etcd-cluster env ETCDCTL_API=3 etcdctl --endpoints "$addr" endpoint health --cluster
      ;;
    redis-always|redis-everysec)
      local port; port=$(free_port)
      redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$peer" \
        --appendonly yes --appendfsync "${peer#redis-}" --daemonize no \
        --logfile "$dir/$peer.log" >/dev/null 2>&1 &
      echo $! >"$dir/$peer.pids"
      addr="127.0.0.1:$port"
      wait_for redis redis-cli -h 127.0.0.1 -p "$port" ping
      ;;
    nats)
      local port; port=$(free_port)
      nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir/$peer" -l "$dir/$peer.log" >/dev/null 2>&1 &
      echo $! >"$dir/$peer.pids"
      addr="127.0.0.1:$port"
      wait_for nats grep -q "Server is ready" "$dir/$peer.log"
      ;;
    *) die "unknown peer $peer (etcd, etcd-cluster, redis-always, redis-everysec, nats)" ;;
  esac
  echo "$addr"
}

stop() {
  local pids="$dir/$peer.pids" name pid
  [ -f "$pids" ] || die "no PID file for $peer in $dir"
  name=$(proc_name "$peer")
  while read -r pid; do
    # Only signal the PID if it is still the process we started.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$pids"
  rm -rf "${dir:?}/$peer" "$pids"
}

cmd=${1:-}
case $cmd in
  install) install ;;
  install-build) install build-only ;;
  start|stop)
    [ $# -eq 3 ] || die "usage: peers.sh $cmd PEER DIR"
    peer=$2; dir=$3
    mkdir -p "$dir"
    proc_name "$peer" >/dev/null
    "$cmd"
    ;;
  *) die "usage: peers.sh install | install-build | start PEER DIR | stop PEER DIR" ;;
esac
