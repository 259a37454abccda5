// Package ipcsconformance runs containerd 1.6.20's own content-store
// conformance suite (github.com/containerd/containerd/content/testsuite)
// against a content store served over gRPC on a unix socket, reached through
// containerd's own proxy client (content/proxy), exactly as containerd's
// proxy_plugins reach it.
//
// Build (GOPATH mode, Debian's Go 1.19 and Debian's Go sources):
//
//	GO111MODULE=off GOPATH=$PWD/integration/conformance:/usr/share/gocode \
//	  /usr/lib/go-1.19/bin/go test -c -o target/conformance/conformance.test ipcsconformance
//
// Run all 12 cases in one process (exactly containerd's sequence):
//
//	IPCS_SOCKET=/path/to/ipcs.sock target/conformance/conformance.test -test.v
//
// or one case: add -test.run 'TestContent/^Resume$' (and IPCS_CONFORMANCE_SEED,
// see conformance_test.go). The store is emptied (Abort every ingest, Delete
// every blob, through the same client) before and after every case.
//
// integration/run-conformance.sh builds this and runs each case against a fresh
// `ipcs serve` on a fresh offline Kubo node.
package ipcsconformance
