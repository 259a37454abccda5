# Shared helpers of the end-to-end scripts (sourced, not run). A script defines
# `diagnostics` (what to print when a check fails) and the counters `passed`, `failed`,
# `last_log` before calling `check`.

# The pinned upstream versions (KUBO_VERSION, CONTAINERD2_VERSION, NERDCTL_VERSION, ...).
# shellcheck source=scripts/versions.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/versions.sh"

# Where the tools, test images and ipcs are; a script may set its own afterwards.
#   TOOLS (IPCS_TOOLS, ~/.cache/ipcs-tools: scripts/install-*.sh), IMAGES (IPCS_IMAGES,
#   ~/.cache/ipcs-images: integration/images), IPCS (IPCS_BIN, target/release/ipcs),
#   IPFS, CLUSTER_CTL and NERDCTL inside TOOLS.
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
IMAGES="${IPCS_IMAGES:-$HOME/.cache/ipcs-images}"
IPCS="${IPCS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/ipcs}"
IPFS="$TOOLS/bin/ipfs"
CLUSTER_CTL="$TOOLS/bin/ipfs-cluster-ctl"
NERDCTL="$TOOLS/nerdctl-$NERDCTL_VERSION/bin/nerdctl"

say()    { echo "# $*"; }
indent() { sed 's/^/#   /'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs()   { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# finish_run LABEL RC: the end of a check script's EXIT trap, after its daemons are stopped.
# Counts a setup that never finished or a run cut short as failures (reads setup_done,
# all_run, started_at in ns, passed, failed; calls the script's `diagnostics`), keeps the
# work dir unless all passed, prints "LABEL: N passed, M failed" and exits 0 only if none failed.
finish_run() {
  local label="$1" rc="$2"
  if [ "$setup_done" != 1 ]; then
    echo "not ok - setup (exit status $rc)"; failed=$((failed + 1)); diagnostics
  elif [ "$all_run" != 1 ]; then
    echo "not ok - run aborted before every check ran (exit status $rc)"; failed=$((failed + 1))
  fi
  say "total run time $(secs $(( $(now_ms) - started_at / 1000000 ))) s"
  if [ "$failed" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$work"; else say "work dir kept: $work"; fi
  echo "$label: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] || exit 1
  exit 0
}

# on_exit LABEL STOP: a check script's exit, however it comes (SIGINT and SIGTERM exit
# 130 and 143): the script's own stdout/stderr back from fds 8/9, STOP (a function that
# stops the script's daemons) run with errors ignored, then finish_run LABEL.
on_exit() {
  ON_EXIT_LABEL="$1" ON_EXIT_STOP="$2"
  trap _on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
_on_exit() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  "$ON_EXIT_STOP"
  finish_run "$ON_EXIT_LABEL" "$rc"
}

# require_bins BIN...: exits 1 naming the first BIN that is not executable (make setup).
require_bins() {
  local b
  for b in "$@"; do [ -x "$b" ] || { echo "missing $b (make setup build)" >&2; exit 1; }; done
}

# check DESCRIPTION FUNCTION [ARGS...]: runs FUNCTION (which must `return 1` explicitly on
# every failing step: set -e does not apply inside a function called from `if`) and prints
# one TAP-like line.
check() {
  local desc="$1"; shift
  last_log=""
  local t0; t0=$(now_ms)
  if "$@"; then
    passed=$((passed + 1)); echo "ok - $desc"
  else
    failed=$((failed + 1)); echo "not ok - $desc"
    diagnostics
  fi
  say "($(secs $(( $(now_ms) - t0 ))) s)"
}

# show_logs NODE_DIR...: for a script's `diagnostics`: the failing step's log ($last_log,
# last 15 lines) and the last 8 lines of each node's NODE_DIR/ipcs.log.
show_logs() {
  if [ -n "$last_log" ] && [ -s "$last_log" ]; then
    say "--- $(basename "$last_log") (last 15 lines)"; tail -n 15 "$last_log" | indent
  fi
  local d
  for d in "$@"; do
    [ -f "$d/ipcs.log" ] && { say "--- ipcs log of $(basename "$d") (last 8 lines)"; tail -n 8 "$d/ipcs.log" | indent; }
  done
  return 0
}

# logged NAME CMD...: runs CMD with its output in $logs/NAME.log (remembered for diagnostics).
logged() { local name="$1"; shift; last_log="$logs/$name.log"; "$@" >"$last_log" 2>&1; }

# Kubo's RPC API is a unix socket (scripts/kubo-node.sh prints it as unix:///PATH).
#   kubo_maddr API               the multiaddr for `ipfs --api` (/unix/PATH)
#   kubo_rpc API CMD [CURL ARGS] POST /api/v0/CMD (e.g. "pin/ls?arg=CID") through the
#                                socket; body on stdout, fails on any HTTP error
kubo_sock()  { local a="$1"; [[ "$a" == unix://* ]] || { echo "not a unix:// Kubo API: $a" >&2; return 2; }; echo "${a#unix://}"; }
kubo_maddr() { echo "/unix$(kubo_sock "$1")"; }
kubo_rpc()   {
  local sock; sock=$(kubo_sock "$1") || return 2
  local cmd="$2"; shift 2
  curl -fsS -m 60 --unix-socket "$sock" -X POST "http://localhost/api/v0/$cmd" "$@"
}

# nerdctl's IPFS client (stargz-snapshotter's) dials only host:port, never a unix socket.
#   kubo_tcp_bridge API DIR   forwards a free 127.0.0.1 port to Kubo's socket for the
#                             duration of a test (pid in DIR/pid); prints the port
#   kubo_tcp_bridge_stop DIR
kubo_tcp_bridge() {
  local sock port _; sock=$(kubo_sock "$1") || return 2
  mkdir -p "$2"
  python3 "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tcp-unix-bridge.py" "$sock" "$2/port" \
    </dev/null >>"$2/bridge.log" 2>&1 8>&- 9>&- &
  echo $! >"$2/pid"
  for _ in $(seq 1 50); do port=$(cat "$2/port" 2>/dev/null) && [ -n "$port" ] && { echo "$port"; return 0; }; sleep 0.1; done
  return 1
}
kubo_tcp_bridge_stop() { [ -f "$1/pid" ] && kill "$(cat "$1/pid")" 2>/dev/null; rm -f "$1/pid"; return 0; }

# The one way every script starts `ipcs serve`:
#   start_ipcs --bin B --socket S --data D --log L --kubo API [--cwd DIR] [-- SERVE ARGS...]
# Runs `B serve` in the background in DIR (IPCS_CONFIG unset: the command line says it all;
# stdin closed, stderr appended to L, the harness's fds 8/9 not inherited, disowned so a
# later SIGKILL prints no job notice), sets IPCS_STARTED_PID, and waits up to 30 s until it
# answers `B blobs` on S. On failure the log's tail goes to stderr.
start_ipcs() {
  local bin="" socket="" data="" log="" kubo="" cwd="." extra=() _
  while [ $# -gt 0 ]; do
    case "$1" in
      --bin) bin="$2"; shift 2;; --socket) socket="$2"; shift 2;; --data) data="$2"; shift 2;;
      --log) log="$2"; shift 2;; --kubo) kubo="$2"; shift 2;; --cwd) cwd="$2"; shift 2;;
      --) shift; extra=("$@"); break;;
      *) echo "start_ipcs: unknown option $1" >&2; return 2;;
    esac
  done
  [ -n "$bin" ] && [ -n "$socket" ] && [ -n "$data" ] && [ -n "$log" ] && [ -n "$kubo" ] \
    || { echo "start_ipcs: --bin, --socket, --data, --log and --kubo are required" >&2; return 2; }
  mkdir -p "$(dirname "$socket")" "$(dirname "$log")"
  (cd "$cwd" && exec env -u IPCS_CONFIG "$bin" serve --socket "$socket" --data-dir "$data" --kubo-api "$kubo" "${extra[@]}" \
     </dev/null >/dev/null 2>>"$log" 8>&- 9>&-) &
  IPCS_STARTED_PID=$!
  disown "$IPCS_STARTED_PID"
  for _ in $(seq 1 300); do
    [ -S "$socket" ] && timeout 10 "$bin" blobs --socket "$socket" >/dev/null 2>&1 && return 0
    kill -0 "$IPCS_STARTED_PID" 2>/dev/null || { echo "ipcs exited during start-up:" >&2; tail -n 20 "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "ipcs did not answer on $socket within 30 s:" >&2; tail -n 20 "$log" >&2; return 1
}

# ipcs's Prometheus metrics (--metrics-listen: host:port or unix:///PATH), for checks that
# count what ipcs did rather than read its log:
#   scrape_metrics LISTEN          the /metrics text on stdout; fails if it does not answer
#   metric_value SERIES            from the text on stdin, SERIES's value (name{labels} as
#                                  exported, e.g. 'ipcs_peer_adoptions_total{outcome="ok"}'),
#                                  0 if absent
#   ipcs_metric LISTEN SERIES      both; fails (prints nothing) if the endpoint does not answer
scrape_metrics() {
  case "$1" in
    unix://*) curl -fsS -m 5 --unix-socket "${1#unix://}" http://localhost/metrics ;;
    *) curl -fsS -m 5 "http://$1/metrics" ;;
  esac
}
metric_value() { awk -v s="$1" '$1 == s { v = $2 } END { printf "%d\n", (v == "" ? 0 : v) }'; }
ipcs_metric() { local t; t=$(scrape_metrics "$1") || return 1; metric_value "$2" <<<"$t"; }

# stop_pid PID [SIGNAL] [SECS]: sends SIGNAL (TERM) and waits up to SECS (30) for the
# process to be gone, then SIGKILLs it (start_ipcs disowns, so `wait` cannot be used).
stop_pid() {
  local pid="$1" sig="${2:-TERM}" secs="${3:-30}" _
  [ -n "$pid" ] || return 0
  kill "-$sig" "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((secs * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# write_section NAME OUT TABLE: puts the file TABLE, which starts with the line
# "<!-- NAME -->" and ends with "<!-- /NAME -->", into OUT in place of the section between
# those markers (appended if OUT has none; "-" = nothing written). The benches that own a
# section of BENCHMARKS.md write it this way.
write_section() {
  [ "$2" != - ] || return 0
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys
name, out, table = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().rstrip("\n")
try:
    text = open(out).read()
except FileNotFoundError:
    text = ""
# Whole lines only: a note quoting the marker is no marker.
pat = re.compile(rf"^<!-- {re.escape(name)} -->$.*?^<!-- /{re.escape(name)} -->$", re.S | re.M)
text = pat.sub(lambda _: table, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + table + "\n"
open(out, "w").write(text)
PY
  say "section written into $2"
}
