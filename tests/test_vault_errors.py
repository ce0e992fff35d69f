"""A sealed node and server errors (5xx): tried elsewhere or again with
backoff, within `timeout`, then named. A real sealed server (started here,
apart from the shared ones) and the fake (support.fake_vault) for a 5xx
that passes. (A missing path, refused connections and TLS failures:
test_vault.py.)
"""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fake_vault import FakeVault, body, http_response, kv_reply
from support.openbao import OpenBao, start_dev_server

from cypher_cell import ProviderUnavailableError, load_secrets
from cypher_cell.providers import Provider


def vault(*paths: str, url: str | list[str], token: str, **kw: object) -> Provider:
    from cypher_cell.providers import Vault, VaultToken

    return Vault(*paths, url=url, auth=VaultToken(token), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sealed() -> Iterator[OpenBao]:
    """A dev server of its own, sealed (health 503)."""
    server = start_dev_server(Path(tempfile.mkdtemp(prefix="cc-sealed-")))
    try:
        server.bao("operator", "seal")
        server.wait_until((503,))
        yield server
    finally:
        server.stop()


def test_a_sealed_node_is_skipped_for_the_next_address(sealed: OpenBao, openbao: OpenBao) -> None:
    value = b"s-" + secrets.token_hex(12).encode()
    openbao.kv_put("errors/sealed", {"S": value.decode()})
    provider = vault("secret/errors/sealed", url=[sealed.address, openbao.address], token=openbao.root_token)
    with load_secrets(provider) as store:
        same = store["S"] == value
        assert same, "S differs"


def test_a_sealed_node_alone_is_unavailable_within_the_timeout(sealed: OpenBao) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as info:
        load_secrets(vault("secret/app", url=sealed.address, token=sealed.root_token, timeout=1.5))
    elapsed = time.monotonic() - started
    assert sealed.address in str(info.value)
    assert elapsed < 1.5 + 1.0, f"took {elapsed:.2f} s with timeout=1.5"


def flaky(failures: int) -> tuple[FakeVault, list[int]]:
    """A fake whose first `failures` reads get a 503, then the value."""
    served: list[int] = []
    good = kv_reply({"F": "fine"})
    error = json.dumps({"errors": ["local node not active but active cluster node not found"]}).encode()

    def reply(conn: socket.socket) -> None:
        served.append(1)
        if len(served) <= failures:
            conn.sendall(http_response(error, status="503 Service Unavailable"))
        else:
            body(good)(conn)

    return FakeVault(reply), served


def test_a_5xx_is_retried_with_backoff_until_it_passes() -> None:
    server, served = flaky(2)
    try:
        with load_secrets(vault("secret/app", url=server.address, token="s.fake", timeout=5.0)) as store:
            same = store["F"] == b"fine"
            assert same, "F differs"
    finally:
        server.close()
    assert len(served) == 3


def test_a_5xx_that_lasts_is_unavailable_within_the_timeout_naming_the_address() -> None:
    server, served = flaky(10**6)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderUnavailableError) as info:
            load_secrets(vault("secret/app", url=server.address, token="s.fake", timeout=1.5))
    finally:
        server.close()
    elapsed = time.monotonic() - started
    assert server.address in str(info.value)
    assert len(served) >= 2, "not retried"
    assert elapsed < 1.5 + 1.0, f"took {elapsed:.2f} s with timeout=1.5"
