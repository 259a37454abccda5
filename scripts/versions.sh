# The pinned upstream versions, in one place. Sourced by the install-*.sh scripts and by the
# integration scripts that find the binaries. Override any of them from the environment to
# try another release, e.g. `KUBO_VERSION=v0.41.0 make test`; `make test` runs these.
# Each is the newest release the Go module proxy serves here that builds with the machine's
# Go 1.26 (the *_GO=local defaults); see the README's "What is installed" table.
: "${KUBO_VERSION:=v0.42.0}"          # v0.43.1 needs a go-libp2p fork the proxy does not serve
: "${CONTAINERD2_VERSION:=v2.4.2}"
: "${NERDCTL_VERSION:=v2.3.5}"
: "${CLUSTER_VERSION:=v1.1.6}"        # v1.1.7+ are not served
: "${BUILDKIT_VERSION:=v0.34.2}"      # requires containerd v2.4.2 and Go 1.26.8, like ours
: "${CRITOOLS_VERSION:=v1.37.0}"      # v1.38.0+ are not served
export KUBO_VERSION CONTAINERD2_VERSION NERDCTL_VERSION CLUSTER_VERSION BUILDKIT_VERSION
export CRITOOLS_VERSION
