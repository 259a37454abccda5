# ipcs — every target installs what it needs first, idempotently, on a fresh Debian 12.
# Quick start:  make demo   (pull an image through containerd into IPFS and show it)
#               make test   (set up and run every test)
SHELL := /bin/bash
IPCS_TOOLS ?= $(HOME)/.cache/ipcs-tools
export IPCS_TOOLS
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup setup-system setup-kubo setup-cluster setup-containerd build lint test \
        test-unit test-conformance test-e2e test-p2p demo bench clean \
        test-adversarial test-load test-reliability-load test-crash-short test-reliability \
        test-chaos test-local-users test-restart-short test-restart \
        setup-buildkit test-buildkit setup-cri test-cri test-nerdctl-ipfs \
        test-differ test-differ-quick bench-differ test-car test-compare test-metrics test-swarm bench-swarm bench-crdt

setup: setup-system setup-kubo setup-cluster setup-containerd setup-buildkit setup-cri build

setup-system:
	@bash scripts/install-system-deps.sh

setup-kubo: setup-system
	@bash scripts/install-kubo.sh

setup-cluster: setup-system
	@bash scripts/install-ipfs-cluster.sh

setup-containerd: setup-system
	@bash scripts/install-containerd2.sh
	@bash scripts/install-nerdctl.sh

# buildkitd + buildctl (module proxy, pinned BUILDKIT_VERSION).
setup-buildkit: setup-system
	@bash scripts/install-buildkit.sh

# containerd 2.x with its CRI plugin (own directory) and crictl (pinned CRITOOLS_VERSION).
setup-cri: setup-system
	@bash scripts/install-cri.sh

build: setup-system
	cargo build --release --locked

lint: setup-system
	cargo fmt --check
	cargo clippy --release --locked --all-targets -- -D warnings

# Unit tests and the Rust integration suite against a real (offline) Kubo node.
test-unit: setup-kubo build
	integration/with-kubo.sh cargo test --release --locked --no-fail-fast

# Crash safety, short: >= 200 concurrent operations per round, ipcs SIGKILLed at a random
# moment of each of 3 rounds, fsck and full consistency checks after every restart (~1 min).
test-crash-short: setup-kubo build
	bash integration/chaos.sh --short

# Restarts during real pulls under socket activation (containerd 1.6), short: 5 SIGTERMs
# (every pull must succeed untouched) and 3 kill -9s (an immediate retry must succeed), fsck
# --verify clean (~2-3 min).
test-restart-short: setup build
	bash integration/restart.sh --short

# The same, long: 20 SIGTERMs and 20 kill -9s (~8 min).
test-restart: setup build
	bash integration/restart.sh

# The long runs: 20 rounds x >= 200 operations with 20 kills (bounded to 10 min), the
# 20 + 20 restarts during pulls, then the 60 s load test and the adversarial run.
test-chaos: setup build
	bash integration/chaos.sh
	bash integration/restart.sh
	LOAD_SECS=60 bash integration/load.sh
	bash integration/adversarial.sh

# containerd 1.6.20's own content-store conformance suite against `ipcs serve`.
test-conformance: setup-kubo build
	bash integration/run-conformance.sh

# ctr and nerdctl pulls through containerd 1.6 and 2.x with ipcs as the content store.
test-e2e: setup build
	bash integration/e2e.sh 1.6
	bash integration/e2e.sh 2

# BuildKit's containerd worker building into containerd 2.x whose content store is ipcs:
# FROM scratch, multi-stage from the local registry, cache hit, push with inline cache,
# prune/removal unpins (~25 s).
test-buildkit: setup-kubo setup-containerd setup-buildkit build
	bash integration/buildkit.sh

# Kubernetes' image path: crictl against containerd's CRI plugin with ipcs as content store,
# two nodes, the second pulling from peers with the registry stopped; once through the
# transfer service and once with use_local_image_pull (~35 s each).
test-cri: setup-kubo setup-cluster setup-containerd setup-cri build
	bash integration/cri.sh transfer
	bash integration/cri.sh local

# nerdctl's ipfs:// images: nerdctl push/pull ipfs:// on containerd with ipcs, and ipcs's
# mirror serving /v2/ipfs/<CID>/ to ctr and nerdctl with no registry (~45 s).
test-nerdctl-ipfs: setup-kubo setup-containerd build
	bash integration/nerdctl-ipfs.sh

# Issue 11: ipcs's differ against containerd's walking differ on two containerd 2.x nodes:
# crafted layers (every feature, gzip/zstd/plain, overlayfs and native) compared tree by tree,
# hostile layers (nothing outside the snapshot root, refused/contained alike), and the
# comparator's own selftest (~4 min); then ctr (transfer and --local), nerdctl and ctr run
# through ipcs's differ, ipcs killed mid-apply, ipcs down (~1 min).
test-differ: setup build
	bash integration/differ-diff.sh
	bash integration/differ-e2e.sh

# The applier against containerd's own archive.Apply, without containerd (seconds; dev aid).
test-differ-quick: setup-containerd
	bash integration/differ-quickdiff.sh

# ipcs export/import: small + multi carried as one CAR between two offline stacks (Kubo +
# ipcs + containerd 2.x each, no peering): each block once, size vs the blobs, flipped,
# truncated and wrong-digest CARs leave nothing behind, ctr images ls + ctr run; export,
# import and fsck --verify draw progress bars on a pty (left full) and none on a pipe (~20 s).
test-car: setup-kubo setup-containerd build
	bash integration/car.sh

# ipcs compare: images built to share known bytes (a whole layer, and a layer that is
# another plus an appended tail), exact figures asserted, table and --json (~15 s).
test-compare: setup-kubo setup-containerd build
	bash integration/compare.sh

# Issue 15: metrics and health on two nodes (Kubo + IPFS Cluster + ipcs + containerd 2.x):
# /healthz, /readyz (503 once Kubo stops), counters scraped during real pulls from the
# registry, from peers (counted as peers, not Kubo) and through Kubo; JSON logs (~40 s).
test-metrics: setup-kubo setup-cluster setup-containerd build
	bash integration/metrics.sh

# Three nodes (Kubo + IPFS Cluster + ipcs + containerd) pulling from each other.
test-p2p: setup build
	bash integration/p2p.sh

# Issue 13, short: the registry in a network namespace of its own behind a 2 Mbit/s tbf
# link, 4 nodes (Kubo + cluster + ipcs + containerd 2.x): a herd pulls with each blob sent
# once, the leader killed half-way (exactly one takes over), the share policy, fallback
# past stalled peers, registry egress asserted (~3 min).
test-swarm: setup build
	bash integration/swarm.sh

# An unprivileged account (nobody) against a real node laid out like a deployment: the
# mirror, Kubo's RPC, the cluster REST API and the ipcs socket must all refuse it (issue 19).
test-local-users: setup build
	bash integration/local-users.sh

# >= 10 000 malformed/hostile requests over the socket: no panic, contract codes only, no
# file outside the data dir, bounded RSS, store still works (~2 min).
test-adversarial: setup-kubo build
	bash integration/adversarial.sh

# 64 writers + 8 on one ref + 32 readers for 60 s: no deadlock, no lost commit, bounded RSS.
test-load: setup-kubo build
	LOAD_SECS=$${LOAD_SECS:-60} bash integration/load.sh

# The same load for 10 s, for `make test`.
test-reliability-load: setup-kubo build
	LOAD_SECS=10 bash integration/load.sh

# The reliability part of `make test`: short crash loop, adversarial run, 10 s load,
# short restarts during pulls.
test-reliability: test-crash-short test-adversarial test-reliability-load test-restart-short

test: setup lint
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-reliability
	@$(MAKE) --no-print-directory test-conformance
	@$(MAKE) --no-print-directory test-e2e
	@$(MAKE) --no-print-directory test-differ
	@$(MAKE) --no-print-directory test-p2p
	@$(MAKE) --no-print-directory test-swarm
	@$(MAKE) --no-print-directory test-local-users
	@$(MAKE) --no-print-directory test-buildkit
	@$(MAKE) --no-print-directory test-cri
	@$(MAKE) --no-print-directory test-nerdctl-ipfs
	@$(MAKE) --no-print-directory test-car
	@$(MAKE) --no-print-directory test-compare
	@$(MAKE) --no-print-directory test-metrics

# ipcs vs containerd's built-in content store; prints a table, writes BENCHMARKS.md
# (~30 min on 2 cores with the swarm and CRDT sections). Not part of `make test`.
bench: setup build
	bash integration/bench.sh
	bash integration/bench-swarm.sh
	bash integration/bench-crdt.sh

# The swarm section alone: 4 nodes behind a 100 Mbit/s registry link, big, built-in
# stores vs ipcs in scenarios a-d (~8 min); writes its section into BENCHMARKS.md.
bench-swarm: setup build
	bash integration/bench-swarm.sh

# IPFS Cluster's CRDT pinset alone: convergence of one pin and of a burst at 4, 16 and 32
# peers on loopback (BENCH_CRDT_PEERS; ~8 min); writes its section into BENCHMARKS.md.
bench-crdt: setup
	bash integration/bench-crdt.sh

# Section 7 of the bench alone: containerd 2.x, ipcs as content store and differ vs
# containerd's own store and walking differ, with and without unpigz, gzip and uncompressed
# layers (BENCH_REPS=5; BENCH_DIFFER_IMAGE=big by default, huge in `make bench`; ~15 min).
bench-differ: setup build
	bash integration/bench-differ.sh

demo: setup
	bash integration/demo.sh

clean:
	cargo clean
