# cypher_cell developer targets. `make help` lists them.
# Each target sets up what it needs, so a fresh clone on a fresh machine works.

PYTHON ?= python3
PIP := PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip --disable-pip-version-check
APT_PACKAGES_BENCH := libsodium23
# A real Secret Service for the keyring tests (started by the tests' fixture);
# PostgreSQL for the Vault database-engine tests (a cluster in a temp dir).
APT_PACKAGES_TEST := dbus gnome-keyring postgresql

.DEFAULT_GOAL := help
.PHONY: help setup test-deps run doctor test lint test-rust test-python wheel test-venv test-pydantic-oldest bench fuzz-deps fuzz asan

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Build the Rust core and install the package (editable) with test and lint tools
	$(PIP) install --quiet --editable '.[test,lint]'

run: setup ## The main job: load examples/ (.env, secrets dir, environment) into a store and show it, redacted
	$(PYTHON) examples/demo.py

doctor: setup ## Report what this machine gives secrets (memfd_secret, mlock limits, dumps, swap, ptrace)
	cypher-cell doctor

test-deps: ## Debian packages the tests need (dbus, gnome-keyring, postgresql), installed when missing
	@command -v dbus-daemon >/dev/null && command -v gnome-keyring-daemon >/dev/null && \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(APT_PACKAGES_TEST); }

test: test-deps lint test-rust test-python ## Every check, against the built wheel: lints, stubtest, Rust unit tests, pytest

# The tests run against the wheel a user would install, not the source tree:
# the abi3 wheel is built (release), installed into a fresh virtualenv with
# the test and lint extras, and pytest runs in a copy of the repository
# without the cypher_cell/ package, so every import (children's included)
# finds the installed one. A file left out of the wheel fails the tests.
WHEEL_DIR := target/wheels
TEST_VENV := target/test-venv
TEST_TREE := target/test-tree
VENV_PY := $(CURDIR)/$(TEST_VENV)/bin/python

wheel: ## Build the abi3 wheel (release) into target/wheels
	$(PIP) install --quiet 'maturin>=1.9.4,<2'
	rm -rf $(WHEEL_DIR)
	$(PYTHON) -m maturin build --release --quiet --out $(WHEEL_DIR)

test-venv: wheel ## A fresh virtualenv with the wheel and its test and lint extras installed
	rm -rf $(TEST_VENV)
	$(PYTHON) -m venv $(TEST_VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check "$$(ls $(WHEEL_DIR)/*.whl)[test,lint]"
	rm -rf $(TEST_TREE) && mkdir -p $(TEST_TREE)
	tar -c --exclude=./.git --exclude=./target --exclude=./cypher_cell --exclude=./fuzz/target \
	  --exclude=./fuzz/grown --exclude='*.so' --exclude=__pycache__ . | tar -x -C $(TEST_TREE)

lint: test-venv ## cargo fmt, clippy -D warnings, ruff, mypy --strict, stubtest of the installed stub
	cargo fmt --check
	cargo fmt --check --manifest-path fuzz/Cargo.toml
	cargo clippy --all-targets --quiet -- -D warnings
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/ruff format --check .
	$(TEST_VENV)/bin/mypy
	cd $(TEST_TREE) && $(VENV_PY) -m mypy.stubtest cypher_cell._native --allowlist stubtest-allowlist.txt

test-rust: ## Rust unit tests (allocator, cell state machine)
	cargo test --quiet

test-python: test-venv ## pytest against the installed wheel: the API and the kernel's own accounts
	cd $(TEST_TREE) && PATH="$(CURDIR)/$(TEST_VENV)/bin:$$PATH" $(VENV_PY) -m pytest

# The pydantic tests again in a second virtualenv, with the oldest pydantic
# and pydantic-settings supported (the test venv has the newest). Reuses the
# wheel and test tree `make test` built.
PYDANTIC_OLDEST := pydantic==2.7.4 pydantic-settings==2.6.1
OLDEST_VENV := target/pydantic-oldest-venv

test-pydantic-oldest: ## The pydantic tests with the oldest pydantic-settings supported (2.6.1), own venv
	@ls $(WHEEL_DIR)/*.whl >/dev/null 2>&1 && test -d $(TEST_TREE) || $(MAKE) test-venv
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  "$$(ls $(WHEEL_DIR)/*.whl)[test]" $(PYDANTIC_OLDEST)
	cd $(TEST_TREE) && $(CURDIR)/$(OLDEST_VENV)/bin/python -m pytest -q tests/test_pydantic.py tests/test_pydantic_settings.py

bench: setup test-deps ## Benchmarks beside python-dotenv/libsodium/pydantic/hvac anchors
	@command -v apt-get >/dev/null && { ldconfig -p | grep -q libsodium.so || \
	  { apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES_BENCH); }; } || true
	$(PIP) install --quiet --editable '.[bench]'
	$(PYTHON) bench/bench_cell.py
	$(PYTHON) bench/bench_envfile.py
	$(PYTHON) bench/bench_vault.py
	$(PYTHON) bench/bench_pydantic.py

# --- fuzzing and sanitizers (CI runs both after `make test`: see .ci/run) ---
# Both need a nightly compiler (-Z flags, cargo-fuzz): rustup's nightly
# toolchain, which this kind of machine comes with; without one, the stable
# toolchain with RUSTC_BOOTSTRAP=1, which unlocks the same unstable flags
# (no toolchain can be downloaded here).
CARGO_NIGHTLY := $(if $(shell rustup toolchain list 2>/dev/null | grep '^nightly-'),cargo +nightly,RUSTC_BOOTSTRAP=1 cargo)
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS := dotenv_parse slot_pool redact_stream vault_json
FUZZ_SECONDS ?= 60
# No sanitizer by default: the targets' code is safe Rust but for the
# allocator, whose pages are mmap'd (ASan checks none of them; the guard
# pages and canaries do), and ASan fakes mlock, which would blind
# slot_pool's VmLck check. `make fuzz FUZZ_SANITIZER=address` for ASan.
FUZZ_SANITIZER ?= none
# Inputs up to 4 KiB; past 1 GiB of RSS, one allocation past 256 MiB or
# 10 s for one input is a finding (memory and time must stay bounded).
FUZZ_OPTIONS := -max_len=4096 -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10
FUZZ := $(CARGO_NIGHTLY) fuzz
FUZZ_ARGS := --fuzz-dir fuzz --sanitizer $(FUZZ_SANITIZER) --debug-assertions

fuzz-deps: ## cargo-fuzz, installed from crates.io when missing
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)

fuzz: fuzz-deps ## Each fuzz target for FUZZ_SECONDS (60); the long run: make fuzz FUZZ_SECONDS=3600
	$(FUZZ) build $(FUZZ_ARGS)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/grown/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (log: fuzz/grown/$$t.log)"; \
	  if ! $(FUZZ) run $(FUZZ_ARGS) $$t fuzz/grown/$$t fuzz/corpus/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) $(FUZZ_OPTIONS) -print_final_stats=1 \
	      >fuzz/grown/$$t.log 2>&1; then \
	    tail -n 60 fuzz/grown/$$t.log; echo "fuzz: $$t FAILED (input saved under fuzz/artifacts/$$t/)"; exit 1; \
	  fi; \
	  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' fuzz/grown/$$t.log; \
	  echo "fuzz: $$t corpus $$(ls fuzz/grown/$$t | wc -l) grown + $$(ls fuzz/corpus/$$t | wc -l) seeds"; \
	done

# The unit tests embed CPython (pyo3's auto-initialize), which is not built
# with ASan and is never finalized: its allocations are all still held at
# exit, so fuzz/lsan.supp suppresses leaks allocated from inside libpython
# (leaks of Rust allocations are still reported). opt-level 2 keeps the
# timing tests (parsing_is_linear) within their bounds; debug assertions and
# overflow checks stay on. Own target dir: the flags differ from `cargo test`.
asan: ## The Rust unit tests under AddressSanitizer (nightly)
	RUSTFLAGS=-Zsanitizer=address CARGO_PROFILE_DEV_OPT_LEVEL=2 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp \
	$(CARGO_NIGHTLY) test --quiet --target x86_64-unknown-linux-gnu --target-dir target/asan
