#!/usr/bin/env bash
# Builds a pinned IPFS Cluster (ipfs-cluster-service + ipfs-cluster-ctl) from the Go
# module proxy into $IPCS_TOOLS/bin as versioned binaries plus unversioned symlinks.
# Idempotent: an existing versioned binary is kept.
#
# Like install-kubo.sh we build inside the downloaded module directory so the module's
# own go.mod/go.sum decide every dependency version. v1.1.6 declares `go 1.26`, so the
# default Go (1.26) builds it; if that fails we retry with a pinned toolchain
# ($CLUSTER_GO, fetched through the module proxy).
# Versions the proxy serves here: v1.1.6, v1.1.0, v1.0.8 (v1.1.1-v1.1.4 are refused,
# v1.1.5 fails checksum-database verification).
#
# Closed-network patch (applied to a scratch copy of the module; the module cache stays
# pristine, and `go build -overlay` refuses files under GOMODCACHE):
# clusterhost.go hard-codes libp2p.NATPortMap(), which at every daemon start runs UPnP
# discovery (SSDP multicast to 239.255.255.250:1900) and NAT-PMP to the default gateway,
# with no service.json switch to turn it off. We drop that option, and also
# EnableAutoRelayWithPeerSource/EnableHolePunching (useless between loopback peers, and
# also not configurable). The binaries carry the suffix $PATCH_TAG so an unpatched build
# is never mistaken for this one.
set -euo pipefail
. "$(dirname "$0")/versions.sh"
CLUSTER_GO="${CLUSTER_GO:-go1.26.0}"
TOOLS="${IPCS_TOOLS:-$HOME/.cache/ipcs-tools}"
MOD="github.com/ipfs-cluster/ipfs-cluster"
PATCH_TAG="ipcs1"
cmds=(ipfs-cluster-service ipfs-cluster-ctl)
ver="$CLUSTER_VERSION-$PATCH_TAG"
mkdir -p "$TOOLS/bin"

missing=()
for c in "${cmds[@]}"; do
  [ -x "$TOOLS/bin/$c-$ver" ] || missing+=("$c")
done

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck source=scripts/go-module.sh
  . "$(dirname "$0")/go-module.sh"
  GO=$(go_bin)
  export GOFLAGS=-mod=mod
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  dir=$(GOTOOLCHAIN=local module_dir "$MOD" "$CLUSTER_VERSION")
  # Patch clusterhost.go in a writable copy; fail loudly if upstream code moved.
  src="$scratch/src"
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  f="$src/clusterhost.go"
  sed -i -E \
    -e 's#^(\s*)libp2p\.NATPortMap\(\),#\1// ipcs: libp2p.NATPortMap() removed (UPnP/NAT-PMP dial out)#' \
    -e 's#^(\s*)libp2p\.EnableHolePunching\(\),#\1// ipcs: libp2p.EnableHolePunching() removed#' \
    -e 's#^(\s*)libp2p\.EnableAutoRelayWithPeerSource\(newPeerSource\(hostGetter, dhtGetter\)\),#\1// ipcs: libp2p.EnableAutoRelayWithPeerSource() removed#' \
    "$f"
  grep -qE '^\s*libp2p\.(NATPortMap|EnableHolePunching|EnableAutoRelay)' "$f" || [ "$(grep -c '// ipcs:' "$f")" != 3 ] \
    && { echo "clusterhost.go of $CLUSTER_VERSION does not match the closed-network patch" >&2; exit 1; }
  # hostGetter/dhtGetter were only used by autorelay; keep them "used" for the compiler.
  sed -i -E 's#^(\s*)// ipcs: libp2p\.EnableAutoRelayWithPeerSource\(\) removed#&\n\1libp2p.Option(func(*libp2p.Config) error { _, _ = hostGetter, dhtGetter; return nil }),#' "$f"
  start=$(date +%s)
  build() { # $1 = GOTOOLCHAIN value
    for c in "${missing[@]}"; do
      (cd "$src" && GOTOOLCHAIN="$1" "$GO" build -trimpath -o "$TOOLS/bin/$c-$ver.tmp" "./cmd/$c") || return 1
    done
  }
  if ! build auto; then
    echo "default Go failed; retrying with GOTOOLCHAIN=$CLUSTER_GO" >&2
    build "$CLUSTER_GO"
  fi
  for c in "${missing[@]}"; do
    mv "$TOOLS/bin/$c-$ver.tmp" "$TOOLS/bin/$c-$ver"
  done
  echo "built ${missing[*]} in $(( $(date +%s) - start ))s" >&2
fi

for c in "${cmds[@]}"; do
  ln -sf "$TOOLS/bin/$c-$ver" "$TOOLS/bin/$c"
done
echo "ipfs-cluster $("$TOOLS/bin/ipfs-cluster-service-$ver" --version 2>&1 | head -1) ($PATCH_TAG closed-network patch) ok: $TOOLS/bin/ipfs-cluster-service, $TOOLS/bin/ipfs-cluster-ctl"
