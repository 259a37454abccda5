#!/usr/bin/env bash
# Runs a throwaway containerd (1.6 from Debian, or the pinned 2.x built by
# scripts/install-containerd2.sh) whose whole state lives in one directory.
#
#   containerd-node.sh start DIR --version 1.6|2 (--content-socket SOCK | --builtin-content)
#                      [--snapshotter overlayfs|native] [--log-level LEVEL]
#                      [--differ walking|ipcs [--differ-socket SOCK]]
#   containerd-node.sh stop DIR
#
# start writes DIR/config.toml (root DIR/root, state DIR/state, gRPC DIR/containerd.sock,
# ttrpc DIR/containerd.sock.ttrpc, no TCP listener, no debug/metrics socket), starts containerd
# in the background (log DIR/containerd.log, pid DIR/containerd.pid), waits up to
# $CONTAINERD_START_TIMEOUT seconds (default 30) until `ctr version` answers, and prints the
# gRPC address on stdout (nothing else goes to stdout).
#   --content-socket SOCK  built-in content store disabled, proxy plugin "ipcs" (type content)
#                          dialing SOCK. The proxy connects lazily: containerd starts even when
#                          nothing listens on SOCK yet (a pull then hangs until something does).
#   --builtin-content      containerd's own content store, no proxy (baseline for benchmarks).
#   --ipcs-differ          (2.x, with --content-socket) ipcs applies the layers: proxy plugin
#                          "ipcs-diff" (type diff) on the same socket, the transfer service's
#                          unpack_config with differ "ipcs-diff", and the diff service trying
#                          ipcs-diff first, then walking. Without it: containerd's walking
#                          differ, reading layers through the content proxy.
#   --snapshotter NAME     default snapshotter for this node (default overlayfs; native is the
#                          fallback where overlay mounts do not work). Both stay loaded; the
#                          name goes into DIR/env as CONTAINERD_SNAPSHOTTER (ctr reads it) and,
#                          for 2.x, first into the transfer service's unpack_config.
#   --differ NAME          2.x only. walking (default): containerd's own applier. ipcs: proxy
#                          plugin "ipcs-diff" (type diff) on the content socket (or on
#                          --differ-socket SOCK), named as the differ of every unpack_config
#                          entry, and the diff service's default order ["ipcs-diff", "walking"].
# start also writes DIR/env (for `source`: CONTAINERD_ADDRESS, CONTAINERD_SNAPSHOTTER, CTR,
# CONTAINERD_BIN, CONTAINERD_VERSION; no namespace: pass -n) and DIR/ctr, a wrapper running
# the matching ctr against this node (`DIR/ctr -n test images ls`). Note: 1.6's
# `ctr images mount` ignores CONTAINERD_SNAPSHOTTER and always uses overlayfs.
# stop sends SIGTERM (SIGKILL after 10 s), then unmounts whatever is still mounted under DIR.
#
# Binaries: 1.6 -> ${CONTAINERD16_BIN:-/usr/bin/containerd}, ${CTR16_BIN:-/usr/bin/ctr};
#           2   -> $IPCS_TOOLS/containerd-$CONTAINERD2_VERSION (scripts/versions.sh)/bin/{containerd,ctr}
#                  (IPCS_TOOLS defaults to ~/.cache/ipcs-tools; run scripts/install-containerd2.sh).
set -euo pipefail

usage() {
  sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "containerd-node: $*" >&2; exit 1; }

[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2
version="" content_socket="" builtin=0 snapshotter=overlayfs log_level=info differ=walking differ_socket=""
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=${2:?}; shift 2 ;;
    --content-socket) content_socket=${2:?}; shift 2 ;;
    --builtin-content) builtin=1; shift ;;
    --snapshotter) snapshotter=${2:?}; shift 2 ;;
    --log-level) log_level=${2:?}; shift 2 ;;
    --differ) differ=${2:?}; shift 2 ;;
    --differ-socket) differ_socket=${2:?}; shift 2 ;;
    --ipcs-differ) differ=ipcs; shift ;;   # = --differ ipcs
    -h|--help) usage ;;
    *) die "unknown option $1" ;;
  esac
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
addr="$dir/containerd.sock"
pidfile="$dir/containerd.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

stop_node() {
  if running; then
    local pid
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "containerd-node: $pid ignored SIGTERM, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$pidfile"
  # Leftover mounts (ctr images mount, snapshot tmpmounts) would keep DIR from being removed.
  local m
  for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "containerd-node: could not unmount $m" >&2
  done
}

case "$cmd" in
  stop) stop_node; exit 0 ;;
  start) ;;
  *) usage ;;
esac

tools="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
case "$version" in
  1.6|1)
    containerd_bin="${CONTAINERD16_BIN:-/usr/bin/containerd}"
    ctr_bin="${CTR16_BIN:-/usr/bin/ctr}"
    ;;
  2|2.*)
    . "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/versions.sh"
    v2="$CONTAINERD2_VERSION"
    containerd_bin="$tools/containerd-$v2/bin/containerd"
    ctr_bin="$tools/containerd-$v2/bin/ctr"
    ;;
  "") die "--version 1.6|2 is required" ;;
  *) die "unsupported --version $version (1.6 or 2)" ;;
esac
[ -x "$containerd_bin" ] || die "$containerd_bin missing (2.x: run scripts/install-containerd2.sh)"
[ -x "$ctr_bin" ] || die "$ctr_bin missing"
if [ "$builtin" = 1 ] && [ -n "$content_socket" ]; then die "--content-socket and --builtin-content exclude each other"; fi
[ "$builtin" = 1 ] || [ -n "$content_socket" ] || die "--content-socket SOCK or --builtin-content is required"
case "$snapshotter" in overlayfs|native) ;; *) die "--snapshotter must be overlayfs or native" ;; esac
case "$differ" in walking|ipcs) ;; *) die "--differ must be walking or ipcs" ;; esac
if [ "$differ" = ipcs ]; then
  case "$version" in 2|2.*) ;; *) die "--differ ipcs needs --version 2 (containerd 1.6 has no diff proxy plugins)" ;; esac
  differ_socket=${differ_socket:-$content_socket}
  [ -n "$differ_socket" ] || die "--differ ipcs needs --content-socket or --differ-socket"
fi

if running; then
  die "a containerd (pid $(cat "$pidfile")) already runs for $dir; stop it first"
fi

mkdir -p "$dir/root" "$dir/state"
chmod 0711 "$dir/root" "$dir/state"

# TOML basic strings: escape backslashes and quotes.
q() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

disabled=()
[ "$builtin" = 1 ] || disabled+=(io.containerd.content.v1.content)
# Plugins nothing in pull/unpack/mount needs: CRI (it would also open a TCP stream server),
# snapshotters that only probe and fail here, tracing, NRI (a socket under /var/run/nri),
# /opt/containerd, restart monitors.
disabled+=(io.containerd.grpc.v1.cri
           io.containerd.snapshotter.v1.aufs io.containerd.snapshotter.v1.btrfs
           io.containerd.snapshotter.v1.devmapper io.containerd.snapshotter.v1.zfs
           io.containerd.tracing.processor.v1.otlp io.containerd.internal.v1.tracing
           io.containerd.internal.v1.opt)
if [ "$version" = 1.6 ] || [ "$version" = 1 ]; then
  # (io.containerd.runtime.v1.linux stays: 1.6 tasks-service requires it.)
  disabled+=(io.containerd.internal.v1.restart)
  config_version=2
else
  disabled+=(io.containerd.cri.v1.images io.containerd.cri.v1.runtime
             io.containerd.podsandbox.controller.v1.podsandbox
             io.containerd.grpc.v1.sandbox-controllers
             io.containerd.snapshotter.v1.blockfile io.containerd.snapshotter.v1.erofs
             io.containerd.differ.v1.erofs io.containerd.ttrpc.v1.otelttrpc
             io.containerd.nri.v1.nri io.containerd.monitor.container.v1.restart)
  # The config version this containerd writes natively: 4 from 2.3 on (the server
  # sockets became plugins), 3 before. Writing the native one spares the in-memory
  # migration and its warning, and follows CONTAINERD2_VERSION when it is overridden.
  config_version=$("$containerd_bin" config default 2>/dev/null | awk '$1 == "version" { print $3; exit }')
  case "$config_version" in 3|4) ;; *) die "cannot tell the config version of $containerd_bin" ;; esac
fi

{
  echo "# written by integration/containerd-node.sh for containerd $version"
  echo "version = $config_version"
  echo "root = $(q "$dir/root")"
  echo "state = $(q "$dir/state")"
  printf 'disabled_plugins = ['
  sep=""
  for p in "${disabled[@]}"; do printf '%s%s' "$sep" "$(q "$p")"; sep=", "; done
  echo "]"
  echo
  if [ "$config_version" -ge 4 ]; then
    echo "[debug]"
    echo "  level = $(q "$log_level")"
    echo
    echo "[plugins.'io.containerd.server.v1.grpc']"
    echo "  address = $(q "$addr")"
    echo
    echo "[plugins.'io.containerd.server.v1.grpc-tcp']"
    echo "  address = \"\""
    echo
    echo "[plugins.'io.containerd.server.v1.ttrpc']"
    echo "  address = $(q "$addr.ttrpc")"
    echo
    echo "[plugins.'io.containerd.server.v1.debug']"
    echo "  address = \"\""
    echo
    echo "[plugins.'io.containerd.server.v1.metrics']"
    echo "  address = \"\""
  else
    echo "[grpc]"
    echo "  address = $(q "$addr")"
    echo "  tcp_address = \"\""
    echo
    echo "[ttrpc]"
    echo "  address = $(q "$addr.ttrpc")"
    echo
    echo "[debug]"
    echo "  address = \"\""
    echo "  level = $(q "$log_level")"
    echo
    echo "[metrics]"
    echo "  address = \"\""
  fi
  if [ "$builtin" != 1 ]; then
    echo
    echo "[proxy_plugins.ipcs]"
    echo "  type = \"content\""
    echo "  address = $(q "$content_socket")"
  fi
  if [ "$differ" = ipcs ]; then
    echo
    echo "[proxy_plugins.ipcs-diff]"
    echo "  type = \"diff\""
    echo "  address = $(q "$differ_socket")"
    echo
    echo "[plugins.'io.containerd.service.v1.diff-service']"
    echo "  default = [\"ipcs-diff\", \"walking\"]"
  fi
  if [ "$config_version" -ge 3 ]; then
    # 2.x `ctr images pull` goes through the transfer service, which unpacks only for the
    # platform/snapshotter pairs listed here (default: overlayfs only).
    for sn in "$snapshotter" $( [ "$snapshotter" = overlayfs ] && echo native || echo overlayfs ); do
      echo
      echo "[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]"
      echo "  platform = \"linux/amd64\""
      echo "  snapshotter = \"$sn\""
      echo "  differ = \"$( [ "$differ" = ipcs ] && echo ipcs-diff || echo walking )\""
    done
  fi
} >"$dir/config.toml"

cat >"$dir/env" <<EOF
CONTAINERD_ADDRESS=$(printf '%q' "$addr")
CONTAINERD_SNAPSHOTTER=$snapshotter
CONTAINERD_VERSION=$version
CONTAINERD_BIN=$(printf '%q' "$containerd_bin")
CTR=$(printf '%q' "$ctr_bin")
export CONTAINERD_ADDRESS CONTAINERD_SNAPSHOTTER
EOF
cat >"$dir/ctr" <<EOF
#!/bin/sh
# ctr for the containerd node in $dir
CONTAINERD_SNAPSHOTTER=\${CONTAINERD_SNAPSHOTTER:-$snapshotter} exec $(printf '%q' "$ctr_bin") --address $(printf '%q' "$addr") "\$@"
EOF
chmod +x "$dir/ctr"

rm -f "$addr" "$addr.ttrpc"
# setsid: the daemon must not die with the caller's terminal or process group.
# The binary's own dir first on PATH: containerd starts containerd-shim-runc-v2 from PATH, and
# Debian's 1.6 shim in /usr/bin does not speak to a 2.x daemon.
PATH="$(dirname "$containerd_bin"):$PATH" setsid "$containerd_bin" --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

timeout="${CONTAINERD_START_TIMEOUT:-30}"
deadline=$(( $(date +%s) + timeout ))
until [ -S "$addr" ] && timeout 5 "$ctr_bin" --address "$addr" version >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 20 "$dir/containerd.log" >&2
    rm -f "$pidfile"
    die "containerd exited during start-up (log: $dir/containerd.log)"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 20 "$dir/containerd.log" >&2
    stop_node
    die "containerd did not answer within ${timeout}s (log: $dir/containerd.log)"
  fi
  sleep 0.2
done
echo "$addr"
