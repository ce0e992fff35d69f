"""A real Secret Service for the keyring tests: gnome-keyring-daemon on a
private D-Bus session bus, in a throwaway home, never the user's own.

The bus has its own config: it listens on a socket in a temporary directory
and knows no activatable services, so nothing but the daemon started here
can answer as org.freedesktop.secrets (a D-Bus-activated stand-in would
make failure tests depend on the machine). The daemon is started with
``--unlock`` and a known password on stdin, which creates the login
collection unlocked; the fixture checks that the ``default`` alias points at
an unlocked collection before any test runs.

While the fixture is active, this process and every child it starts see
``DBUS_SESSION_BUS_ADDRESS`` of the private bus and
``PYTHON_KEYRING_BACKEND`` naming keyring's Secret Service backend (so a
user's keyring configuration cannot send test data elsewhere).

Needs the Debian packages ``dbus`` and ``gnome-keyring``: the fixture fails,
naming them, when their programs are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jeepney.io.blocking import DBusConnection
    from secretstorage.util import DBusAddressWrapper

APT_PACKAGES = "dbus gnome-keyring"
BACKEND = "keyring.backends.SecretService.Keyring"
LOGIN = "/org/freedesktop/secrets/collection/login"
#: The test keyring's password: it guards only a temporary directory.
PASSWORD = b"cypher-cell-test-keyring"
_GNOME_IFACE = "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface"

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass(frozen=True)
class SecretService:
    address: str
    root: Path
    bus: subprocess.Popen[bytes]
    daemon: subprocess.Popen[bytes]

    def lock(self) -> None:
        """Locks the login (default) collection, as a screen lock would."""
        with _connection() as connection:
            _service(connection).call("Lock", "ao", [LOGIN])

    def unlock(self) -> None:
        """Unlocks the login collection with its password, without a prompt."""
        from secretstorage.defines import SS_PATH
        from secretstorage.util import DBusAddressWrapper, format_secret, open_session

        with _connection() as connection:
            master = format_secret(open_session(connection), PASSWORD, "text/plain")
            gnome = DBusAddressWrapper(SS_PATH, _GNOME_IFACE, connection)
            gnome.call("UnlockWithMasterPassword", "o(oayays)", LOGIN, master)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log"))
        )


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretService]:
    missing = [p for p in ("dbus-daemon", "gnome-keyring-daemon") if shutil.which(p) is None]
    if missing:
        pytest.fail(
            f"the keyring tests need a real Secret Service, but {', '.join(missing)} was not found: "
            f"apt-get install {APT_PACKAGES}",
            pytrace=False,
        )
    try:
        import keyring
        import secretstorage  # noqa: F401
        from keyring.backends import SecretService as secret_service_backend
        from keyring.backends import fail
    except ImportError as exc:
        pytest.fail(
            f"the keyring tests need keyring and secretstorage: pip install -e '.[test]' ({exc})",
            pytrace=False,
        )

    root = tmp_path_factory.mktemp("secret-service")
    home, runtime = root / "home", root / "run"
    home.mkdir(mode=0o700)
    runtime.mkdir(mode=0o700)
    config = root / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket=root / "bus"))
    # A clean environment: the daemons see only the throwaway home.
    daemon_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
    }
    with (root / "dbus-daemon.log").open("wb") as log:
        bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=daemon_env,
        )
    daemon: subprocess.Popen[bytes] | None = None
    saved = {k: os.environ.get(k) for k in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND")}
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        if not address:
            pytest.fail(f"dbus-daemon did not start:\n{_tail(root / 'dbus-daemon.log')}", pytrace=False)
        with (root / "gnome-keyring-daemon.log").open("wb") as log:
            daemon = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**daemon_env, "DBUS_SESSION_BUS_ADDRESS": address},
            )
        assert daemon.stdin is not None
        daemon.stdin.write(PASSWORD)
        daemon.stdin.close()  # --unlock reads the password up to end of input

        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        os.environ["PYTHON_KEYRING_BACKEND"] = BACKEND
        service = SecretService(address, root, bus, daemon)
        _wait_for_default_collection(service)
        keyring.set_keyring(secret_service_backend.Keyring())  # type: ignore[no-untyped-call]
        yield service
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        # A later test must not reach the user's own keyring through a backend left set here.
        keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
        for proc in (daemon, bus):
            if proc is not None:
                _stop(proc)


def _wait_for_default_collection(service: SecretService, timeout: float = 15.0) -> None:
    """Until the daemon owns its name and the default alias is an unlocked
    collection (pointing it at the login collection if it has no target)."""
    import secretstorage
    from secretstorage.exceptions import ItemNotFoundException, SecretServiceNotAvailableException

    deadline = time.monotonic() + timeout
    problem = "not started"
    while time.monotonic() < deadline:
        if service.daemon.poll() is not None:
            break
        try:
            with _connection() as connection:
                if not secretstorage.check_service_availability(connection):
                    problem = "org.freedesktop.secrets not on the bus yet"
                else:
                    try:
                        collection = secretstorage.get_collection_by_alias(connection, "default")
                    except ItemNotFoundException:
                        problem = "no default collection"
                        if any(
                            c.collection_path == LOGIN for c in secretstorage.get_all_collections(connection)
                        ):
                            _service(connection).call("SetAlias", "so", "default", LOGIN)
                    else:
                        if not collection.is_locked():
                            return
                        problem = "the default collection is locked"
        except (OSError, SecretServiceNotAvailableException) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    if service.daemon.poll() is not None:
        problem = f"gnome-keyring-daemon exited with status {service.daemon.returncode}"
    pytest.fail(
        f"gnome-keyring-daemon is not serving an unlocked default collection ({problem})\n{service.logs()}"
    )


def _connection() -> closing[DBusConnection]:
    import secretstorage

    return closing(secretstorage.dbus_init())


def _service(connection: DBusConnection) -> DBusAddressWrapper:
    from secretstorage.defines import SS_PATH
    from secretstorage.util import SERVICE_IFACE, DBusAddressWrapper

    return DBusAddressWrapper(SS_PATH, SERVICE_IFACE, connection)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
