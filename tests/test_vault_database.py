"""Dynamic secrets as users meet them: OpenBao's database secrets engine
creates PostgreSQL users on demand, each with a renewable lease.

Real components: the OpenBao dev server (support.openbao) and Debian's
PostgreSQL in a temporary directory (support.postgres). The provider reads
``database/creds/<role>`` with a token whose policy allows only that, lease
renewal and revocation: what an application is given.

Timing: the roles' TTLs are a few seconds so renewal and expiry are seen
within a test; the waits are bounded polls, never fixed sleeps standing in
for an assertion.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from support.openbao import OpenBao
from support.postgres import Postgres, can_log_in

from cypher_cell import CellExpiredError, SecretStore, load_secrets

POLICY = """
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"""
CREATE = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
#: role -> (default_ttl, max_ttl) in seconds.
ROLES = {"app": (4, 3600), "brief": (3, 5)}
KEYS = {"DB_USER": "username", "DB_PASSWORD": "password"}


@pytest.fixture(scope="module")
def database(openbao: OpenBao, postgres: Postgres) -> OpenBao:
    openbao.enable_secrets("database", "database")
    openbao.api(
        "POST",
        "database/config/pg",
        {
            "plugin_name": "postgresql-database-plugin",
            "connection_url": postgres.connection_url(),
            "username": postgres.superuser,
            "password": postgres.password,
            "allowed_roles": "*",
        },
    )
    for role, (ttl, max_ttl) in ROLES.items():
        openbao.api(
            "POST",
            f"database/roles/{role}",
            {"db_name": "pg", "creation_statements": [CREATE], "default_ttl": ttl, "max_ttl": max_ttl},
        )
    openbao.policy("db-app", POLICY)
    return openbao


@pytest.fixture
def app_token(database: OpenBao) -> str:
    return database.token("db-app")


def load(server: OpenBao, token: str, role: str = "app", **kw: object) -> SecretStore:
    from cypher_cell.providers import Vault, VaultToken

    return load_secrets(
        Vault(f"database/creds/{role}", url=server.address, auth=VaultToken(token), keys=KEYS, **kw)  # type: ignore[arg-type]
    )


def credentials(store: SecretStore) -> tuple[str, str]:
    # Test-process copies, handed to psycopg as any application would.
    return store["DB_USER"].reveal().decode(), store["DB_PASSWORD"].reveal().decode()


def new_lease(server: OpenBao, role: str, before: set[str]) -> str:
    leases = set(server.leases(f"database/creds/{role}/")) - before
    assert len(leases) == 1, f"expected one new lease under database/creds/{role}/, got {len(leases)}"
    return leases.pop()


def expire_time(lease: dict[str, object]) -> datetime:
    """The lease's end (the server writes nanoseconds; Python takes micro)."""
    whole, _, fraction = str(lease["expire_time"]).rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")


def test_credentials_come_with_a_renewable_lease_and_log_in(
    database: OpenBao, postgres: Postgres, app_token: str, stores: list[SecretStore]
) -> None:
    before = set(database.leases("database/creds/app/"))
    store = load(database, app_token)
    stores.append(store)
    assert sorted(store) == ["DB_PASSWORD", "DB_USER"]
    assert "database/creds/app" in store.source("DB_PASSWORD")
    lease = database.lease(new_lease(database, "app", before))
    assert lease["renewable"] is True
    # The lease is the cells' time to live (4 s, not the KV default of none).
    ttl = store["DB_PASSWORD"].ttl_sec
    assert ttl is not None and 0 < ttl <= ROLES["app"][0]
    ok, why = can_log_in(postgres, *credentials(store))
    assert ok, why


def deadline(store: SecretStore, key: str) -> float:
    """The cell's deadline on the monotonic clock, from its `expires_in`."""
    left = store[key].expires_in
    assert left is not None, f"{key} has no deadline"
    return time.monotonic() + left


def test_the_lease_is_renewed_and_the_cells_deadline_moves_with_it(
    database: OpenBao, postgres: Postgres, app_token: str, stores: list[SecretStore]
) -> None:
    before = set(database.leases("database/creds/app/"))
    store = load(database, app_token)
    stores.append(store)
    lease_id = new_lease(database, "app", before)
    first = expire_time(database.lease(lease_id))
    first_deadline = deadline(store, "DB_PASSWORD")
    loaded = time.monotonic()
    assert first_deadline <= loaded + ROLES["app"][0] + 0.5
    # Past the first lease's end: without renewal the server would have
    # revoked the user and the cells would have expired.
    until = loaded + 3 * ROLES["app"][0]
    renewed = False
    while time.monotonic() < until:
        lease = database.lease(lease_id)
        assert lease, "the lease was revoked instead of renewed"
        if lease.get("last_renewal") and expire_time(lease) > first:
            renewed = True
            if time.monotonic() - loaded > ROLES["app"][0] + 1:
                break
        time.sleep(0.25)
    assert renewed, "the store never renewed its lease"
    assert time.monotonic() - loaded > ROLES["app"][0] + 1
    # The cells' deadline moved with the lease (both cells of the lease).
    for key in KEYS:
        moved = deadline(store, key) - first_deadline
        assert moved > 1.0, f"{key}: the deadline moved by {moved:.2f} s after renewal"
    # And they outlived the lease's first end.
    same = store["DB_PASSWORD"].reveal() == store["DB_PASSWORD"].reveal()
    assert same, "DB_PASSWORD unreadable after the first lease's end"
    ok, why = can_log_in(postgres, *credentials(store))
    assert ok, why


def test_a_lease_that_reaches_its_max_ttl_expires_its_cells(
    database: OpenBao, app_token: str, stores: list[SecretStore]
) -> None:
    store = load(database, app_token, role="brief")
    stores.append(store)
    _, max_ttl = ROLES["brief"]
    time.sleep(max_ttl + 1.5)
    with pytest.raises(CellExpiredError):
        store["DB_PASSWORD"].reveal()


@pytest.mark.parametrize("revoke", [True, False], ids=["revoke_on_close", "control-kept"])
def test_revoke_on_close_revokes_the_lease_and_the_user_can_no_longer_log_in(
    database: OpenBao, postgres: Postgres, app_token: str, revoke: bool
) -> None:
    before = set(database.leases("database/creds/app/"))
    store = load(database, app_token, revoke_on_close=revoke)
    lease_id = new_lease(database, "app", before)
    user, password = credentials(store)
    ok, why = can_log_in(postgres, user, password)
    assert ok, why
    store.close()
    if revoke:
        assert database.lease(lease_id) == {}, "the lease is still live after close()"
        ok, why = can_log_in(postgres, user, password)
        assert not ok, "the revoked user can still log in"
        assert "password authentication failed" in why or "does not exist" in why, why
    else:
        # Control: without revoke_on_close the lease and the user outlive the store.
        assert database.lease(lease_id), "the lease is gone without revoke_on_close"
        ok, why = can_log_in(postgres, user, password)
        assert ok, why
        database.api("PUT", "sys/leases/revoke", {"lease_id": lease_id})
