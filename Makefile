# One entry point for people and CI. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install tools lint typecheck test test-unit test-integration test-containers containers demo emulator kafka-up kafka-down kafka-secure-up kafka-secure-down kafka-cluster-up kafka-cluster-down chaos bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "streamproc needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install streamproc with its dev tools

tools:  ## promtool and chromium (apt), kubeconform (go install) and KEDA's CRDs, for the tests
	@scripts/tools.sh promtool >/dev/null
	@scripts/tools.sh chromium >/dev/null || [ $$? -eq 3 ]  # 3: not installable here, said why
	@scripts/tools.sh kubeconform >/dev/null
	@scripts/tools.sh keda-crds >/dev/null

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check streamproc tests bench
	$(BIN)/ruff format --check streamproc tests bench

typecheck: $(STAMP)  ## mypy strict on the package
	$(BIN)/mypy

test-unit: $(STAMP)  ## unit tests: no network
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) kafka-up tools  ## integration tests: real brokers (plain, SASL_SSL), emulator, deploy/ checks
	$(BIN)/pytest -q tests/integration --ignore=tests/integration/containers

# Where `make containers` can run (root, Debian) it runs first and the tests must not skip
# (CONTAINER_TESTS=require); elsewhere they are skipped with the reason. CONTAINER_TESTS=0
# skips them anywhere.
test-containers: $(STAMP) kafka-up  ## container tests: the image, docker-compose.yml, testcontainers
	@if [[ "$${CONTAINER_TESTS:-1}" == 0 ]]; then \
		echo "container tests: skipped (CONTAINER_TESTS=0)"; \
	elif reason=$$(scripts/containers.sh check 2>&1); then \
		scripts/containers.sh up && \
		CONTAINER_TESTS=require $(BIN)/pytest -q tests/integration/containers; \
	else \
		echo "container tests: skipped, because $${reason#*: }"; \
	fi

test: lint typecheck test-unit test-integration test-containers  ## everything CI runs

containers:  ## set up podman, base images and its Docker API for the container tests (root, Debian)
	scripts/containers.sh up

kafka-up:  ## fetch Apache Kafka from Maven Central (cached) and start a KRaft broker on 127.0.0.1:9092
	scripts/kafka.sh up

kafka-down:  ## stop the local broker
	scripts/kafka.sh down

kafka-secure-up:  ## the same broker with a SASL_SSL listener (SCRAM-SHA-512, throw-away CA) on 127.0.0.1:9392
	scripts/kafka.sh up --secure

kafka-secure-down:  ## stop the secured broker
	scripts/kafka.sh down --secure

kafka-cluster-up:  ## a 3-node KRaft cluster on 127.0.0.1:9492,9494,9496 (replication 3, min.insync.replicas 2)
	scripts/kafka.sh up --cluster

kafka-cluster-down:  ## stop the 3-node cluster
	scripts/kafka.sh down --cluster

emulator: $(STAMP)  ## run the Control Room emulator on 127.0.0.1:8090
	$(BIN)/streamproc emulator --host 127.0.0.1 --port 8090

demo: $(STAMP) kafka-up  ## the main job: broker, emulator, generator and processor with live progress
	$(BIN)/streamproc demo --config config/local.toml

chaos: $(STAMP) kafka-up  ## long fault tests (kill -9 loop, broker failover, outage, scaling, unwritable output): a table of figures
	$(BIN)/pytest -q tests/integration/faults --chaos

# Each benchmark runs the processor, the emulator and the load generator as separate processes
# and prints its figures as ratios against a bound or a baseline measured in the same run; the
# first failing one stops the run (make -k runs them all).
bench: $(STAMP) kafka-up  ## benchmarks: overload, backlog, CPU, latency, memory, outages, clients
	$(BIN)/python -m bench.overload
	$(BIN)/python -m bench.backlog
	$(BIN)/python -m bench.cpu
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.outage
	$(BIN)/python -m bench.emulator_throughput
	$(BIN)/python -m bench.execute_client_cpu

clean:  ## remove the virtual environment and caches (keeps the Kafka jar cache)
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
