#!/usr/bin/env bash
# `ipcs export` / `ipcs import`: images carried between two separate stacks as one CAR
# file, with no network between them.
#
#   integration/car.sh
#
# Two stacks on this machine, each Kubo (offline: no peering, no network at all) + ipcs +
# containerd 2.x (integration/containerd-node.sh); nothing connects them but the CAR file.
# Node A gets the test images small and multi (they share the busybox base layer) with
# `ctr images import` of their OCI layouts, no registry.
#   a. A: ipcs export small multi -o images.car; the CAR holds each block once (parsed
#      here), every blob of both images; its size is printed and compared to the sum of
#      the blobs (overhead bounded)
#   b. B: a CAR with one byte flipped is refused with a clear error; B keeps no blob, no
#      pin, no image
#   c. B: a truncated CAR: the same
#   d. B: a well-formed CAR whose index lists one blob under a wrong digest (built with
#      Kubo on A): the blobs adopted before the bad one are undone; nothing remains
#   d2. B: a valid CAR of some other DAG (a layer's own UnixFS DAG, no ipcs index) is
#      refused as not an ipcs CAR; nothing remains
#   e. B: ipcs import images.car: ctr images ls shows both, B's ipcs holds exactly the
#      CAR's blobs (A's CIDs), each pinned under B's store name, the CAR's root pin gone
#   f. B: ctr run of small and of multi (unpack + run) prints their known lines
#   g. B: importing the same CAR again adopts nothing and changes nothing
#   h. B: with ipcs stopped, `ipcs fsck --verify` finds B's store clean (every DAG read back
#      and hashed, every pin accounted for)
# Progress bars (src/cli/progress.rs), drawn on stderr only when it is a terminal. Checks a,
# e, g and h run with stdout and stderr into a pipe; a2, g2 and h2 run export, import and
# fsck --verify again with stderr on a pseudo-terminal (integration/pty-run.py), TERM the
# same in both (indicatif draws nothing when TERM is unset or "dumb"):
#   a2. export on a pty: the same CAR and stdout as a; the bar "export" drawn when made,
#       redrawn in place (CR + ESC[2K before each redraw), and left full at its end
#   g2. import on a pty: the bars "send", "verify" and "register", one after the other,
#       each drawn, redrawn in place and left full
#   h2. fsck --verify on a pty: the same summary as h; the bar "verify" drawn and left full
#   i. the pipe runs of a, e and h and the failed import of b (stderr a file) hold no ESC,
#      no carriage return and no bar
# One TAP-like line per check; the last line is `car: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
NS=car
SMALL=example.com/ipcs/small:v1
MULTI=example.com/ipcs/multi:v1

started_at=$(date +%s%N)
exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-car-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
passed=0 failed=0 setup_done=0 all_run=0 last_log=""
declare -A IPCS_PID=() API=()

ctr()   { local n=$1; shift; timeout -k 10 120 "$work/$n/containerd/ctr" -n "$NS" "$@" 2>/dev/null; }
ipfs()  { local n=$1; shift; timeout -k 5 60 "$IPFS" --api "$(kubo_maddr "${API[$n]}")" "$@"; }
blobs() { timeout -k 5 60 "$IPCS" blobs --settle 120 --socket "$work/$1/ipcs.sock"; }
# A terminal's TERM for every ipcs run (indicatif draws nothing when TERM is unset or
# "dumb"), so only whether stderr is a terminal differs between pipe and pty runs.
TTY_TERM=xterm-256color
# cli_argv N ARGS...: sets ARGV to the command line of `ipcs ARGS` against node N's stack;
# fsck_argv: ARGV of `ipcs fsck --verify` of B's store (ipcs stopped).
cli_argv()  { local n=$1; shift; ARGV=(timeout -k 5 300 "$IPCS" "$@" --socket "$work/$n/ipcs.sock" \
                --containerd-socket "$work/$n/containerd/containerd.sock" -n "$NS"); }
fsck_argv() { ARGV=(timeout -k 5 300 "$IPCS" fsck --verify --data-dir "$work/b/data" --kubo-api "${API[b]}"); }
cli()    { local ARGV; cli_argv "$@"; TERM=$TTY_TERM "${ARGV[@]}"; }
fsck_b() { local ARGV; fsck_argv; TERM=$TTY_TERM "${ARGV[@]}"; }
# on_pty NAME ARGV...: runs ARGV with stdout in $logs/NAME.log and stderr on a pty, whose
# bytes go to $logs/NAME.tty.
on_pty() {
  local name=$1; shift; last_log="$logs/$name.log"
  TERM=$TTY_TERM python3 "$root/integration/pty-run.py" "$logs/$name.tty" -- "$@" >"$last_log"
}
# piped NAME CMD...: CMD with stdout and stderr into a pipe, its bytes in $logs/NAME.log.
piped() {
  local name=$1; shift; last_log="$logs/$name.log"
  "$@" 2>&1 | cat >"$last_log"
  return "${PIPESTATUS[0]}"
}

diagnostics() { show_logs "$work/a" "$work/b"; }

ipcs_start() {
  local n=$1 d="$work/$1"
  start_ipcs --bin "$IPCS" --socket "$d/ipcs.sock" --data "$d/data" --log "$d/ipcs.log" --kubo "${API[$n]}"
  IPCS_PID[$n]=$IPCS_STARTED_PID
}

stop_all() {
  local n
  for n in a b; do
    timeout 120 "$root/integration/containerd-node.sh" stop "$work/$n/containerd" >/dev/null 2>&1
    stop_pid "${IPCS_PID[$n]:-}" TERM 10
    timeout 60 "$root/scripts/kubo-node.sh" stop "$work/$n/kubo" >/dev/null 2>&1
  done
}
on_exit car stop_all

# ---------------------------------------------------------------------------------- setup
require_bins "$IPCS" "$IPFS"
say "CAR export/import between two offline stacks (containerd $CONTAINERD2_VERSION), work dir $work"
last_log="$logs/setup.log"
timeout 1800 "$root/integration/images/build-images.sh" --only small,multi "$IMAGES" >>"$last_log" 2>&1
for n in a b; do
  mkdir -p "$work/$n"
  API[$n]=$("$root/scripts/kubo-node.sh" start "$work/$n/kubo" --offline 2>>"$last_log" 8>&- 9>&-)
  ipcs_start "$n" 2>>"$last_log"
  timeout 120 "$root/integration/containerd-node.sh" start "$work/$n/containerd" --version 2 \
    --content-socket "$work/$n/ipcs.sock" >/dev/null 2>>"$last_log" 8>&- 9>&-
done
for img in small multi; do
  tar -C "$IMAGES/$img" -cf "$work/$img.tar" .
  # All platforms: containerd then labels every platform's blobs, and its GC leaves them.
  ctr a images import --no-unpack --all-platforms --base-name "example.com/ipcs/$img" "$work/$img.tar" >>"$last_log"
done
ctr a images ls -q | grep -x "$SMALL" >/dev/null
ctr a images ls -q | grep -x "$MULTI" >/dev/null
B_PIN_NAME="ipcs:$(cat "$work/b/data/store-id")"
setup_done=1

# Pins of B's Kubo: every recursive pin, "CID NAME".
b_pins() { ipfs b pin ls --type recursive --names | awk '{ print $1, $3 }' | sort; }
# B must hold nothing of the images: no blob, no named or root pin, no image.
b_is_empty() {
  local out
  out=$(blobs b) || { say "ipcs blobs failed"; return 1; }
  [ -z "$out" ] || { say "B's ipcs holds blobs:"; echo "$out" | indent; return 1; }
  out=$(b_pins | grep -v "^$EMPTY_DIR " || true)
  [ -z "$out" ] || { say "B's Kubo still pins:"; echo "$out" | indent; return 1; }
  out=$(ctr b images ls -q)
  [ -z "$out" ] || { say "B's containerd has images: $out"; return 1; }
}
# Kubo's init pins the empty directory; it is nobody's import.
EMPTY_DIR=QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn

# -------------------------------------------------------------------------------- checks
check_export() {
  blobs a | awk '{ print $1, $2, $3 }' | sort >"$work/a.blobs"
  piped export cli a export "$SMALL" "$MULTI" -o "$work/images.car" || return 1
  local line; line=$(grep '^export:' "$last_log") || return 1
  say "$line"
  [ ! -e "$work/images.car.partial" ] || { say "partial file left"; return 1; }
  BLOB_BYTES=$(sed -n 's/.* blob_bytes=\([0-9]*\).*/\1/p' <<<"$line")
  CAR_ROOT=$(sed -n 's/.* root=\([a-z0-9]*\).*/\1/p' <<<"$line")
  python3 - "$work/images.car" "$work/a.blobs" "$BLOB_BYTES" <<'PY' >"$logs/car-parse.log" 2>&1 || { cat "$logs/car-parse.log" | indent; return 1; }
import sys, hashlib
car, blobs_file, blob_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(car, "rb").read()
def varint(b, i):
    v = s = 0
    while True:
        x = b[i]; i += 1; v |= (x & 0x7f) << s; s += 7
        if not x & 0x80: return v, i
n, i = varint(data, 0); i += n                      # the header (dag-cbor, roots)
cids, raw_bytes, blocks = set(), 0, 0
while i < len(data):
    n, j = varint(data, i); end = j + n
    assert data[j] == 1, "CIDv1 expected"
    codec, k = varint(data, j + 1)
    mh_code, k = varint(data, k); mh_len, k = varint(data, k)
    digest = data[k:k + mh_len]; body = data[k + mh_len:end]
    assert hashlib.sha256(body).digest() == digest, "block does not match its CID"
    cid = data[j:k + mh_len]
    assert cid not in cids, "a block is in the CAR twice"
    cids.add(cid); blocks += 1
    if codec == 0x55: raw_bytes += len(body)
    i = end
over = len(data) - blob_bytes
print(f"car_bytes={len(data)} blob_bytes={blob_bytes} blocks={blocks} raw_leaf_bytes={raw_bytes} "
      f"overhead={over} ({100.0 * over / blob_bytes:.2f}%)")
# Raw leaves carry the blobs' bytes (a leaf shared by two blobs once): never more.
assert raw_bytes <= blob_bytes
assert blob_bytes <= len(data) <= blob_bytes * 1.02 + 64 * 1024, "CAR much larger than its blobs"
PY
  say "$(cat "$logs/car-parse.log")"
  # The CAR's index: blobs A holds, under the same CIDs (check e: B ends with exactly these).
  ipfs a dag get "$CAR_ROOT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for b in d["blobs"]: print(b["digest"], b["dag"]["/"], b["size"])' | sort >"$work/car.blobs"
  [ -n "$(comm -23 "$work/car.blobs" "$work/a.blobs")" ] && { say "index names blobs A lacks"; return 1; }
  say "$(wc -l <"$work/car.blobs") blobs, $BLOB_BYTES bytes, all in the index"
}

# import_refused NAME FILE: the import fails with a clear message and B stays empty.
import_refused() {
  local name=$1 file=$2
  if logged "import-$name" cli b import "$file"; then say "import of a $name CAR succeeded"; return 1; fi
  say "error: $(tail -n 1 "$last_log")"
  grep -Eq "$3" "$last_log" || { say "unclear error"; return 1; }
  grep -q 'nothing was imported' "$last_log" || return 1
  b_is_empty
}

check_flipped() {
  cp "$work/images.car" "$work/flipped.car"
  # A byte in the middle of the file: inside a layer's data block.
  local at=$(( $(stat -c %s "$work/flipped.car") / 2 ))
  local old; old=$(od -An -tu1 -j "$at" -N1 "$work/flipped.car" | tr -d ' ')
  printf "\\$(printf '%03o' $(( (old + 1) % 256 )))" | dd of="$work/flipped.car" bs=1 seek="$at" conv=notrunc 2>/dev/null
  cmp -s "$work/images.car" "$work/flipped.car" && { say "flip did not change the file"; return 1; }
  import_refused flipped "$work/flipped.car" 'corrupted or truncated.*(integrity|mismatch)'
}

check_truncated() {
  head -c $(( $(stat -c %s "$work/images.car") * 2 / 3 )) "$work/images.car" >"$work/truncated.car"
  import_refused truncated "$work/truncated.car" 'corrupted or truncated.*(EOF|unexpected)'
}

check_wrong_digest() {
  # A valid CAR (every block matches its CID) whose index claims one more blob: the bytes
  # of small's biggest layer under a digest they do not have. It comes last, so blobs
  # adopted before it must be undone.
  local doc evil_root
  doc=$(ipfs a dag get "$CAR_ROOT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
big = max(d["blobs"], key=lambda b: b["size"])
d["blobs"].append({"digest": "sha256:" + "ab" * 32, "size": big["size"], "mediaType": big["mediaType"], "dag": big["dag"]})
print(json.dumps(d))')
  evil_root=$(echo "$doc" | ipfs a dag put --input-codec dag-json --store-codec dag-cbor) || return 1
  ipfs a dag export "$evil_root" >"$work/evil.car" 2>/dev/null || return 1
  import_refused wrong-digest "$work/evil.car" 'does not match its digest' || return 1
  # What was undone, for the reader (import_refused has checked that nothing remains).
  say "$(grep 'undoing it' "$work/b/ipcs.log" | tail -n 1 | sed 's/.*WARN //')"
}

check_foreign() {
  # The CAR of the biggest blob's own DAG: every block valid, but its root is a UnixFS file.
  local cid; cid=$(sort -k3 -n "$work/car.blobs" | tail -n 1 | awk '{ print $2 }')
  ipfs a dag export "$cid" >"$work/foreign.car" 2>/dev/null || return 1
  import_refused foreign "$work/foreign.car" 'not an ipcs CAR index'
}

check_import() {
  piped import cli b import "$work/images.car" || return 1
  say "$(grep '^import:' "$last_log")"
  local imgs; imgs=$(ctr b images ls -q | sort | tr '\n' ' ')
  [ "$imgs" = "$MULTI $SMALL " ] || { say "B's images: $imgs"; return 1; }
  blobs b | awk '{ print $1, $2, $3 }' | sort >"$work/b.blobs"
  diff "$work/car.blobs" "$work/b.blobs" >/dev/null || { say "B's blobs differ from the CAR's"; return 1; }
  local cid want=0 named=0
  while read -r _ cid _; do
    want=$((want + 1))
    b_pins | grep -x "$cid $B_PIN_NAME" >/dev/null && named=$((named + 1))
  done <"$work/b.blobs"
  [ "$named" = "$want" ] || { say "$named of $want blobs pinned as $B_PIN_NAME"; return 1; }
  b_pins | grep "^$CAR_ROOT " >/dev/null && { say "the CAR root is still pinned"; return 1; }
  say "$want blobs on B, each pinned as $B_PIN_NAME; no root pin left"
}

check_run() {
  logged run-small ctr b run --rm "$SMALL" "car-small-$RANDOM" || return 1
  grep -qx 'ipcs test image: small v1' "$last_log" || return 1
  logged run-multi ctr b run --rm "$MULTI" "car-multi-$RANDOM" || return 1
  grep -qx 'ipcs test image: multi v1' "$last_log" || return 1
  say "ctr run printed: $(grep -x 'ipcs test image: .*' "$logs/run-small.log") / $(grep -x 'ipcs test image: .*' "$last_log")"
}

check_again() {
  piped import-again cli b import "$work/images.car" || return 1
  grep -q '^import: .* adopted=0 ' "$last_log" || { say "$(grep '^import:' "$last_log")"; return 1; }
  blobs b | awk '{ print $1, $2, $3 }' | sort | diff - "$work/b.blobs" >/dev/null
}

check_fsck() {
  stop_pid "${IPCS_PID[b]}" TERM 10
  IPCS_PID[b]=""
  piped fsck fsck_b || return 1
  local line; line=$(grep '^fsck:' "$last_log")
  say "$line"
  grep -E '^fsck: blobs=[1-9][0-9]* .* verified=[1-9][0-9]* found=0 .*remaining=0 unexpected=0' "$last_log" >/dev/null
}

# bars_left TTY NAME...: what a command drew on the pty (TTY, from pty-run.py) is the bars
# NAME..., one after the other, each drawn at least twice: first empty (position 0, no
# "="), each redraw erasing the line first ("\r" + ESC[2K), and last full (a 32-cell bar of
# "=", position = length) and left on the terminal: nothing erases it before the next bar
# or the end. Nothing else is drawn.
bars_left() {
  python3 - "$@" <<'PY' >"$logs/bars.log" 2>&1 || { indent <"$logs/bars.log"; return 1; }
import re, sys
path, names = sys.argv[1], sys.argv[2:]
data = open(path, "rb").read().decode("utf-8", "replace")
ERASE = "\r\x1b[2K"                 # console's clear_line: what indicatif sends before a redraw
START = re.compile(r" *[a-z]+ \[[=> ]{32}\] ")
AMOUNT = r"\d+(?:\.\d+)?(?: [KMGT]?i?B)?"
FRAME = re.compile(rf" *([a-z]+) \[([=> ]{{32}})\] ({AMOUNT})/({AMOUNT})(?: .*)?")
events = []                          # ("erase",) | ("frame", name, bar, pos, len, text)
for i, piece in enumerate(data.split(ERASE)):
    if i:
        events.append(("erase",))
    starts = [m.start() for m in START.finditer(piece)] + [len(piece)]
    assert not piece[:starts[0]].strip(), f"not a bar: {piece[:starts[0]]!r}"
    for a, b in zip(starts, starts[1:]):
        text = piece[a:b].rstrip()
        m = FRAME.fullmatch(text)
        assert m, f"not a bar: {text!r}"
        events.append(("frame", *m.groups(), text.strip()))
frames = [e for e in events if e[0] == "frame"]
order = [n for k, n in enumerate(f[1] for f in frames) if k == 0 or n != frames[k - 1][1]]
assert order == names, f"bars drawn {order}, expected {names} one after the other"
for name in names:
    idx = [k for k, e in enumerate(events) if e[0] == "frame" and e[1] == name]
    assert len(idx) >= 2, f"{name}: drawn {len(idx)} time(s)"
    for a, b in zip(idx, idx[1:]):
        assert events[a + 1:b] == [("erase",)], f"{name}: a redraw not in place: {events[a + 1:b]}"
    _, _, bar, pos, _, text = events[idx[0]]
    assert bar == " " * 32 and pos in ("0", "0 B"), f"{name}: first drawn as {text!r}, not empty"
    last = events[idx[-1]]
    _, _, bar, pos, length, text = last
    assert bar == "=" * 32 and pos == length, f"{name}: left at {text!r}, not full"
    assert events[idx[-1] + 1:idx[-1] + 2] != [("erase",)], f"{name}: its last state is erased"
    print(f"{name}: {len(idx)} draws, left as {text!r}")
PY
  indent <"$logs/bars.log"
}

# no_drawing LOG...: the logs of runs with stderr a pipe or file hold nothing of a bar.
no_drawing() {
  local f n
  for f in "$@"; do
    [ -s "$f" ] || { say "$(basename "$f") is empty"; return 1; }
    n=$(python3 -c 'import re, sys
d = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
print(d.count("\x1b"), d.count("\r"), len(re.findall(r"\[[=> ]{32}\]", d)))' "$f")
    say "$(basename "$f"): ESC, CR, bars: $n"
    [ "$n" = "0 0 0" ] || return 1
  done
}

check_export_tty() {
  local ARGV; cli_argv a export "$SMALL" "$MULTI" -o "$work/images-tty.car"
  on_pty export-tty "${ARGV[@]}" || return 1
  cmp -s "$work/images.car" "$work/images-tty.car" || { say "the CAR differs from a's"; return 1; }
  diff <(sed 's/ file=.*//' "$logs/export.log") <(sed 's/ file=.*//' "$last_log") >/dev/null \
    || { say "stdout differs from a's:"; indent <"$last_log"; return 1; }
  bars_left "$logs/export-tty.tty" export
}

check_import_tty() {
  local ARGV; cli_argv b import "$work/images.car"
  on_pty import-tty "${ARGV[@]}" || return 1
  grep -q '^import: .* adopted=0 ' "$last_log" || { say "stdout: $(cat "$last_log")"; return 1; }
  bars_left "$logs/import-tty.tty" send verify register
}

check_fsck_tty() {
  local ARGV; fsck_argv
  on_pty fsck-tty "${ARGV[@]}" || return 1
  [ "$(grep '^fsck:' "$last_log")" = "$(grep '^fsck:' "$logs/fsck.log")" ] \
    || { say "stdout: $(cat "$last_log")"; return 1; }
  bars_left "$logs/fsck-tty.tty" verify
}

check_piped_quiet() {
  no_drawing "$logs/export.log" "$logs/import.log" "$logs/fsck.log" "$logs/import-flipped.log"
}

check "a. A: export small + multi to one CAR; each block once; size vs the blobs"      check_export
check "a2. A: export on a pty: the same CAR and stdout; its bar drawn and left full"    check_export_tty
check "b. B: a CAR with a flipped byte is refused; nothing remains on B"                 check_flipped
check "c. B: a truncated CAR is refused; nothing remains on B"                           check_truncated
check "d. B: a blob under a wrong digest undoes the whole import; nothing remains"       check_wrong_digest
check "d2. B: a CAR of another DAG (no ipcs index) is refused; nothing remains"         check_foreign
check "e. B: import; ctr images ls shows both; same blobs and CIDs, pinned by name"      check_import
check "f. B: ctr run of small and multi (unpacked from the imported blobs)"              check_run
check "g. B: importing the same CAR again adopts nothing"                                check_again
check "g2. B: import on a pty: bars send, verify, register drawn and left full"          check_import_tty
check "h. B: ipcs fsck --verify finds the imported store clean"                          check_fsck
check "h2. B: fsck --verify on a pty: the same summary; its verify bar drawn and left full" check_fsck_tty
check "i. stderr a pipe or file: export, import, fsck --verify drew nothing (no ESC, CR, bar)" check_piped_quiet
all_run=1
