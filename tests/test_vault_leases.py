"""Leases as time to live, and `SecretStore.refresh()`, against the real
dev server (support.openbao).

PKI with ``generate_lease=true`` gives a cheap lease (not renewable, so
the cells expire at its end); it is also a write with parameters
(``pki/issue/web`` with ``common_name``), and its reply has fields that are
not strings (``ca_chain`` is an array, ``expiration`` a number), which
become their JSON text.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest
from support.openbao import OpenBao

from cypher_cell import CellExpiredError, Policy, ProviderError, SecretStore, load_secrets

PKI_TTL = 3  # seconds


@pytest.fixture(scope="module")
def pki(openbao: OpenBao) -> OpenBao:
    openbao.enable_secrets("pki", "pki")
    openbao.api("POST", "pki/root/generate/internal", {"common_name": "cypher-cell test CA", "ttl": "24h"})
    openbao.api(
        "POST",
        "pki/roles/web",
        {
            "allowed_domains": ["example.test"],
            "allow_subdomains": True,
            "generate_lease": True,
            "ttl": f"{PKI_TTL}s",
            "max_ttl": f"{PKI_TTL}s",
            "key_type": "ec",
            "key_bits": 256,
        },
    )
    return openbao


def issue(server: OpenBao, **kw: object) -> SecretStore:
    from cypher_cell.providers import Vault, VaultToken

    return load_secrets(
        Vault(
            "pki/issue/web",
            url=server.address,
            auth=VaultToken(server.root_token),
            params={"common_name": "web.example.test"},
        ),
        **kw,  # type: ignore[arg-type]
    )


def test_a_write_with_params_issues_a_certificate_whose_lease_is_the_cells_ttl(
    pki: OpenBao, stores: list[SecretStore]
) -> None:
    store = issue(pki)
    stores.append(store)
    assert {"certificate", "private_key", "issuing_ca", "ca_chain", "serial_number"} <= set(store)
    with store["private_key"].expose() as key:
        assert bytes(key[:11]) == b"-----BEGIN "
    for field in ("private_key", "certificate"):
        ttl = store[field].ttl_sec
        assert ttl is not None and 0 < ttl <= PKI_TTL, f"{field}: ttl_sec {ttl}"
    # Not renewable: the cells expire at the lease's end.
    time.sleep(PKI_TTL + 0.5)
    with pytest.raises(CellExpiredError):
        store["private_key"].reveal()


def test_fields_that_are_not_strings_are_their_json_text(pki: OpenBao, stores: list[SecretStore]) -> None:
    store = issue(pki)
    stores.append(store)
    chain = json.loads(store["ca_chain"].reveal())
    assert isinstance(chain, list) and chain and chain[0].startswith("-----BEGIN CERTIFICATE-----")
    assert store["expiration"].reveal().isdigit()


@pytest.mark.parametrize(("policy_ttl", "shorter"), [(0.5, True), (3600.0, False)])
def test_the_shorter_of_the_lease_and_the_policy_ttl_wins(
    pki: OpenBao, stores: list[SecretStore], policy_ttl: float, shorter: bool
) -> None:
    store = issue(pki, policy={"private_key": Policy(ttl_sec=policy_ttl)})
    stores.append(store)
    ttl = store["private_key"].ttl_sec
    assert ttl is not None
    if shorter:
        assert ttl == policy_ttl
    else:
        assert 0 < ttl <= PKI_TTL


# --- refresh() ----------------------------------------------------------------------


def kv_store(server: OpenBao, *paths: str) -> SecretStore:
    from cypher_cell.providers import Vault, VaultToken

    return load_secrets(Vault(*paths, url=server.address, auth=VaultToken(server.root_token)))


def token() -> bytes:
    return b"r-" + secrets.token_hex(12).encode()


def test_refresh_rereads_every_key_and_wipes_the_old_cells(
    openbao: OpenBao, stores: list[SecretStore]
) -> None:
    first, second, other = token(), token(), token()
    openbao.kv_put("refresh/a", {"A": first.decode()})
    openbao.kv_put("refresh/b", {"B": other.decode()})
    store = kv_store(openbao, "secret/refresh/a", "secret/refresh/b")
    stores.append(store)
    old = store["A"]
    openbao.kv_put("refresh/a", {"A": second.decode()})
    store.refresh()
    same = store["A"] == second
    assert same, "A after refresh() is not the server's new value"
    same = store["B"] == other
    assert same, "B changed"
    assert old.wiped, "the replaced cell was not wiped"


def test_refresh_is_all_or_nothing(openbao: OpenBao, stores: list[SecretStore]) -> None:
    first, other = token(), token()
    openbao.kv_put("refresh-aon/a", {"A": first.decode()})
    openbao.kv_put("refresh-aon/b", {"B": other.decode()})
    store = kv_store(openbao, "secret/refresh-aon/a", "secret/refresh-aon/b")
    stores.append(store)
    openbao.kv_put("refresh-aon/a", {"A": token().decode()})
    openbao.api("DELETE", "secret/metadata/refresh-aon/b")  # the second path is gone
    with pytest.raises(ProviderError) as info:
        store.refresh()
    assert "secret/refresh-aon/b" in str(info.value)
    # The store kept every old cell, readable and unchanged.
    same = store["A"] == first and store["B"] == other
    assert same, "refresh() that failed changed the store"
