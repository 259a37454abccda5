#!/usr/bin/env bash
# `ipcs compare`: the block-level dedup report against images built to share known bytes.
#
#   integration/compare.sh
#
# One stack (Kubo offline + ipcs + containerd 2.x). Three single-platform images are built
# here as OCI layouts with UNCOMPRESSED tar layers (gzip would shift every byte, so no
# 256 KiB block could repeat) and imported with `ctr images import`:
#   x = [C, A]     y = [C, B]     w = [A, B]
# C is a layer of random bytes; A a tar of a random file; B = A's entries plus one small
# appended file: A and B share a byte prefix of P bytes (computed here with cmp), so
# exactly floor(P / 256 KiB) whole chunks of 256 KiB are the same blocks in both.
#   a. compare x y --json: pair shared_layers = |C|, shared_blocks = 262144·floor(P/262144),
#      unique = the rest of each image; per image the same, and
#      stored = unique + shared_layers + shared_blocks; all images together = |x| + |y| −
#      |C| − shared blocks (each block once)
#   b. compare w --json: one image holding A and B: repeated_within = the shared blocks,
#      stored = bytes − repeated_within
#   c. compare x y w (table): the header and one row per image and per pair
#   d. compare of an image containerd does not have fails clearly
# One TAP-like line per check; the last line is `compare: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=integration/lib.sh
. "$root/integration/lib.sh"
NS=compare
CHUNK=262144

started_at=$(date +%s%N)
exec 8>&1 9>&2
work=$(mktemp -d /tmp/ipcs-compare-XXXXXX)
logs="$work/logs"; mkdir -p "$logs"
passed=0 failed=0 setup_done=0 all_run=0 last_log="" IPCS_PID="" API=""

ctr() { timeout -k 10 120 "$work/containerd/ctr" -n "$NS" "$@" 2>/dev/null; }
compare() { timeout -k 5 300 "$IPCS" compare --socket "$work/ipcs.sock" \
              --containerd-socket "$work/containerd/containerd.sock" -n "$NS" "$@"; }

diagnostics() { show_logs "$work"; }

cleanup() {
  local rc=$?
  set +e
  exec >&8 2>&9
  trap - EXIT INT TERM
  timeout 120 "$root/integration/containerd-node.sh" stop "$work/containerd" >/dev/null 2>&1
  stop_pid "$IPCS_PID" TERM 10
  timeout 60 "$root/scripts/kubo-node.sh" stop "$work/kubo" >/dev/null 2>&1
  finish_run "compare" "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------- setup
[ -x "$IPCS" ] || { echo "missing $IPCS (make build)" >&2; exit 1; }
say "ipcs compare on images with known sharing, work dir $work"
last_log="$logs/setup.log"
API=$("$root/scripts/kubo-node.sh" start "$work/kubo" --offline 2>>"$last_log" 8>&- 9>&-)
start_ipcs --bin "$IPCS" --socket "$work/ipcs.sock" --data "$work/data" --log "$work/ipcs.log" \
  --kubo "$API" 2>>"$last_log"
IPCS_PID=$IPCS_STARTED_PID
timeout 120 "$root/integration/containerd-node.sh" start "$work/containerd" --version 2 \
  --content-socket "$work/ipcs.sock" >/dev/null 2>>"$last_log" 8>&- 9>&-

# The layers and the three OCI layouts; prints the figures the checks expect.
python3 - "$work" >"$work/expected.env" 2>>"$last_log" <<'PY'
import hashlib, io, json, os, random, sys, tarfile
work = sys.argv[1]
rnd = random.Random(20191015)

def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1600000000; ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()

rand = lambda n: bytes(rnd.getrandbits(8) for _ in range(n))
big = rand(1_200_000)
layer_c = tar_of([("c/common.bin", rand(700_000))])
layer_a = tar_of([("data/a.bin", big)])
layer_b = tar_of([("data/a.bin", big), ("data/tail.txt", b"appended tail\n" * 200)])
prefix = 0
while prefix < min(len(layer_a), len(layer_b)) and layer_a[prefix] == layer_b[prefix]:
    prefix += 1
dig = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
open(os.path.join(work, "layer_a"), "wb").write(layer_a)
open(os.path.join(work, "layer_b"), "wb").write(layer_b)

def layout(name, layers):
    d = os.path.join(work, name); os.makedirs(os.path.join(d, "blobs/sha256"))
    def put(b):
        open(os.path.join(d, "blobs/sha256", hashlib.sha256(b).hexdigest()), "wb").write(b)
        return {"digest": dig(b), "size": len(b)}
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [dig(l) for l in layers]},
                         "config": {"Labels": {"ipcs.test": name}}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **put(config)),
        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **put(l)) for l in layers]}).encode()
    m = put(manifest)
    json.dump({"schemaVersion": 2, "manifests": [dict(mediaType="application/vnd.oci.image.manifest.v1+json",
              annotations={"org.opencontainers.image.ref.name": "v1"}, **m)]},
              open(os.path.join(d, "index.json"), "w"))
    open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    return len(config) + len(manifest) + sum(len(l) for l in layers)

size = {n: layout(n, ls) for n, ls in
        [("x", [layer_c, layer_a]), ("y", [layer_c, layer_b]), ("w", [layer_a, layer_b])]}
print(f"C={len(layer_c)} A={len(layer_a)} B={len(layer_b)} P={prefix}")
print(f"X={size['x']} Y={size['y']} W={size['w']}")
PY
# shellcheck disable=SC1091
. "$work/expected.env"
# The prefix length again, independently of the generator: cmp names the first differing byte.
P_CMP=$(( $( { cmp "$work/layer_a" "$work/layer_b" || true; } | sed -n 's/.*byte \([0-9]*\).*/\1/p') - 1 ))
[ "$P_CMP" = "$P" ]
for n in x y w; do
  tar -C "$work/$n" -cf "$work/$n.tar" .
  ctr images import --no-unpack --base-name "example.com/cmp/$n" "$work/$n.tar" >>"$last_log"
done
ctr images ls -q | grep -x "example.com/cmp/w:v1" >/dev/null
SHARED=$(( P / CHUNK * CHUNK ))
say "layers: C=$C A=$A B=$B bytes; A and B share a prefix of P=$P bytes -> $SHARED bytes in $((P / CHUNK)) whole 256 KiB blocks"
setup_done=1

# json FILE EXPR: a Python expression over the report `r`.
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
# expect WHAT GOT WANT
expect() { [ "$2" = "$3" ] || { say "$1: got $2, want $3"; return 1; }; }

check_pair() {
  logged compare-xy compare example.com/cmp/x:v1 example.com/cmp/y:v1 --json || return 1
  local f="$last_log" ok=0
  expect "pair shared_layers" "$(json "$f" 'r["pairs"][0]["shared_layers"]')" "$C" || ok=1
  expect "pair shared_blocks" "$(json "$f" 'r["pairs"][0]["shared_blocks"]')" "$SHARED" || ok=1
  expect "pair unique_a" "$(json "$f" 'r["pairs"][0]["unique_a"]')" "$(( X - C - SHARED ))" || ok=1
  expect "pair unique_b" "$(json "$f" 'r["pairs"][0]["unique_b"]')" "$(( Y - C - SHARED ))" || ok=1
  expect "x bytes" "$(json "$f" 'r["images"][0]["bytes"]')" "$X" || ok=1
  expect "x stored" "$(json "$f" 'r["images"][0]["stored"]')" "$X" || ok=1
  expect "x shared_layers" "$(json "$f" 'r["images"][0]["shared_layers"]')" "$C" || ok=1
  expect "x shared_blocks" "$(json "$f" 'r["images"][0]["shared_blocks"]')" "$SHARED" || ok=1
  expect "y unique" "$(json "$f" 'r["images"][1]["unique"]')" "$(( Y - C - SHARED ))" || ok=1
  expect "stored total" "$(json "$f" 'r["stored_total"]')" "$(( X + Y - C - SHARED ))" || ok=1
  expect "sums" "$(json "$f" 'all(i["stored"] == i["unique"] + i["shared_layers"] + i["shared_blocks"] for i in r["images"])')" True || ok=1
  say "x/y: shared_layers=$C shared_blocks=$SHARED unique_x=$(( X - C - SHARED )) unique_y=$(( Y - C - SHARED )) stored_total=$(( X + Y - C - SHARED )) (sum of blobs $(( X + Y )))"
  return $ok
}

check_within() {
  logged compare-w compare example.com/cmp/w:v1 --json || return 1
  local f="$last_log" ok=0
  expect "w bytes" "$(json "$f" 'r["images"][0]["bytes"]')" "$W" || ok=1
  expect "w repeated_within" "$(json "$f" 'r["images"][0]["repeated_within"]')" "$SHARED" || ok=1
  expect "w stored" "$(json "$f" 'r["images"][0]["stored"]')" "$(( W - SHARED ))" || ok=1
  expect "pairs" "$(json "$f" 'len(r["pairs"])')" 0 || ok=1
  say "w = [A, B]: bytes=$W repeated_within=$SHARED stored=$(( W - SHARED ))"
  return $ok
}

check_table() {
  logged compare-table compare example.com/cmp/x:v1 example.com/cmp/y:v1 example.com/cmp/w:v1 || return 1
  grep -E '^IMAGE +BLOBS +BYTES +STORED +WITHIN +UNIQUE +SHARED-LAYERS +SHARED-BLOCKS$' "$last_log" >/dev/null || return 1
  local n; n=$(grep -c '^example.com/cmp/' "$last_log")
  expect "rows" "$n" 6 || return 1   # 3 images + 3 pairs
  indent <"$last_log"
}

check_unknown() {
  if logged compare-unknown compare example.com/cmp/nope:v1; then return 1; fi
  grep 'example.com/cmp/nope:v1' "$last_log" | grep -i 'not found' >/dev/null || return 1
  say "error: $(tail -n 1 "$last_log")"
}

check "a. compare x y: whole layer C and the appended-tail blocks, exact bytes"     check_pair
check "b. compare w: blocks repeated between two layers of one image, counted once" check_within
check "c. compare x y w: table with a row per image and per pair"                  check_table
check "d. compare of an image containerd lacks fails clearly"                       check_unknown
all_run=1
