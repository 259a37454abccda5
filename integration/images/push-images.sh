#!/usr/bin/env bash
# Pushes the layouts made by build-images.sh to a plain-HTTP registry (registry.sh).
#
#   push-images.sh OUTDIR REGISTRY_HOSTPORT [NAME...]
#
# e.g. push-images.sh /tmp/images 127.0.0.1:5000 pushes oci:OUTDIR/NAME:v1 to
# 127.0.0.1:5000/ipcs/NAME:v1 for every NAME in small big multi huge whose layout exists
# (or just the NAMEs given). multi is an image index: it is pushed with --all so both
# platform manifests and all their blobs land, and --preserve-digests makes skopeo fail
# rather than rewrite a manifest, so registry digests equal the layout digests.
# Prints one line per image: REF<TAB>DIGEST (the top manifest or index digest).
# Re-running is cheap: the registry already has the blobs, skopeo only checks them.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
out="$1"; reg="$2"; shift 2
case "$reg" in http://*|https://*) reg="${reg#*://}";; esac   # accept registry.sh url output too
reg="${reg%/}"
TAG=v1
if [ $# -gt 0 ]; then names=("$@"); else names=(small big multi huge); fi
command -v skopeo >/dev/null || { echo "push-images.sh: skopeo missing (apt-get install skopeo)" >&2; exit 1; }

dfile=$(mktemp); trap 'rm -f "$dfile"' EXIT
pushed=0
for n in "${names[@]}"; do
  L="$out/$n"
  if [ ! -f "$L/index.json" ]; then
    if [ $# -gt 0 ]; then echo "push-images.sh: no layout $L (run build-images.sh)" >&2; exit 1; fi
    continue   # e.g. huge is only built on request
  fi
  ref="$reg/ipcs/$n:$TAG"
  t0=$(date +%s)
  # --dest-tls-verify=false: the test registry speaks plain HTTP on 127.0.0.1.
  skopeo copy --quiet --all --preserve-digests --retry-times 2 --dest-tls-verify=false \
    --digestfile "$dfile" "oci:$L:$TAG" "docker://$ref" >&2
  printf '%s\t%s\n' "$ref" "$(cat "$dfile")"
  echo "[push-images] $ref in $(( $(date +%s) - t0 )) s" >&2
  pushed=$((pushed + 1))
done
[ "$pushed" -gt 0 ] || { echo "push-images.sh: no layout found in $out" >&2; exit 1; }
