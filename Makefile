# cypher_cell developer targets. `make help` lists them.
# Each target sets up what it needs, so a fresh clone on a fresh machine works.

PYTHON ?= python3
PIP := PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip --disable-pip-version-check
APT_PACKAGES_BENCH := libsodium23
# A real Secret Service for the keyring tests (started by the tests' fixture).
APT_PACKAGES_TEST := dbus gnome-keyring

.DEFAULT_GOAL := help
.PHONY: help setup test-deps run doctor test lint test-rust test-python bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Build the Rust core and install the package (editable) with test and lint tools
	$(PIP) install --quiet --editable '.[test,lint]'

run: setup ## The main job: load examples/ (.env, secrets dir, environment) into a store and show it, redacted
	$(PYTHON) examples/demo.py

doctor: setup ## Report what this machine gives secrets (memfd_secret, mlock limits, dumps, swap, ptrace)
	cypher-cell doctor

test-deps: ## Debian packages the tests need (dbus, gnome-keyring), installed when missing
	@command -v dbus-daemon >/dev/null && command -v gnome-keyring-daemon >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(APT_PACKAGES_TEST); }

test: test-deps setup lint test-rust test-python ## Set up, then every check: lints, Rust unit tests, pytest

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
	$(PYTHON) bench/bench_envfile.py
