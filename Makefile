# Drover — the two commands people need are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

ZK_DIR   ?= $(CURDIR)/.run/zk
ZK_NODES ?= 3
ZK_PORT  ?= 2181
SWIFT    ?= swift
SEED     ?=
# The chaos run `make test` includes: a few minutes, thousands of tasks, a few dozen faults.
CHAOS_SHORT ?= --duration 60 --tasks 2000 --finite 100
# Tests run at once. Swift Testing starts them all together by default: on two cores that kept
# 20 to 97 threads waiting to run for the first minute, when CI once saw twelve tests' ZooKeeper
# requests time out together. Eight at once take as long in all (127 s) at a third of the peak.
TEST_WIDTH ?= 8
# The release check: half an hour of faults, 100,000 tasks and 30,000 work units.
CHAOS_LONG  ?= --duration 1800 --units 30000 --tasks 100000 --finite 2000 --infinite 8 --scheduled 8 --executors 6 --settle-timeout 1800 --zk-heap 1g

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR    ?=

.PHONY: help setup build run stop status test chaos chaos-hosts chaos-long bench bench-zk install clean

help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Install what is missing (ZooKeeper server, C client, Java) with apt-get.
	@Deploy/install-deps

build: setup ## Build everything.
	$(SWIFT) build

run: build ## Start a local 3-node ZooKeeper ensemble and show the scheduler working on it.
	@zk=$$(Deploy/zk-ensemble start --nodes $(ZK_NODES) --dir $(ZK_DIR) --port $(ZK_PORT) | tail -1) && \
	  echo "ZooKeeper ensemble serving at $$zk" && \
	  $(SWIFT) run --skip-build drover tour --keep --state-dir $(CURDIR)/.run/cluster --zk "$$zk"

stop: ## Stop what `make run` started: its managers and executors, then the ZooKeeper ensemble.
	@for f in $(CURDIR)/.run/cluster/*.pid; do [ -f "$$f" ] && kill "$$(cat "$$f")" 2>/dev/null; rm -f "$$f"; done; true
	@Deploy/zk-ensemble stop --dir $(ZK_DIR)

status: ## Show the local ZooKeeper ensemble's nodes.
	@Deploy/zk-ensemble status --dir $(ZK_DIR)

test: setup ## Run every test: unit, integration (real ZooKeeper servers), a short chaos run (ACLs and TLS on), and one on simulated hosts.
	$(SWIFT) build --build-tests
	@# The tests' temporary files (ZooKeeper data, outputs, certificates) go to a directory of this
	@# run, removed when every test passed and kept (its path printed) when one failed.
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/drover-test.XXXXXX") && \
	echo "$(SWIFT) test --experimental-maximum-parallelization-width $(TEST_WIDTH)  (temporary files in $$tmp)" && \
	TMPDIR=$$tmp $(SWIFT) test --experimental-maximum-parallelization-width $(TEST_WIDTH); rc=$$?; \
	if [ $$rc -eq 0 ]; then rm -rf "$$tmp" 2>/dev/null || true; else echo "make test: a test failed; its temporary files are kept in $$tmp"; fi; \
	exit $$rc
	$(SWIFT) run --skip-build drover-chaos $(CHAOS_SHORT) --secure --tls $(if $(SEED),--seed $(SEED))
	@if Deploy/sim-hosts check >/dev/null 2>&1; then \
	  echo "$(SWIFT) run --skip-build drover-chaos $(CHAOS_SHORT) --hosts 5 --secure --tls"; \
	  $(SWIFT) run --skip-build drover-chaos $(CHAOS_SHORT) --hosts 5 --secure --tls $(if $(SEED),--seed $(SEED)); \
	else \
	  echo "make test: SKIPPED the chaos run on simulated hosts (network faults): this machine does not allow them —"; \
	  Deploy/sim-hosts check 2>&1 | sed 's/^/  /'; \
	fi

chaos: build ## Kill anything, lose nothing: faults at random on a local cluster (SEED=n replays a run; TLS=1, SECURE=1).
	$(SWIFT) run --skip-build drover-chaos $(CHAOS_SHORT) $(if $(SEED),--seed $(SEED)) $(if $(TLS),--tls) $(if $(SECURE),--secure)

chaos-hosts: build ## Faults on the network: 5 simulated hosts (root), hosts cut off, ensemble splits, one-way cuts, packet loss (SEED=n).
	$(SWIFT) run --skip-build drover-chaos $(CHAOS_SHORT) --hosts $(or $(HOSTS),5) $(if $(SEED),--seed $(SEED)) $(if $(TLS),--tls) $(if $(SECURE),--secure)

chaos-long: build ## The release check: 30 minutes of faults, 100,000 tasks (SEED=n replays).
	$(SWIFT) run --skip-build drover-chaos $(CHAOS_LONG) $(if $(SEED),--seed $(SEED))

bench: setup ## Scheduler benchmarks (latency, throughput, recovery) on fresh local ensembles, release build.
	$(SWIFT) build -c release
	$(SWIFT) run -c release --skip-build drover-bench latency
	$(SWIFT) run -c release --skip-build drover-bench throughput
	$(SWIFT) run -c release --skip-build drover-bench recovery

bench-zk: build ## Measure raw ZooKeeper throughput and latency on a fresh local ensemble.
	@dir=$$(mktemp -d) && zk=$$(Deploy/zk-ensemble start --nodes $(ZK_NODES) --dir $$dir --port auto --owner $$$$ | tail -1) && \
	  $(SWIFT) run --skip-build drover-bench zk --zk "$$zk"; rc=$$?; Deploy/zk-ensemble stop --dir $$dir --clean; exit $$rc

install: setup ## Install drover, completions, systemd units and example settings (PREFIX, SYSCONFDIR, DESTDIR; docs/DEPLOY.md).
	$(SWIFT) build -c release --product drover
	Deploy/install --prefix $(PREFIX) --sysconfdir $(SYSCONFDIR) $(if $(DESTDIR),--destdir $(DESTDIR))

clean: ## Remove build output and local ZooKeeper data.
	rm -rf .build .run
