"""Keyring: secrets from a real Secret Service (gnome-keyring-daemon on a
private D-Bus session bus, started by tests/secret_service.py), not a mock.

Every behaviour is checked on both read paths: the Secret Service fast path
(keyring's own SecretService backend: values decrypted into a bytearray and
zeroed) and the generic path every other backend takes (`get_password()`
returns a `str`). The generic path is reached with a subclass of the same
backend, so both talk to the same daemon.

Secret values never appear in assertion output: comparisons are computed
into booleans first (pytest would print both operands of an ``==``).

Residue measured on the development machine (Debian 12, gnome-keyring 42.1,
keyring 25.7.0, secretstorage 3.5.0, cryptography 48.0.0; copies of the
secret, raw + UTF-16/32-LE forms, in a child after it dropped the value or
closed the store; 42 runs each): keyring.get_password() + del leaves 2 every
time (the anchor in docs/providers.md); Keyring on the Secret Service fast path leaves
0 every time; Keyring through get_password() leaves 0 or 1 (keyring's own
freed copies, partly overwritten by later allocations: not zeroed by us).
With a live cell in locked memory the fast path shows exactly 1 copy (the
cell); through get_password() 1 or 2.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path

import keyring
import keyring.errors
import pytest
import secretstorage.exceptions
from keyring.backend import KeyringBackend
from keyring.backends import SecretService as secret_service_backend
from keyring.backends import fail
from support.child import start_child
from support.procfs import random_secret, scan_memory, secret_forms
from support.provider_contract import ProviderContract, failed_load_leaves_no_value
from support.secret_service import SecretService, secret_service  # noqa: F401  (the fixture)

from cypher_cell import (
    MissingSecretsError,
    ProviderError,
    ProviderUnavailableError,
    load_secrets,
)
from cypher_cell._native import _pool_stats
from cypher_cell.providers import Keyring, Provider

FAST = "keyring.backends.SecretService.Keyring"
GENERIC = f"{__name__}.ThroughGetPassword"


class ThroughGetPassword(secret_service_backend.Keyring):
    """keyring's Secret Service backend under another class: `Keyring` reads
    through its `get_password()`, as it does for every other backend."""


@pytest.fixture(params=["fast", "generic"])
def read_path(request: pytest.FixtureRequest, secret_service: SecretService) -> Iterator[str]:  # noqa: F811
    """The backend class `Keyring` finds; restored afterwards."""
    backend = ThroughGetPassword() if request.param == "generic" else secret_service_backend.Keyring()
    keyring.set_keyring(backend)
    yield FAST if request.param == "fast" else GENERIC
    keyring.set_keyring(secret_service_backend.Keyring())


def new_service() -> str:
    """A keyring service name no other test uses."""
    return "cc-test-" + secrets.token_hex(6)


@pytest.fixture
def service(read_path: str) -> str:
    return new_service()


def value() -> str:
    return "v-" + secrets.token_hex(16)


def no_value_in(exc: BaseException, secret: str) -> bool:
    """The value is in neither the message, the repr nor any chained error."""
    return secret not in "".join(traceback.format_exception(exc)) + repr(exc)


class TestKeyringContract(ProviderContract):
    enumerable = False

    @pytest.fixture(autouse=True)
    def _service(self, service: str) -> None:
        self.service = service

    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        for key, secret in planted.items():
            keyring.set_password(self.service, key, secret.decode())
        return Keyring(self.service)


def test_loads_a_password_set_with_keyring(service: str) -> None:
    expected = value()
    keyring.set_password(service, "db", expected)
    with load_secrets(Keyring(service), required=["db"]) as store:
        same = store["db"] == expected
        assert same
        assert store.source("db") == f"keyring {service}/db"
        shown = expected in repr(store)
        assert not shown
    assert store["db"].wiped


def test_a_missing_key_is_absent_and_reported_by_name_when_required(service: str) -> None:
    keyring.set_password(service, "present", value())
    with load_secrets(Keyring(service), keys=["present", "absent"]) as store:
        assert list(store) == ["present"]
    with pytest.raises(MissingSecretsError) as info:
        load_secrets(Keyring(service), required=["present", "absent"])
    assert info.value.keys == ("absent",)


def test_usernames_per_key_default_to_the_key_name(service: str) -> None:
    admin, api, decoy = value(), value(), value()
    keyring.set_password(service, "postgres-admin", admin)
    keyring.set_password(service, "api", api)
    keyring.set_password(service, "db", decoy)  # not read: "db" maps to another username
    provider = Keyring(service, username={"db": "postgres-admin"})
    assert provider.username_for("db") == "postgres-admin"
    assert provider.username_for("api") == "api"
    with load_secrets(provider, required=["db", "api"]) as store:
        right = (store["db"] == admin, store["api"] == api, store["db"] != decoy)
        assert right == (True, True, True)
        assert store.source("db") == f"keyring {service}/postgres-admin"
        assert store.source("api") == f"keyring {service}/api"


@pytest.mark.parametrize("text", ["", "pässwörd ✓ 密码", "x" * 5000])
def test_empty_non_ascii_and_long_values_round_trip(service: str, text: str) -> None:
    """Empty: a whole block of padding; non-ASCII: UTF-8 bytes in the cell."""
    keyring.set_password(service, "k", text)
    with load_secrets(Keyring(service), required=["k"]) as store:
        same = (store["k"] == text, store["k"].reveal() == text.encode())
        assert same == (True, True)


def test_a_value_that_is_not_text(service: str, read_path: str) -> None:
    """A Secret Service item holding bytes that are not UTF-8. The fast path
    loads them as they are; keyring's get_password() fails decoding them,
    and that error (whose text and attributes hold the value) is reported by
    type only, with nothing chained."""
    import secretstorage

    tail = secrets.token_hex(8)
    secret = b"\xff\xfe-not-utf8-" + tail.encode()
    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        attributes = {"service": service, "username": "blob", "application": "cypher_cell tests"}
        collection.create_item("binary value", attributes, secret, replace=True)
    if read_path == FAST:
        with load_secrets(Keyring(service), required=["blob"]) as store:
            same = store["blob"] == secret
            assert same
        return
    keyring.set_password(service, "first", value())
    before = _pool_stats()["live_slots"]
    with pytest.raises(ProviderError) as info:
        load_secrets(Keyring(service), keys=["first", "blob"])
    assert not isinstance(info.value, ProviderUnavailableError)
    assert "UnicodeDecodeError" in str(info.value) and "'blob'" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    clean = no_value_in(info.value, tail)
    assert clean, "a value shows in the error"
    assert _pool_stats()["live_slots"] == before, "the cell made for 'first' was not wiped"


def test_no_backend_fails_naming_the_backend_and_key(secret_service: SecretService) -> None:  # noqa: F811
    service, planted = new_service(), value()
    keyring.set_password(service, "db", planted)
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(ProviderUnavailableError) as info:
            load_secrets(Keyring(service), required=["db"])
    finally:
        keyring.set_keyring(secret_service_backend.Keyring())
    message = str(info.value)
    assert "keyring.backends.fail.Keyring" in message and "'db'" in message
    assert "NoKeyringError" in message
    # Not chained: a backend's exception may be chained to one holding the value.
    assert info.value.__cause__ is None and info.value.__context__ is None
    clean = no_value_in(info.value, planted)
    assert clean, "a value shows in the error"


def test_an_unreachable_bus_fails_naming_the_backend_and_key(
    service: str, read_path: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    planted = value()
    keyring.set_password(service, "db", planted)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus-here")
    with pytest.raises(ProviderUnavailableError) as info:
        load_secrets(Keyring(service), required=["db"])
    message = str(info.value)
    assert read_path in message and "'db'" in message, message
    clean = no_value_in(info.value, planted)
    assert clean, "a value shows in the error"


def test_a_locked_collection_fails_naming_the_backend_and_key(
    service: str,
    read_path: str,
    secret_service: SecretService,  # noqa: F811
) -> None:
    """Locked (a screen lock, say) and no one to answer the unlock prompt:
    gnome-keyring dismisses it at once, here as on a headless server."""
    planted = value()
    keyring.set_password(service, "db", planted)
    secret_service.lock()
    try:
        with pytest.raises(ProviderUnavailableError) as info:
            load_secrets(Keyring(service), required=["db"])
    finally:
        secret_service.unlock()
    message = str(info.value)
    assert read_path in message and "'db'" in message and "KeyringLocked" in message, message
    clean = no_value_in(info.value, planted)
    assert clean, "a value shows in the error"
    with load_secrets(Keyring(service), required=["db"]) as store:  # unlocked again
        same = store["db"] == planted
        assert same


class Leaky(KeyringBackend):
    """A backend whose failures carry the value in their text."""

    priority = 1  # type: ignore[assignment]

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get_password(self, service: str, username: str) -> str | None:
        raise self.error

    def set_password(self, service: str, username: str, password: str) -> None:
        raise NotImplementedError

    def delete_password(self, service: str, username: str) -> None:
        raise NotImplementedError


@pytest.mark.parametrize(
    "error",
    [
        keyring.errors.KeyringError,
        keyring.errors.NoKeyringError,
        keyring.errors.KeyringLocked,
        keyring.errors.InitError,
        lambda text: OSError(5, text),
        OSError,
        secretstorage.exceptions.SecretStorageException,
        secretstorage.exceptions.LockedException,
    ],
)
def test_a_backend_error_text_is_never_passed_on(error: Callable[[str], Exception]) -> None:
    """A backend may put anything in its error's text, the value included:
    the error names the backend class, the failure's type and a generic
    reason, never the backend's words."""
    planted = value()
    before = keyring.get_keyring()
    keyring.set_keyring(Leaky(error(f"could not decode {planted!r}")))
    try:
        with pytest.raises(ProviderUnavailableError) as info:
            load_secrets(Keyring("leaky"), required=["db"])
    finally:
        keyring.set_keyring(before)
    clean = no_value_in(info.value, planted)
    assert clean, "a value shows in the error"
    clean = no_value_in(info.value, "could not decode")
    assert clean, "a value shows in the error"
    message = str(info.value)
    assert f"{__name__}.Leaky" in message and "'db'" in message, message
    assert info.value.__cause__ is None and info.value.__context__ is None


FROM_FILE = """
import keyring
from keyring.backend import KeyringBackend
from cypher_cell.providers import Keyring

class FromFile(KeyringBackend):
    # Reads the value from a file on each call: the backend holds none.
    priority = 1

    def get_password(self, service, username):
        with open(sys.argv[2]) as f:
            return f.read()

    def set_password(self, service, username, password):
        raise NotImplementedError

    def delete_password(self, service, username):
        raise NotImplementedError

keyring.set_keyring(FromFile())
"""

FROM_DAEMON = """
import keyring
from keyring.backends.SecretService import Keyring as SecretService
from cypher_cell.providers import Keyring

class ThroughGetPassword(SecretService):
    pass

keyring.set_keyring(SecretService() if sys.argv[2] == "fast" else ThroughGetPassword())
"""


def test_a_cell_that_cannot_be_made_leaves_no_value_in_traceback_locals_any_backend(tmp_path: Path) -> None:
    """The generic path with a plain backend: the `str` it returns is in no
    frame of the failed load's traceback."""
    secret = random_secret()
    (tmp_path / "value").write_bytes(secret)
    attempt = "load_secrets(Keyring('svc'), required=['db'], default_policy=LOCKED)"
    places = failed_load_leaves_no_value(FROM_FILE, attempt, secret, str(tmp_path / "value"))
    assert places == []


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_a_cell_that_cannot_be_made_leaves_no_value_in_traceback_locals(
    secret_service: SecretService,  # noqa: F811
    path: str,
) -> None:
    """Both read paths against the daemon: Secret Service's decrypted buffer
    and keyring's `str` are in no frame of the failed load's traceback."""
    service, secret = new_service(), random_secret()
    keyring.set_keyring(secret_service_backend.Keyring())
    keyring.set_password(service, "db", secret.decode())
    attempt = f"load_secrets(Keyring({service!r}), required=['db'], default_policy=LOCKED)"
    places = failed_load_leaves_no_value(FROM_DAEMON, attempt, secret, path)
    assert places == []


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_without_the_keyring_package_the_error_gives_the_install_hint() -> None:
    out = run_python(
        """
        import sys
        sys.modules["keyring"] = None  # as if not installed
        from cypher_cell import load_secrets
        from cypher_cell.providers import Keyring
        try:
            load_secrets(Keyring("myapp"), required=["db"])
        except Exception as exc:
            print(type(exc).__name__)
            print(exc)
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    kind, message = out.stdout.splitlines()
    assert kind == "ProviderUnavailableError"
    assert "pip install cypher-cell[keyring]" in message and "keyring myapp" in message


def test_importing_the_providers_does_not_import_keyring() -> None:
    out = run_python(
        """
        import sys
        import cypher_cell.providers
        cypher_cell.providers.Keyring("myapp")
        print(sorted(m for m in ("keyring", "secretstorage", "jeepney", "cryptography") if m in sys.modules))
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_a_keyring_cannot_be_listed_and_says_what_it_reads() -> None:
    provider = Keyring("myapp")
    assert provider.offered_keys() is None
    assert provider.describe() == "keyring myapp"
    assert repr(provider) == "<Keyring keyring myapp>"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("",), {}),
        ((b"myapp",), {}),
        (("myapp",), {"username": "alice"}),
        (("myapp",), {"username": {"db": ""}}),
        (("myapp",), {"username": {"db": 3}}),
    ],
)
def test_bad_arguments_are_refused(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        Keyring(*args, **kwargs)  # type: ignore[arg-type]


# --- nothing left behind -------------------------------------------------------------------------

KEYRING_ITSELF = """
import keyring
secret = keyring.get_password(sys.argv[1], sys.argv[2])
assert secret is not None
del secret
gc.collect()
"""

THROUGH_CYPHER_CELL = """
import keyring
from cypher_cell import Policy, load_secrets
from cypher_cell.providers import Keyring
if sys.argv[3] != "fast":
    from keyring.backends.SecretService import Keyring as SecretService
    class ThroughGetPassword(SecretService):
        pass
    keyring.set_keyring(ThroughGetPassword())
keep = sys.argv[4:] == ["keep"]
store = load_secrets(
    Keyring(sys.argv[1]),
    required=[sys.argv[2]],
    default_policy=Policy(protection="locked") if keep else None,  # locked: a scan can see the cell
)
with store[sys.argv[2]].expose() as view:
    assert len(view) > 0
if not keep:
    store.close()
    del store
gc.collect()
"""


def copies_left(code: str, service: str, username: str, *args: str) -> int:
    """Copies of the value in a child that read it from the daemon itself
    (it is not in the child's argv or environment); the daemon's own memory
    is not scanned."""
    secret = random_secret()
    keyring.set_password(service, username, secret.decode())
    child = start_child(code + "\nreport(done=True)\nhold()\n", service, username, *args)
    try:
        return scan_memory(child.pid, secret_forms(secret)).copies
    finally:
        child.finish()


@pytest.fixture
def residue_service(secret_service: SecretService) -> str:  # noqa: F811
    keyring.set_keyring(secret_service_backend.Keyring())
    return "cc-residue-" + secrets.token_hex(6)


def test_control_a_child_that_reads_nothing_has_no_copy(residue_service: str) -> None:
    assert copies_left("import keyring", residue_service, "u0") == 0


def test_control_a_child_holding_the_value_has_a_copy(residue_service: str) -> None:
    held = "import keyring\nkept = keyring.get_password(sys.argv[1], sys.argv[2])"
    assert copies_left(held, residue_service, "u1") >= 1


def test_keyring_leaves_no_more_copies_through_cypher_cell_than_on_its_own(residue_service: str) -> None:
    runs = 3
    own = [copies_left(KEYRING_ITSELF, residue_service, f"own{i}") for i in range(runs)]
    fast = [copies_left(THROUGH_CYPHER_CELL, residue_service, f"fast{i}", "fast") for i in range(runs)]
    generic = [copies_left(THROUGH_CYPHER_CELL, residue_service, f"gen{i}", "generic") for i in range(runs)]
    print(
        f"\nkeyring residue, copies after dropping/closing ({runs} runs): "
        f"keyring.get_password()+del {own}; Keyring (Secret Service fast path) {fast}; "
        f"Keyring (through get_password) {generic}"
    )
    assert fast == [0] * runs
    assert max(generic) <= max(own)


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_control_a_live_locked_cell_is_the_one_copy_on_the_fast_path(residue_service: str, path: str) -> None:
    """The scan sees a live cell in locked (not secretmem) memory: on the fast
    path it is the only copy there is; through get_password() keyring's own
    `str` may still be around beside it."""
    copies = copies_left(THROUGH_CYPHER_CELL, residue_service, "live-" + path, path, "keep")
    if path == "fast":
        assert copies == 1
    else:
        assert copies >= 1
