# cypher_cell developer targets. `make help` lists them.
# Each target sets up what it needs, so a fresh clone on a fresh machine works.

PYTHON ?= python3
PIP := $(PYTHON) -m pip --disable-pip-version-check --root-user-action=ignore
APT_PACKAGES_BENCH := libsodium23

.DEFAULT_GOAL := help
.PHONY: help setup run doctor test lint test-rust test-python bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Build the Rust core and install the package (editable) with test and lint tools
	$(PIP) install --quiet --editable '.[test,lint]'

run: setup ## The main job: report what this machine gives secrets (cypher-cell doctor)
	cypher-cell doctor

doctor: run ## Same as `make run`

test: setup lint test-rust test-python ## Set up, then every check: lints, Rust unit tests, pytest

lint: ## cargo fmt, clippy -D warnings, ruff, mypy --strict, stubtest
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	ruff check .
	ruff format --check .
	mypy
	$(PYTHON) -m mypy.stubtest cypher_cell._native --allowlist stubtest-allowlist.txt

test-rust: ## Rust unit tests (allocator, cell state machine)
	cargo test --quiet

test-python: ## pytest: the API and the kernel's own accounts
	$(PYTHON) -m pytest

bench: setup ## Benchmarks beside python-dotenv/libsodium/pydantic anchors
	@command -v apt-get >/dev/null && { ldconfig -p | grep -q libsodium.so || \
	  { apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES_BENCH); }; } || true
	$(PIP) install --quiet --editable '.[bench]'
	$(PYTHON) bench/bench_cell.py
