# dask-serverless developer loop. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PYTHON    := $(VENV)/bin/python
STAMP_RUN := $(VENV)/.requirements-installed
STAMP_DEV := $(VENV)/.requirements-dev-installed
export CARGO_TERM_COLOR ?= never
# Workers of the local platform run this interpreter.
export DASK_SERVERLESS_PYTHON := $(abspath $(PYTHON))
# The local AWS-compatible endpoint of the end-to-end tests lives in its own virtualenv
# (it pins its own AWS client libraries).
MINISTACK_VENV := .venv-ministack
MINISTACK      := $(MINISTACK_VENV)/bin/ministack
export DASK_SERVERLESS_MINISTACK := $(abspath $(MINISTACK))
# cargo and maturin configure PyO3 for the same interpreter, so they share one build.
export PYO3_PYTHON := $(abspath $(PYTHON))

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PYTHON):
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip

$(STAMP_RUN): requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

$(STAMP_DEV): requirements-dev.txt $(STAMP_RUN)
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The extension (dask_serverless._core, which also carries the `dask-serverless` command) is
# built once per feature set, by maturin alone, into target/ where cargo finds it again:
# - full: every backend (AWS, Redis, S3), for `make install`, `test`, `lint`, `bench`;
# - local: the local platform and shared memory only, for a short first `make demo`. A full
#   build, when up to date, serves the demo as well.
RUST_SOURCES := Cargo.toml Cargo.lock pyproject.toml $(shell find crates -name '*.rs' -o -name Cargo.toml)
STAMP_LOCAL := $(VENV)/.extension-local
STAMP_FULL := $(VENV)/.extension-full

$(STAMP_LOCAL): $(STAMP_RUN) $(RUST_SOURCES)
	$(VENV)/bin/maturin develop --quiet --no-default-features
	rm -f $(STAMP_FULL)
	touch $@

$(STAMP_FULL): $(STAMP_DEV) $(RUST_SOURCES)
	$(VENV)/bin/maturin develop --quiet
	rm -f $(STAMP_LOCAL)
	touch $@

$(MINISTACK):
	python3 -m venv $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/pip install --quiet --disable-pip-version-check ministack==1.5.33

# Redis for the store tests: Debian's server, started and stopped by the tests themselves.
.PHONY: servers
servers: $(MINISTACK) ## Install the servers the tests start (redis-server, the AWS-compatible endpoint)
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install redis-server"; exit 1; }

# A headless browser for the report page tests: Debian's chromium, driven by Playwright
# (requirements-dev.txt) through its executable path; Playwright's own browsers are never
# downloaded.
.PHONY: browser
browser: ## Install the browser the report page tests drive (Debian's chromium)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v chromium >/dev/null || { echo "chromium is missing: apt-get install chromium"; exit 1; }

.PHONY: install
install: $(STAMP_FULL) ## Create .venv with the package, every backend and the dev tools
	@$(PYTHON) -c "import dask_serverless._core" && echo "dask_serverless installed in $(VENV) (command: $(VENV)/bin/dask-serverless)"

.PHONY: demo
demo: $(STAMP_RUN) ## Set everything up (the local platform only) and run the seed demo
	@$(MAKE) --no-print-directory --question $(STAMP_FULL) 2>/dev/null || $(MAKE) --no-print-directory $(STAMP_LOCAL)
	$(PYTHON) examples/demo.py

# Options of the benchmark harness, e.g. `make bench BENCH_ARGS="--small --runs 1"`.
BENCH_ARGS ?=

.PHONY: bench
bench: install ## Benchmark the engine against Dask's schedulers (options: BENCH_ARGS=...)
	$(PYTHON) -m dask_serverless.bench $(BENCH_ARGS)

# Options of the simulator's calibration, e.g. `make calibrate CALIBRATE_ARGS="--small --runs 1"`.
CALIBRATE_ARGS ?=

.PHONY: calibrate
calibrate: install ## The simulator against the local platform on every benchmark workload (docs/simulator.md)
	$(PYTHON) -m dask_serverless.simulation.calibrate $(CALIBRATE_ARGS)

# Options of the Dask test-suite harness, e.g.
# `make dask-suite SUITE_ARGS="--strict --modules dask.bag.tests dask.tests.test_delayed"`.
SUITE_ARGS ?=

.PHONY: dask-suite
dask-suite: install ## Dask's own tests on our scheduler and on Dask's default; what only we fail (SUITE_ARGS=...)
	$(PYTHON) tests/dask_suite/run.py $(SUITE_ARGS)

.PHONY: test
test: install servers browser ## Run every Rust and Python test
	cargo test --workspace --no-fail-fast
	$(PYTHON) -m pytest -q

# How many times `make dead-client` kills a computing client (`make test` does it 3 times).
DEAD_CLIENT_RUNS ?= 20

.PHONY: dead-client
dead-client: install ## Kill a computing client with SIGKILL 20 times: nothing left (docs/reliability.md)
	DASK_SERVERLESS_DEAD_CLIENT_RUNS=$(DEAD_CLIENT_RUNS) $(PYTHON) -m pytest -q -s tests/test_dead_client.py

# Options of the chaos suite, e.g. `make chaos CHAOS_ARGS="--graphs 20 --classes kill"`.
CHAOS_ARGS ?=

.PHONY: chaos
chaos: install ## Many computes under each injected fault class, compared with Dask's sync (CHAOS_ARGS=...)
	$(PYTHON) tests/chaos_suite.py $(CHAOS_ARGS)

.PHONY: lint
lint: $(STAMP_FULL) ## cargo fmt --check, clippy -D warnings, ruff, mypy, stubtest of _core.pyi
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests examples
	$(VENV)/bin/ruff format --check python tests examples
	$(PYTHON) -m mypy
	cd python && ../$(PYTHON) -m mypy.stubtest --ignore-disjoint-bases dask_serverless._core

.PHONY: clean
clean: ## Remove build products and the virtualenv
	cargo clean
	rm -rf $(VENV) python/dask_serverless/*.so
