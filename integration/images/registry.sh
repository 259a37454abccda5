#!/usr/bin/env bash
# Runs a private OCI registry (Debian's docker-registry, distribution v2) for the tests.
#
#   registry.sh start  DIR [--port P]   writes DIR/config.yml, starts the registry in the
#                                       background (pid in DIR/registry.pid), waits until
#                                       GET /v2/ answers, prints its URL. Idempotent: if it
#                                       already runs from DIR, just prints the URL.
#   registry.sh stop   DIR              stops it (TERM, then KILL after 10 s). Idempotent.
#   registry.sh url    DIR              prints http://127.0.0.1:PORT of the running registry
#   registry.sh hostport DIR            prints 127.0.0.1:PORT (what skopeo/containerd refs use)
#   registry.sh status DIR              exit 0 if it runs and answers, 1 otherwise
#   registry.sh log    DIR              prints the path of its log file
#
# Default port 5000 (env IPCS_REGISTRY_PORT or --port override it). It binds 127.0.0.1 only.
# Blobs live under DIR/storage. DIR/registry.log gets two lines per HTTP request (the
# "response completed" app log line with http.request.method/uri, plus the combined-format
# access log line), so tests can prove no blob was fetched with e.g.
#   off=$(stat -c %s "$(registry.sh log DIR)"); ...action...; tail -c +$((off+1)) LOG | grep -c '/blobs/sha256:'
# The log is appended to (a "=== ipcs registry start" marker separates runs), never truncated.
# Env IPCS_REGISTRY_LOG_LEVEL (default info; info already logs every request) changes the level.
# Debian's own docker-registry service (0.0.0.0:5000) is not used; if it holds the port,
# start fails with a hint (scripts/install-system-deps.sh stops it).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd="$1"; dir=$(realpath -m "$2"); shift 2   # absolute: the config path and pid check embed it
port="${IPCS_REGISTRY_PORT:-5000}"; port_given=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="${2:?--port needs a value}"; port_given=1; shift 2;;
    -h|--help) usage;;
    *) echo "registry.sh: unknown option $1" >&2; usage;;
  esac
done
REGISTRY_BIN="${REGISTRY_BIN:-/usr/bin/docker-registry}"
pidf="$dir/registry.pid"; portf="$dir/registry.port"; log="$dir/registry.log"; conf="$dir/config.yml"

# A pid file is only trusted if that pid is still our registry serving DIR's config
# (pids get reused after a crash or reboot).
running_pid() {
  local pid
  pid=$(cat "$pidf" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$conf" || return 1
  echo "$pid"
}
cur_port() { cat "$portf" 2>/dev/null || echo "$port"; }
answers() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$1/v2/" 2>/dev/null; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  # http.secret is fixed so restarts keep upload sessions valid; it guards nothing here.
  cat >"$conf" <<EOF
version: 0.1
log:
  level: ${IPCS_REGISTRY_LOG_LEVEL:-info}
  formatter: text
  fields:
    service: ipcs-test-registry
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: ipcs-test-registry-not-a-secret
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    if pid=$(running_pid); then
      p=$(cur_port)
      if [ -n "$port_given" ] && [ "$p" != "$port" ]; then
        echo "registry.sh: already running from $dir on port $p (asked for $port); stop it first" >&2; exit 1
      fi
      if answers "$p"; then echo "http://127.0.0.1:$p"; exit 0; fi
      # Alive but not answering: give it the same bounded wait as a fresh start below.
    else
      [ -x "$REGISTRY_BIN" ] || { echo "registry.sh: $REGISTRY_BIN missing (apt-get install docker-registry)" >&2; exit 1; }
      if port_busy "$port"; then
        echo "registry.sh: 127.0.0.1:$port is already in use by another process" >&2
        echo "  (Debian's docker-registry service listens on :5000: 'systemctl stop docker-registry'" >&2
        echo "   or 'service docker-registry stop', or pick another --port)" >&2
        exit 1
      fi
      mkdir -p "$dir/storage"
      write_config
      echo "$port" >"$portf"
      echo "=== ipcs registry start $(date -u +%FT%TZ) port $port" >>"$log"
      # setsid: the registry must outlive this script and not get the caller's signals.
      setsid "$REGISTRY_BIN" serve "$conf" >>"$log" 2>&1 </dev/null &
      echo $! >"$pidf"
    fi
    p=$(cur_port)
    started=$(cat "$pidf")
    for _ in $(seq 1 150); do   # bounded: 15 s
      if answers "$p"; then echo "http://127.0.0.1:$p"; exit 0; fi
      # Liveness by pid only: the cmdline check of running_pid can read an empty
      # /proc/PID/cmdline while setsid execs the registry, and took a live one for dead.
      kill -0 "$started" 2>/dev/null || { echo "registry.sh: registry exited; log tail:" >&2; tail -n 20 "$log" >&2; rm -f "$pidf"; exit 1; }
      sleep 0.1
    done
    echo "registry.sh: registry did not answer on 127.0.0.1:$p within 15 s; log tail:" >&2
    tail -n 20 "$log" >&2; exit 1;;
  stop)
    if pid=$(running_pid); then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
      echo "=== ipcs registry stop $(date -u +%FT%TZ)" >>"$log"
    fi
    rm -f "$pidf";;
  url)      running_pid >/dev/null || { echo "registry.sh: not running from $dir" >&2; exit 1; }; echo "http://127.0.0.1:$(cur_port)";;
  hostport) running_pid >/dev/null || { echo "registry.sh: not running from $dir" >&2; exit 1; }; echo "127.0.0.1:$(cur_port)";;
  status)   running_pid >/dev/null && answers "$(cur_port)";;
  log)      echo "$log";;
  *) usage;;
esac
