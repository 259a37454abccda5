#!/usr/bin/env bash
# Installs the Debian packages ipcs builds and tests with. Idempotent: skips what is present.
set -euo pipefail
pkgs=(containerd runc golang-go golang-github-containerd-containerd-dev protobuf-compiler
      docker-registry skopeo umoci busybox-static iproute2 curl jq psmisc openssl zstd pigz
      systemd python3)   # systemd: systemd-socket-activate for integration/restart.sh
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's containerd package starts a system daemon with the built-in store; the project runs
# its own containerd instances with their own config and state dirs, so the system one is stopped.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl stop containerd || true
fi
# The Debian docker-registry service binds all interfaces; tests run their own on 127.0.0.1.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
echo "system deps ok"
