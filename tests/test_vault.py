"""The `Vault` provider against the real OpenBao dev servers (support.openbao,
HTTP and TLS): KV v1 and v2, several paths, `keys=`, errors that name the
path and the address and never a token or value, all or nothing, the
default address and token from the environment, `revoke_on_close`, the CLI,
and what a read leaves in a child's memory (/proc/PID/mem).

Leases as TTLs, PKI and `refresh()` are in test_vault_leases.py; logins in
test_vault_auth.py; renewal with real database credentials in
test_vault_database.py; failover in test_vault_cluster.py; bad replies in
test_vault_bad_replies.py; hvac's residue beside ours in test_vault_residue.py.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path

import pytest
from support.child import run_child, start_child
from support.openbao import OpenBao, environment
from support.privileges import CHECK_NO_CAP, without_memlock
from support.procfs import random_secret, scan_memory, secret_forms
from support.provider_contract import value_in_traceback

from cypher_cell import (
    CypherCell,
    Policy,
    ProviderError,
    ProviderUnavailableError,
    SecretStore,
    load_secrets,
)
from cypher_cell._native import VaultClient
from cypher_cell.cli import main as cli_main
from cypher_cell.providers import EnvFile, Environ, Vault, VaultToken


def value() -> str:
    return "v-" + secrets.token_hex(12)


def name() -> str:
    return "t-" + secrets.token_hex(4)


@pytest.fixture(params=["http", "tls"])
def server(request: pytest.FixtureRequest) -> OpenBao:
    return request.getfixturevalue("openbao" if request.param == "http" else "openbao_tls")  # type: ignore[no-any-return]


def vault(server: OpenBao, *paths: str, **kw: object) -> Vault:
    kw.setdefault("auth", VaultToken(server.root_token))
    ca = str(server.ca_file) if server.ca_file else None
    return Vault(*paths, url=server.address, ca_file=ca, **kw)  # type: ignore[arg-type]


def kv1(server: OpenBao) -> str:
    server.enable_secrets("kv", "kv1", "-version=1")
    return "kv1"


def test_kv_v2_fields_become_keys(server: OpenBao, stores: list[SecretStore]) -> None:
    path, planted = name(), {"PASSWORD": value(), "USER": value()}
    server.kv_put(path, planted)
    store = load_secrets(vault(server, f"secret/{path}"))
    stores.append(store)
    assert list(store) == ["PASSWORD", "USER"]
    for key, expected in planted.items():
        same = store[key] == expected.encode()
        assert same, f"{key}: value differs"
        assert store.source(key) == f"vault secret/{path}:{key}"
        assert store[key].ttl_sec is None, "KV v2 has no lease"
    assert not any(v in repr(store) for v in planted.values())


def test_a_namespace_is_where_the_path_is_read(openbao: OpenBao, stores: list[SecretStore]) -> None:
    """`namespace=` sends X-Vault-Namespace: the same path is another secret
    in another namespace, and absent outside it (mount detection too)."""
    ns, path, planted = name(), name(), value()
    openbao.bao("namespace", "create", ns)
    openbao.bao("secrets", "enable", f"-ns={ns}", "-path=secret", "kv-v2")
    openbao.bao("kv", "put", f"-ns={ns}", f"secret/{path}", f"K={planted}")
    store = load_secrets(vault(openbao, f"secret/{path}", namespace=ns))
    stores.append(store)
    same = store["K"] == planted.encode()
    assert same, "the namespaced value differs"
    with pytest.raises(ProviderError, match="no such path"):
        load_secrets(vault(openbao, f"secret/{path}"))


def test_kv_v1_is_told_from_v2_by_its_mount(server: OpenBao, stores: list[SecretStore]) -> None:
    path, token = name(), value()
    server.kv_put(path, {"TOKEN": token}, mount=kv1(server))
    store = load_secrets(vault(server, f"kv1/{path}"))
    stores.append(store)
    same = store["TOKEN"] == token.encode()
    assert same, "TOKEN: value differs"
    # KV v1 answers with its refresh interval (32 days by default) as the
    # lease duration: the cell's time to live.
    assert store["TOKEN"].ttl_sec == 32 * 24 * 3600


def test_several_paths_the_first_with_a_field_wins_and_keys_map_fields(
    openbao: OpenBao, stores: list[SecretStore]
) -> None:
    first, second = name(), name()
    a, b, c = value(), value(), value()
    openbao.kv_put(first, {"SHARED": a})
    openbao.kv_put(second, {"SHARED": b, "ONLY_SECOND": c}, mount=kv1(openbao))
    store = load_secrets(vault(openbao, f"secret/{first}", f"kv1/{second}"))
    stores.append(store)
    assert list(store) == ["SHARED", "ONLY_SECOND"]
    same = store["SHARED"] == a.encode() and store["ONLY_SECOND"] == c.encode()
    assert same, "the first path's value wins, the second's other field is there"
    assert store.source("ONLY_SECOND") == f"vault kv1/{second}:ONLY_SECOND"

    mapped = load_secrets(
        vault(openbao, f"secret/{first}", f"kv1/{second}", keys={"DB_PASSWORD": "ONLY_SECOND"})
    )
    stores.append(mapped)
    assert list(mapped) == ["DB_PASSWORD"], "keys= loads the mapped fields only, under their new names"
    same = mapped["DB_PASSWORD"] == c.encode()
    assert same, "DB_PASSWORD: value differs"


def test_a_path_with_spaces_and_symbols_is_read_as_the_cli_reads_it(
    openbao: OpenBao, stores: list[SecretStore]
) -> None:
    path, secret = f"{name()} with space?#é", value()
    openbao.kv_put(path, {"A": secret})
    store = load_secrets(vault(openbao, f"secret/{path}", timeout=3.0))
    stores.append(store)
    same = store["A"] == secret.encode()
    assert same, "A: value differs"


def test_a_missing_path_is_an_error_naming_it(openbao: OpenBao) -> None:
    present = name()
    openbao.kv_put(present, {"A": value()})
    for paths in (["secret/nothing-here"], [f"secret/{present}", "secret/nothing-here"]):
        with pytest.raises(ProviderError) as info:
            load_secrets(vault(openbao, *paths))
        assert "secret/nothing-here: no such path" in str(info.value)
        assert openbao.address in str(info.value)


def test_permission_denied_names_address_and_path_never_the_token(openbao: OpenBao) -> None:
    path, secret = name(), value()
    openbao.kv_put(path, {"A": secret})
    token = openbao.token("default")
    error = failing_load(vault(openbao, f"secret/{path}", auth=VaultToken(token)))
    message = str(error)
    assert f"secret/{path}" in message and openbao.address in message and "permission denied" in message
    assert not isinstance(error, ProviderUnavailableError)
    assert value_in_traceback(error, token.encode()) == []
    assert value_in_traceback(error, secret.encode()) == []


def failing_load(provider: Vault) -> ProviderError:
    """The error a load raises. The provider is made by the caller, so the
    error's frames (this one and the library's) hold only what the library
    keeps: a token kept as a str would show."""
    with pytest.raises(ProviderError) as info:
        load_secrets(provider)
    return info.value


FAIL_AFTER_READING = (
    CHECK_NO_CAP
    + """
from support.provider_contract import value_in_traceback
from cypher_cell import Policy, load_secrets
from cypher_cell.providers import Vault
def attempt():
    try:
        # B's cell is refused (no memory can be locked) after A's was made.
        load_secrets(Vault(sys.argv[2], sys.argv[3]), policy={"B": Policy(protection="locked")})
    except Exception as exc:
        return exc
    return None
error = attempt()
secret, token = sys.argv[1].encode(), os.environ["BAO_TOKEN"].encode()
# The cells made before the failure, as the failing frames still hold them.
from cypher_cell.providers import Entry
cells = []
chained = [error]
while chained:
    e = chained.pop()
    if e is None:
        continue
    chained += [e.__cause__, e.__context__]
    tb = e.__traceback__
    while tb is not None:
        for local in list(tb.tb_frame.f_locals.values()):
            for item in (list(local.values()) if isinstance(local, dict) else [local]):
                if isinstance(item, Entry):
                    cells.append(item.cell)
                elif isinstance(item, CypherCell):
                    cells.append(item)
        tb = tb.tb_next
report(
    raised=type(error).__name__,
    made=len(cells),
    live=sum(not c.wiped for c in cells),
    value_places=value_in_traceback(error, secret),
    token_places=value_in_traceback(error, token),
)
del secret, token
"""
)


def test_a_cell_refused_after_reading_wipes_the_others_and_shows_no_value_or_token(openbao: OpenBao) -> None:
    """In a child that cannot lock memory, the second path's cell is
    refused after the first path's was made: every cell made is wiped, and
    the error (its text, frames, __cause__ and __context__) carries neither
    the value nor the token."""
    first, second = name(), name()
    secret = random_secret()
    openbao.kv_put(first, {"A": value()})
    openbao.kv_put(second, {"B": secret.decode()})
    env = {"BAO_ADDR": openbao.address, "BAO_TOKEN": openbao.root_token}
    r = run_child(
        FAIL_AFTER_READING,
        secret.decode(),
        f"secret/{first}",
        f"secret/{second}",
        env=env,
        preexec_fn=without_memlock(0, 0),
    )
    assert r["raised"] == "MemoryLockError"
    assert r["made"] >= 1, "the first path's cell was made before the failure"
    assert r["live"] == 0, "a cell made before the failure was not wiped"
    assert r["value_places"] == []
    assert r["token_places"] == []


def test_unanswered_addresses_are_retried_then_named_within_the_timeout() -> None:
    dead = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead.append(f"http://127.0.0.1:{s.getsockname()[1]}")
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as info:
        load_secrets(Vault("secret/app", url=dead, auth=VaultToken("s.unused"), timeout=1.0))
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3.0, f"{elapsed:.2f} s: retried until the timeout, and no longer"
    assert all(f"{d}: connection refused" in str(info.value) for d in dead)
    assert "s.unused" not in str(info.value)


def test_a_dead_address_first_fails_over_to_the_next(openbao: OpenBao, stores: list[SecretStore]) -> None:
    path = name()
    openbao.kv_put(path, {"A": value()})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    store = load_secrets(
        Vault(f"secret/{path}", url=[dead, openbao.address], auth=VaultToken(openbao.root_token))
    )
    stores.append(store)
    assert list(store) == ["A"]


def test_tls_failures_say_so(openbao_tls: OpenBao) -> None:
    # No CA: the system's roots do not know the dev server's.
    with pytest.raises(ProviderError) as info:
        load_secrets(Vault("secret/x", url=openbao_tls.address, auth=VaultToken(openbao_tls.root_token)))
    assert "TLS failure" in str(info.value) and "UnknownIssuer" in str(info.value)
    assert not isinstance(info.value, ProviderUnavailableError), "a certificate problem is not retried"
    # Plain HTTP to the TLS port.
    plain = openbao_tls.address.replace("https://", "http://")
    with pytest.raises(ProviderError) as info:
        load_secrets(Vault("secret/x", url=plain, auth=VaultToken(openbao_tls.root_token)))
    assert "TLS failure" in str(info.value) and "https://" in str(info.value)
    assert openbao_tls.root_token not in str(info.value)


def test_the_address_and_token_come_from_the_environment_then_the_token_file(
    openbao: OpenBao, stores: list[SecretStore], tmp_path: Path
) -> None:
    path, secret = name(), value()
    openbao.kv_put(path, {"A": secret})
    cleared = {
        "BAO_ADDR": None,
        "VAULT_ADDR": None,
        "BAO_TOKEN": None,
        "VAULT_TOKEN": None,
        "BAO_CACERT": None,
    }
    (tmp_path / ".vault-token").write_text(openbao.root_token + "\n")
    for env in (
        {"BAO_ADDR": openbao.address, "BAO_TOKEN": openbao.root_token, "VAULT_TOKEN": "s.wrong"},
        {"VAULT_ADDR": openbao.address, "VAULT_TOKEN": openbao.root_token},
        {"VAULT_ADDR": openbao.address, "HOME": str(tmp_path)},  # ~/.vault-token
    ):
        with environment(**{**cleared, **env}):
            store = load_secrets(Vault(f"secret/{path}"))
        stores.append(store)
        same = store["A"] == secret.encode()
        assert same, f"{sorted(env)}: value differs"
    with environment(**{**cleared, "HOME": str(tmp_path / "empty")}):
        with pytest.raises(ProviderError, match="no address"):
            load_secrets(Vault(f"secret/{path}"))
        with pytest.raises(ProviderError, match="no token"):
            load_secrets(Vault(f"secret/{path}", url=openbao.address))


@pytest.fixture(scope="module")
def pki(openbao: OpenBao) -> OpenBao:
    openbao.enable_secrets("pki", "pki-revoke")
    openbao.api("POST", "pki-revoke/root/generate/internal", {"common_name": "revoke test CA", "ttl": "24h"})
    openbao.api(
        "POST",
        "pki-revoke/roles/web",
        {"allowed_domains": ["example.test"], "allow_subdomains": True, "generate_lease": True, "ttl": "1h"},
    )
    return openbao


@pytest.mark.parametrize("revoke", [True, False])
def test_revoke_on_close_revokes_every_lease(pki: OpenBao, revoke: bool) -> None:
    before = set(pki.leases("pki-revoke/issue/web/"))
    store = load_secrets(
        Vault(
            "pki-revoke/issue/web",
            url=pki.address,
            auth=VaultToken(pki.root_token),
            params={"common_name": "a.example.test"},
            revoke_on_close=revoke,
        )
    )
    ttl = store["private_key"].ttl_sec
    assert ttl is not None and 3500 < ttl <= 3600, "the lease is the cells' time to live"
    held = set(pki.leases("pki-revoke/issue/web/")) - before
    assert len(held) == 1, "one lease for the one certificate"
    store.close()
    assert store["private_key"].wiped
    left = set(pki.leases("pki-revoke/issue/web/")) - before
    assert left == (set() if revoke else held)


def test_mount_information_is_read_out_of_a_mounts_reply_only(openbao: OpenBao) -> None:
    """The native reply hands Python a mount's path, type and version; a
    secret's reply with fields of those names is refused, not read out."""
    path = name()
    openbao.kv_put(path, {"path": value(), "type": value()})
    client = VaultClient([openbao.address])
    token = CypherCell(openbao.root_token)
    (secret,) = client.send_all([("GET", f"secret/data/{path}", None, True)], token=token)
    assert sorted(secret.fields()) == ["path", "type"]
    with pytest.raises(ValueError, match="mount_info"):
        secret.mount_info()
    secret.close()
    (mount,) = client.send_all([("GET", f"sys/internal/ui/mounts/secret/{path}", None, False)], token=token)
    assert mount.mount_info() == ("secret/", "kv", "2")
    mount.close()
    token.wipe()


def test_refresh_rereads_vault_and_files_and_keeps_what_cannot_be_read_twice(
    openbao: OpenBao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = name()
    first, second = value(), value()
    openbao.kv_put(path, {"FROM_VAULT": first})
    env_file = tmp_path / ".env"
    env_file.write_text(f"FROM_FILE={first}\n")
    env_file.chmod(0o600)
    monkeypatch.setenv("CCTEST_FROM_ENV", first)
    store = load_secrets(EnvFile(env_file), Environ(prefix="CCTEST_"), vault(openbao, f"secret/{path}"))
    try:
        old = {k: store[k] for k in store}
        openbao.kv_put(path, {"FROM_VAULT": second})
        env_file.write_text(f"FROM_FILE={second}\n")
        store.refresh()
        for key in ("FROM_VAULT", "FROM_FILE"):
            same = store[key] == second.encode()
            assert same, f"{key}: not the new value"
            assert old[key].wiped, f"{key}: the old cell was not wiped"
        # The environment was scrubbed: its key keeps its cell.
        assert store["FROM_ENV"] is old["FROM_ENV"] and not old["FROM_ENV"].wiped
        assert store.source("FROM_ENV") == "environ CCTEST_FROM_ENV"
    finally:
        store.close()


def renewal_threads() -> int:
    """This process's threads named as the lease renewal thread (the
    kernel's `comm` keeps 15 bytes of the name)."""
    names = [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]
    return names.count("cypher-cell-vault-leases"[:15])


def test_one_renewal_thread_serves_every_open_store(openbao: OpenBao, stores: list[SecretStore]) -> None:
    path = name()
    openbao.kv_put(path, {"A": value()})
    for _ in range(5):
        stores.append(load_secrets(vault(openbao, f"secret/{path}")))
    assert renewal_threads() == 1


EXIT_WITHOUT_CLOSING = """
from cypher_cell import load_secrets
from cypher_cell.providers import Vault
vault = Vault("pki-revoke/issue/web", params={"common_name": "exit.example.test"}, revoke_on_close=True)
store = load_secrets(vault)
report(keys=sorted(store))
"""


def test_revoke_on_close_holds_at_interpreter_exit(pki: OpenBao) -> None:
    """A store left open when the interpreter exits is released as its
    close() would have: with revoke_on_close its leases are revoked."""
    before = set(pki.leases("pki-revoke/issue/web/"))
    env = {"BAO_ADDR": pki.address, "BAO_TOKEN": pki.root_token}
    r = run_child(EXIT_WITHOUT_CLOSING, env=env)
    assert "private_key" in r["keys"]  # type: ignore[operator]
    assert set(pki.leases("pki-revoke/issue/web/")) - before == set()


def test_cli_show_vault_lists_keys_and_sources_without_values(
    openbao: OpenBao, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = name(), name()
    a, b = value(), value()
    openbao.kv_put(first, {"ALPHA": a})
    openbao.kv_put(second, {"BETA": b})
    env = {
        "BAO_ADDR": openbao.address,
        "BAO_TOKEN": openbao.root_token,
        "VAULT_ADDR": None,
        "VAULT_TOKEN": None,
    }
    with environment(**env):
        status = cli_main(["show", "--vault", f"secret/{first}", "--vault", f"secret/{second}"])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert f"vault secret/{first}:ALPHA" in out.out and f"vault secret/{second}:BETA" in out.out
    assert a not in out.out + out.err and b not in out.out + out.err
    with environment(**env):
        assert cli_main(["show", "--vault", "secret/nothing-here"]) == 1
    assert "secret/nothing-here: no such path" in capsys.readouterr().err


def test_cli_run_vault_hands_the_fields_to_the_command(openbao: OpenBao) -> None:
    path, secret = name(), value()
    openbao.kv_put(path, {"DB_PASSWORD": secret})
    check = "import os, sys; sys.exit(0 if os.environ.get('DB_PASSWORD') == sys.argv[1] else 3)"
    env = {
        "BAO_ADDR": openbao.address,
        "BAO_TOKEN": openbao.root_token,
        "VAULT_ADDR": None,
        "VAULT_TOKEN": None,
    }
    with environment(**env):
        status = cli_main(
            ["run", "--vault", f"secret/{path}", "--no-mask", "--", sys.executable, "-c", check, secret]
        )
    assert status == 0, "the command did not get DB_PASSWORD from Vault"


# --- residue: what a read leaves in the reading process's memory ------------------

READ_AND_CLOSE = """
import warnings
warnings.simplefilter("ignore")
from cypher_cell import load_secrets
from cypher_cell.providers import Vault
store = load_secrets(Vault(sys.argv[1], ca_file=sys.argv[2] or None))
report(keys=list(store), tiers=sorted({store[k].protection for k in store}))
sys.stdin.readline()
store.close()
del store
gc.collect()
report(closed=True)
hold()
"""


def every_form(secret: bytes) -> list[bytes]:
    """Raw, UTF-16, UTF-32 and base64 at each of its three alignments (the
    last whole groups of 4 characters, which do not depend on what surrounds it)."""
    forms = secret_forms(secret)
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)[4:-4]
        forms.append(encoded)
    return forms


def test_a_read_leaves_only_the_cell_and_nothing_once_closed(server: OpenBao) -> None:
    """RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK: every buffer falls back to
    unlocked memory, which /proc/PID/mem can read, so the scan sees the
    reply's buffers, the HTTP client's and TLS's heap buffers if any were
    left: while the store is open exactly one copy (the cell), after
    closing none."""
    secret = random_secret()
    path = name()
    server.kv_put(path, {"RESIDUE": secret.decode(), "OTHER": json.dumps({"x": 1})})
    env = {"BAO_ADDR": server.address, "BAO_TOKEN": server.root_token}
    ca = str(server.ca_file) if server.ca_file else ""
    child = start_child(READ_AND_CLOSE, f"secret/{path}", ca, env=env, preexec_fn=without_memlock(0, 0))
    try:
        assert child.report["tiers"] == ["unlocked"]
        assert sorted(child.report["keys"]) == ["OTHER", "RESIDUE"]
        loaded = scan_memory(child.pid, every_form(secret)).copies
        assert child.proc.stdin is not None and child.proc.stdout is not None
        child.proc.stdin.write("\n")
        child.proc.stdin.flush()
        assert child.proc.stdout.readline().strip() == '{"closed": true}'
        closed = scan_memory(child.pid, every_form(secret)).copies
    finally:
        child.finish()
    assert loaded == 1, f"{loaded} copies while open: the cell only"
    assert closed == 0, f"{closed} copies after close"


def test_policy_ttl_shorter_than_no_lease_and_volatile_apply(
    openbao: OpenBao, stores: list[SecretStore]
) -> None:
    path = name()
    openbao.kv_put(path, {"ONCE": value(), "BRIEF": value()})
    store = load_secrets(
        vault(openbao, f"secret/{path}"),
        policy={"ONCE": Policy(volatile=True), "BRIEF": Policy(ttl_sec=30)},
    )
    stores.append(store)
    assert store["ONCE"].volatile and not store["BRIEF"].volatile
    assert store["BRIEF"].ttl_sec == 30 and store["ONCE"].ttl_sec is None
