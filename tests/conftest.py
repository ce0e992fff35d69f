"""Shared test helpers are the package tests/support/ (importable as
`support`: pyproject's `pythonpath = ["tests"]`; children started through
support.child get the same path). Their asserts are rewritten like the tests'."""

from __future__ import annotations

import importlib.util

import pytest

pytest.register_assert_rewrite("support")

# Real OpenBao servers and PostgreSQL (session-scoped fixtures), for any test file that asks.
from support.child import secret_file  # noqa: E402
from support.openbao import openbao, openbao_cluster, openbao_tls, stores  # noqa: E402
from support.postgres import postgres  # noqa: E402

__all__ = ["openbao", "openbao_cluster", "openbao_tls", "postgres", "secret_file", "stores"]

#: What the tests import that `cypher_cell` itself does not need: the module,
#: and the distribution `pip install -e '.[test]'` brings it with.
TEST_DEPENDENCIES = {
    "dotenv": "python-dotenv",
    "hypothesis": "hypothesis",
    "keyring": "keyring",
    "secretstorage": "secretstorage",
    "cryptography": "cryptography",  # through secretstorage; the PEM tests generate keys with it
    "hvac": "hvac",  # the Vault tests' control (what hvac leaves in memory)
    "psycopg": "psycopg",  # the Vault database tests log in to PostgreSQL with leased credentials
    "pydantic": "pydantic",
    "pydantic_settings": "pydantic-settings",
}


def pytest_configure(config: pytest.Config) -> None:
    """Without the test extra every test file would fail to import, one
    traceback each: stop before collecting, with one line."""
    missing = [dist for module, dist in TEST_DEPENDENCIES.items() if importlib.util.find_spec(module) is None]
    if missing:
        said = f"test dependencies not installed: {', '.join(missing)}"
        pytest.exit(f"{said}; run pip install -e '.[test]' (or make test)", pytest.ExitCode.USAGE_ERROR)
