#!/usr/bin/env bash
# Builds the ipcs test images as OCI image layouts (umoci + GNU tar + jq; no registry, no
# network, no container engine).
#
#   build-images.sh [--force] [--huge] [--only NAME[,NAME...]] OUTDIR
#
#   OUTDIR/small   1 base layer (static busybox) + 1 tiny layer; Cmd prints the known file
#   OUTDIR/big     7 layers, >= 50 MiB compressed: Debian package files copied from this
#                  machine's /usr (python stdlib, perl, libc/libstdc++/libssl/libicu/coreutils)
#                  plus 2 layers of deterministic incompressible data and a known-files layer
#   OUTDIR/multi   image index: linux/amd64 (runnable) + linux/arm64/v8 (not runnable)
#   OUTDIR/huge    only with --huge or IPCS_BUILD_HUGE=1: like big, >= 300 MiB compressed,
#                  shares no blob with the other images
# Each layout holds one tag, "v1" (oci:OUTDIR/NAME:v1). OUTDIR/summary.tsv lists them.
#
#   --force   rebuild images whose layout already exists (default: keep them, idempotent)
#   --huge    also build huge (env IPCS_BUILD_HUGE=1 does the same)
#   --only    build just these (small,big,multi,huge); --only huge implies --huge
#
# Known files (see integration/images/README.md): /etc/ipcs-test.txt in every image holds
# "ipcs test image: NAME v1\n"; big and huge also hold /opt/ipcs/known-1m.bin (1 MiB) and
# /opt/ipcs/SHA256SUMS (sha256sum -c format, covers every file under /opt/ipcs).
#
# Determinism: tar entries are sorted, owned 0:0, with a fixed mtime and no atime/ctime,
# generated data comes from AES-CTR over zeros with fixed keys, config/history timestamps
# are fixed, so rebuilding on the same machine (same Debian package versions) gives the
# same digests. Needs Debian packages: umoci jq tar openssl coreutils busybox-static.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }
RECIPE=1                          # bump when a recipe changes: cached layouts get rebuilt
TAG=v1
CREATED=2024-01-01T00:00:00Z      # image config / history "created"
MTIME=@1704067200                 # = CREATED, every tar entry's mtime
HUGE_MTIME=@1706745600            # 2024-02-01: a different mtime keeps huge's blobs unique

force=""; huge="${IPCS_BUILD_HUGE:-}"; only=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1; shift;;
    --huge) huge=1; shift;;
    --only) only="${2:?--only needs a list}"; shift 2;;
    -h|--help) usage;;
    -*) echo "build-images.sh: unknown option $1" >&2; usage;;
    *) [ -z "$out" ] || usage; out="$1"; shift;;
  esac
done
[ -n "$out" ] || usage
[ "$huge" = 0 ] && huge=""
if [ -n "$only" ]; then
  IFS=, read -r -a images <<<"$only"
else
  images=(small big multi); [ -z "$huge" ] || images+=(huge)
fi
for n in "${images[@]}"; do
  case "$n" in small|big|multi|huge) ;; *) echo "build-images.sh: unknown image $n" >&2; exit 2;; esac
done

missing=()
for t in umoci jq tar openssl sha256sum; do command -v "$t" >/dev/null || missing+=("$t"); done
BUSYBOX="${BUSYBOX:-/bin/busybox}"
# busybox must be the static one (package busybox-static): the images carry no libc for it.
if [ ! -x "$BUSYBOX" ] || [[ "$(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true)" != *"not a dynamic executable"* ]]; then
  missing+=("busybox-static")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-images.sh: missing ${missing[*]} (Debian: apt-get install umoci jq tar openssl coreutils busybox-static)" >&2
  exit 1
fi

umask 022                          # modes of generated files are part of the layer digests
export LC_ALL=C                    # sort order is part of the layer digests
mkdir -p "$out"; out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/ipcs-build-images.XXXXXX)
trap 'rm -rf "$work"' EXIT
mtime=$MTIME

log() { echo "[build-images $(date +%T)] $*" >&2; }

# GNU tar options that make a layer depend on file contents, modes and names only.
tar_opts() {
  echo --format=posix --numeric-owner --owner=0 --group=0 "--mtime=$mtime" \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
}

# tar_dir SRC OUT.tar: layer holding SRC's contents at the image root.
tar_dir() {
  local names
  mapfile -t names < <(cd "$1" && ls -A)
  # shellcheck disable=SC2046
  tar -C "$1" $(tar_opts) --sort=name -cf "$2" "${names[@]}"
}

# pkg_list OUT PKG...: sorted list (relative to /) of the files of the installed Debian
# packages PKG and of their parent directories. /lib, /bin... are rewritten to /usr/...
# on merged-/usr systems so the layer holds real directories, not paths through symlinks.
pkg_list() {
  local outf="$1" p d sed_expr="" ; shift
  for d in bin sbin lib lib32 lib64 libx32; do
    # the /bin -> usr/bin links themselves belong to the base layer, not here
    [ "$(readlink "/$d" 2>/dev/null)" = "usr/$d" ] && sed_expr+="s#^/$d/#/usr/$d/#;\\#^/$d\$#d;"
  done
  : >"$work/files"
  for p in "$@"; do
    if dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      dpkg -L "$p" >>"$work/files"
    else
      log "warning: package $p not installed, its files are left out (image content differs)"
    fi
  done
  sed -e "$sed_expr" "$work/files" | sort -u | while IFS= read -r f; do
    # keep files and symlinks; directories come back below as parents
    if [ -L "$f" ] || [ -f "$f" ]; then echo "${f#/}"; fi
  done >"$work/leaves"
  awk -F/ '{ p = $1; for (i = 2; i < NF; i++) { p = p "/" $i; print p } if (NF > 1) print $1 }' \
    "$work/leaves" | sort -u >"$work/parents"
  # drop anything below a parent that is a symlink on this host (tar would store the link
  # and then files "under" it, which an unpacker must refuse)
  : >"$work/badprefix"
  while IFS= read -r d; do [ -L "/$d" ] && echo "$d/" >>"$work/badprefix"; done <"$work/parents"
  sort -u "$work/leaves" "$work/parents" | { if [ -s "$work/badprefix" ]; then grep -vF -f "$work/badprefix"; else cat; fi; } \
    | sort -u >"$outf"
}

# tar_pkgs OUT.tar PKG...: layer with the files of Debian packages, as installed here.
tar_pkgs() {
  local t="$1"; shift
  pkg_list "$work/list" "$@"
  # shellcheck disable=SC2046
  tar -C / $(tar_opts) --no-recursion -cf "$t" -T "$work/list"
}

# rand_file PATH BYTES SEED: incompressible, same bytes on every run and machine
# (AES-128-CTR keystream; key derived from SEED).
rand_file() {
  local key; key=$(printf '%s' "$3" | sha256sum | cut -c1-32)
  mkdir -p "$(dirname "$1")"
  head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 >"$1"
}

# add_layer LAYOUT TAR WHAT: append TAR (umoci gzips it) with a fixed-time history entry.
add_layer() {
  umoci raw add-layer --image "$1:$TAG" --history.created "$CREATED" \
    --history.created_by "ipcs build-images.sh: $3" "$2"
  rm -f "$2"
}

new_image() {   # new_image LAYOUT [TAG]
  [ -d "$1" ] || umoci init --layout "$1"
  umoci new --image "$1:${2:-$TAG}"
}

# finish_config LAYOUT[:TAG] ARCH [umoci config options...]
finish_config() {
  local img="$1" arch="$2"; shift 2
  umoci config --image "$img" --created "$CREATED" --history.created "$CREATED" \
    --history.created_by "ipcs build-images.sh: config" --os linux --architecture "$arch" \
    --config.env PATH=/usr/bin:/bin --config.workingdir / "$@"
}

# base layer: a merged-/usr skeleton (bin -> usr/bin, like Debian 12, so the package
# layers fit) and a static busybox with a few applet links, so small/big/multi(amd64) can
# run (e.g. ctr run ... cat /etc/ipcs-test.txt). Same bytes in small, big and multi/amd64.
stage_base() {
  local s="$1" a
  mkdir -p "$s/usr/bin" "$s/usr/sbin" "$s/usr/lib" "$s/usr/lib64" "$s/tmp" "$s/etc"
  for a in bin sbin lib lib64; do ln -s "usr/$a" "$s/$a"; done
  chmod 1777 "$s/tmp"
  cp "$BUSYBOX" "$s/usr/bin/busybox"; chmod 0755 "$s/usr/bin/busybox"
  for a in sh cat ls echo head tail wc du find grep stat cmp sha256sum md5sum sleep true false env; do
    ln -s busybox "$s/usr/bin/$a"
  done
  echo "root:x:0:0:root:/:/bin/sh" >"$s/etc/passwd"
  echo "root:x:0:" >"$s/etc/group"
}

known_text() { printf 'ipcs test image: %s v1\n' "$1"; }

build_small() {
  local L="$1" s
  new_image "$L"
  s="$work/small-base"; stage_base "$s"; tar_dir "$s" "$work/l.tar"; rm -rf "$s"
  add_layer "$L" "$work/l.tar" "base: static busybox"
  s="$work/small-files"; mkdir -p "$s/etc" "$s/usr/share/ipcs/gen"
  known_text small >"$s/etc/ipcs-test.txt"
  for i in 01 02 03 04 05 06 07 08; do
    seq -f "ipcs small generated file $i line %g" 1 $((10#$i * 50)) >"$s/usr/share/ipcs/gen/file-$i.txt"
  done
  tar_dir "$s" "$work/l.tar"; rm -rf "$s"
  add_layer "$L" "$work/l.tar" "known file + generated text files"
  finish_config "$L:$TAG" amd64 --config.cmd /bin/sh --config.cmd -c --config.cmd "cat /etc/ipcs-test.txt" \
    --config.label org.opencontainers.image.title=ipcs-small
}

# build_bulky LAYOUT NAME RANDOM_LAYERS RANDOM_FILES_PER_LAYER RANDOM_FILE_MIB PKG_GROUPS...
# PKG_GROUPS are "label:pkg,pkg,..." strings, one layer each.
build_bulky() {
  local L="$1" name="$2" nrl="$3" nrf="$4" mib="$5" s g label pkgs i j f
  shift 5
  new_image "$L"
  s="$work/$name-base"; stage_base "$s"; tar_dir "$s" "$work/l.tar"; rm -rf "$s"
  add_layer "$L" "$work/l.tar" "base: static busybox"
  for g in "$@"; do
    label="${g%%:*}"; IFS=, read -r -a pkgs <<<"${g#*:}"
    log "$name: layer $label (${pkgs[*]})"
    tar_pkgs "$work/l.tar" "${pkgs[@]}"
    add_layer "$L" "$work/l.tar" "files of Debian packages ${pkgs[*]}"
  done
  s="$work/$name-rand"; : >"$work/randsums"
  for i in $(seq 1 "$nrl"); do
    log "$name: random layer $i ($nrf x $mib MiB)"
    for j in $(seq 1 "$nrf"); do
      f="opt/ipcs/random/layer-$i/rand-$j.bin"
      rand_file "$s/$f" $((mib * 1024 * 1024)) "ipcs-$name-random-$i-$j"
      (cd "$s" && sha256sum "$f") >>"$work/randsums"
    done
    tar_dir "$s" "$work/l.tar"; rm -rf "$s"
    add_layer "$L" "$work/l.tar" "deterministic random data, layer $i"
  done
  s="$work/$name-known"; mkdir -p "$s/etc" "$s/opt/ipcs"
  known_text "$name" >"$s/etc/ipcs-test.txt"
  rand_file "$s/opt/ipcs/known-1m.bin" 1048576 ipcs-known-1m
  cp "$s/etc/ipcs-test.txt" "$s/opt/ipcs/ipcs-test.txt"
  # SHA256SUMS lets a test check every byte after unpack: (cd ROOT && sha256sum -c opt/ipcs/SHA256SUMS)
  { (cd "$s" && find etc opt/ipcs -type f | sort | xargs sha256sum); cat "$work/randsums"; } \
    | sort -k2 >"$work/sums"
  mv "$work/sums" "$s/opt/ipcs/SHA256SUMS"
  tar_dir "$s" "$work/l.tar"; rm -rf "$s"
  add_layer "$L" "$work/l.tar" "known files"
  finish_config "$L:$TAG" amd64 --config.cmd /bin/sh --config.cmd -c \
    --config.cmd "cat /etc/ipcs-test.txt && cd / && sha256sum -c -s opt/ipcs/SHA256SUMS && echo checksums ok" \
    --config.label "org.opencontainers.image.title=ipcs-$name"
}

build_big() {
  build_bulky "$1" big 2 2 8 \
    "python:libpython3.11-minimal,libpython3.11-stdlib,python3.11-minimal,zlib1g,libexpat1" \
    "perl:perl-modules-5.36,libperl5.36" \
    "libs:libc6,libstdc++6,libssl3,libicu72,coreutils"
}

build_huge() {
  mtime=$HUGE_MTIME
  build_bulky "$1" huge 4 3 16 \
    "python:libpython3.11-minimal,libpython3.11-stdlib,python3.11-minimal,zlib1g,libexpat1" \
    "perl:perl-modules-5.36,libperl5.36" \
    "libs:libc6,libstdc++6,libssl3,libicu72,coreutils" \
    "git:git,git-man" \
    "toolchain:gcc-12,cpp-12,binutils-x86-64-linux-gnu" \
    "llvm:libllvm14" \
    "locales:locales"
  mtime=$MTIME
}

# multi: two images in one layout, then an OCI image index over their manifests becomes
# the only tagged entry (umoci itself cannot write an index).
build_multi() {
  local L="$1" s arch m_amd m_arm idx dgst
  s="$work/multi-common"; mkdir -p "$s/etc" "$s/usr/share/ipcs"
  known_text multi >"$s/etc/ipcs-test.txt"
  seq -f "ipcs multi common line %g" 1 200 >"$s/usr/share/ipcs/common.txt"
  tar_dir "$s" "$work/common.tar"; rm -rf "$s"
  for arch in amd64 arm64; do
    new_image "$L" "$arch"
    if [ "$arch" = amd64 ]; then
      s="$work/multi-base"; stage_base "$s"; tar_dir "$s" "$work/l.tar"; rm -rf "$s"
      umoci raw add-layer --image "$L:$arch" --history.created "$CREATED" \
        --history.created_by "ipcs build-images.sh: base: static busybox" "$work/l.tar"
    fi
    # the common layer is the same blob in both manifests
    umoci raw add-layer --image "$L:$arch" --history.created "$CREATED" \
      --history.created_by "ipcs build-images.sh: common files" "$work/common.tar"
    s="$work/multi-$arch"; mkdir -p "$s/etc"; echo "$arch" >"$s/etc/ipcs-arch.txt"
    tar_dir "$s" "$work/l.tar"; rm -rf "$s"
    umoci raw add-layer --image "$L:$arch" --history.created "$CREATED" \
      --history.created_by "ipcs build-images.sh: arch file" "$work/l.tar"
    finish_config "$L:$arch" "$arch" --config.cmd /bin/sh --config.cmd -c \
      --config.cmd "cat /etc/ipcs-test.txt /etc/ipcs-arch.txt" --config.label org.opencontainers.image.title=ipcs-multi
  done
  rm -f "$work/common.tar" "$work/l.tar"
  umoci gc --layout "$L"
  m_amd=$(jq -c '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="amd64") | {mediaType,digest,size}' "$L/index.json")
  m_arm=$(jq -c '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="arm64") | {mediaType,digest,size}' "$L/index.json")
  idx=$(jq -cn --argjson a "$m_amd" --argjson b "$m_arm" '{schemaVersion:2,
    mediaType:"application/vnd.oci.image.index.v1+json",
    manifests:[$a + {platform:{architecture:"amd64",os:"linux"}},
               $b + {platform:{architecture:"arm64",os:"linux",variant:"v8"}}]}')
  printf '%s' "$idx" >"$work/index.blob"
  dgst=$(sha256sum "$work/index.blob" | cut -d' ' -f1)
  mv "$work/index.blob" "$L/blobs/sha256/$dgst"
  jq -cn --arg d "sha256:$dgst" --argjson n "$(printf '%s' "$idx" | wc -c)" --arg t "$TAG" \
    '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.index.v1+json",digest:$d,size:$n,
      annotations:{"org.opencontainers.image.ref.name":$t}}]}' >"$L/index.json"
}

blob() { echo "$1/blobs/sha256/${2#sha256:}"; }

# describe LAYOUT NAME: one summary.tsv line per manifest:
# name  ref  platform  manifest-digest  top-digest  layers  compressed-bytes
describe() {
  local L="$1" name="$2" top mt m
  top=$(jq -r --arg t "$TAG" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' "$L/index.json")
  mt=$(jq -r '.mediaType // ""' "$(blob "$L" "$top")")
  if [ "$mt" = application/vnd.oci.image.index.v1+json ]; then
    jq -r '.manifests[] | "\(.digest) \(.platform.os)/\(.platform.architecture)\(if .platform.variant then "/"+.platform.variant else "" end)"' \
      "$(blob "$L" "$top")"
  else
    echo "$top $(jq -r '"\(.os)/\(.architecture)"' "$(blob "$L" "$(jq -r .config.digest "$(blob "$L" "$top")")")")"
  fi | while read -r m plat; do
    jq -r --arg n "$name" --arg t "$TAG" --arg p "$plat" --arg m "$m" --arg top "$top" \
      '[$n, $t, $p, $m, $top, (.layers|length), ([.layers[].size]|add)] | @tsv' "$(blob "$L" "$m")"
  done
}

is_built() {   # layout exists, is from this recipe, and its tag resolves to a present blob
  local L="$1" top
  [ -f "$L/index.json" ] && [ "$(cat "$L/.ipcs-recipe" 2>/dev/null)" = "$RECIPE" ] || return 1
  top=$(jq -r --arg t "$TAG" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' "$L/index.json" 2>/dev/null) || return 1
  [ -n "$top" ] && [ -f "$(blob "$L" "$top")" ]
}

min_bytes() { case "$1" in big) echo $((50 * 1024 * 1024));; huge) echo $((300 * 1024 * 1024));; *) echo 0;; esac; }

for name in "${images[@]}"; do
  L="$out/$name"
  if [ -z "$force" ] && is_built "$L"; then
    log "$name: cached in $L (use --force to rebuild)"
    continue
  fi
  t0=$(date +%s)
  log "$name: building"
  tmp="$out/.$name.building"
  rm -rf "$tmp"
  "build_$name" "$tmp"
  umoci gc --layout "$tmp" 2>/dev/null || true   # drop the intermediate configs/manifests
  echo "$RECIPE" >"$tmp/.ipcs-recipe"
  total=$(describe "$tmp" "$name" | awk -F'\t' '{s += $7} END {print s+0}')
  if [ "$total" -lt "$(min_bytes "$name")" ]; then
    echo "build-images.sh: $name is only $total bytes compressed, below $(min_bytes "$name"): packages missing on this host?" >&2
    exit 1
  fi
  # swap in only once complete, so an interrupted build never looks cached
  rm -rf "$L"; mv "$tmp" "$L"
  log "$name: built in $(( $(date +%s) - t0 )) s"
done

# summary of every layout present, built now or earlier
{
  printf 'name\ttag\tplatform\tmanifest\ttop\tlayers\tcompressed_bytes\n'
  for name in small big multi huge; do
    if is_built "$out/$name"; then describe "$out/$name" "$name"; fi
  done
} >"$out/summary.tsv"
column -t -s $'\t' "$out/summary.tsv" 2>/dev/null || cat "$out/summary.tsv"
