# Drover — the two commands people need are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

ZK_DIR   ?= $(CURDIR)/.run/zk
ZK_NODES ?= 3
ZK_PORT  ?= 2181
SWIFT    ?= swift

.PHONY: help setup build run stop status test bench-zk clean

help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## Install what is missing (ZooKeeper server, C client, Java) with apt-get.
	@Deploy/install-deps

build: setup ## Build everything.
	$(SWIFT) build

run: build ## Start a local 3-node ZooKeeper ensemble and show Drover working on it.
	@zk=$$(Deploy/zk-ensemble start --nodes $(ZK_NODES) --dir $(ZK_DIR) --port $(ZK_PORT) | tail -1) && \
	  echo "ZooKeeper ensemble serving at $$zk" && \
	  $(SWIFT) run --skip-build drover demo --zk "$$zk" && \
	  echo && echo "The ensemble keeps running: DROVER_ZK=$$zk  (stop it with: make stop)"

stop: ## Stop the local ZooKeeper ensemble started by `make run`.
	@Deploy/zk-ensemble stop --dir $(ZK_DIR)

status: ## Show the local ZooKeeper ensemble's nodes.
	@Deploy/zk-ensemble status --dir $(ZK_DIR)

test: setup ## Run every test (unit tests, and integration tests against real ZooKeeper servers).
	$(SWIFT) build --build-tests
	$(SWIFT) test

bench-zk: build ## Measure raw ZooKeeper throughput and latency on a fresh local ensemble.
	@dir=$$(mktemp -d) && zk=$$(Deploy/zk-ensemble start --nodes $(ZK_NODES) --dir $$dir --port auto --owner $$$$ | tail -1) && \
	  $(SWIFT) run --skip-build drover-bench zk --zk "$$zk"; rc=$$?; Deploy/zk-ensemble stop --dir $$dir --clean; exit $$rc

clean: ## Remove build output and local ZooKeeper data.
	rm -rf .build .run
