# Sourced by the install-*.sh scripts that build Go programs from the module proxy.

# The Go to build with: $GO, else the machine's /usr/local/go, else the one on PATH.
go_bin() {
  local g="${GO:-/usr/local/go/bin/go}"
  [ -x "$g" ] || g=$(command -v go)
  echo "$g"
}

# module_dir MODULE VERSION: downloads MODULE@VERSION through the Go module proxy and prints
# its (read-only) directory in the module cache. Run from a scratch dir so that no go.mod
# around the caller takes part.
module_dir() {
  local tmp dir
  tmp=$(mktemp -d)
  dir=$(cd "$tmp" && "$(go_bin)" mod download -json "$1@$2" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  rm -rf "$tmp"
  [ -d "$dir" ] || { echo "could not download $1@$2" >&2; return 1; }
  echo "$dir"
}
