# dask-serverless developer loop. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PYTHON    := $(VENV)/bin/python
STAMP_DEV := $(VENV)/.requirements-installed
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
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PYTHON):
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip

$(STAMP_DEV): requirements-dev.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

RUST_SOURCES := Cargo.toml Cargo.lock pyproject.toml $(shell find crates -name '*.rs' -o -name Cargo.toml)
STAMP_EXTENSION := $(VENV)/.extension-built

$(STAMP_EXTENSION): $(STAMP_DEV) $(RUST_SOURCES)
	cargo build --workspace --bins
	$(VENV)/bin/maturin develop --quiet
	touch $@

$(MINISTACK):
	python3 -m venv $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/pip install --quiet --disable-pip-version-check ministack==1.5.33

# Redis for the store tests: Debian's server, started and stopped by the tests themselves.
.PHONY: servers
servers: $(MINISTACK) ## Install the servers the tests start (redis-server, the AWS-compatible endpoint)
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install redis-server"; exit 1; }

.PHONY: install
install: $(STAMP_EXTENSION) ## Create .venv, build the Rust workspace and the Python extension
	@$(PYTHON) -c "import dask_serverless._core" && echo "dask_serverless installed in $(VENV)"

.PHONY: demo
demo: install ## Set everything up and run the seed demo on the local platform
	$(PYTHON) examples/demo.py

# Options of the benchmark harness, e.g. `make bench BENCH_ARGS="--small --runs 1"`.
BENCH_ARGS ?=

.PHONY: bench
bench: install ## Benchmark the engine against Dask's schedulers (options: BENCH_ARGS=...)
	$(PYTHON) -m dask_serverless.bench $(BENCH_ARGS)

.PHONY: test
test: install servers ## Run every Rust and Python test
	cargo test --workspace --no-fail-fast
	$(PYTHON) -m pytest -q

.PHONY: lint
lint: $(STAMP_DEV) ## cargo fmt --check, clippy -D warnings, ruff
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests examples
	$(VENV)/bin/ruff format --check python tests examples

.PHONY: clean
clean: ## Remove build products and the virtualenv
	cargo clean
	rm -rf $(VENV) python/dask_serverless/*.so
