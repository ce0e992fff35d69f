"""A real PostgreSQL for the Vault database-engine tests: Debian's server
(``apt-get install postgresql``; initdb and postgres from
/usr/lib/postgresql/<version>/bin), a cluster in a temporary directory,
listening on a free loopback port and a private socket directory, run as an
unprivileged user (PostgreSQL refuses to run as root: when the tests run as
root the server drops to ``nobody``). Stopped by its PID at the end.

The superuser ``postgres`` has a random password (SCRAM over TCP): that is
what the database secrets engine logs in with to create users.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.openbao import free_port

APT_PACKAGE = "postgresql"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail(
            f"the Vault database tests need PostgreSQL's server: apt-get install {APT_PACKAGE} "
            "(make test-deps does)",
            pytrace=False,
        )
    return Path(found[-1]).parent


@dataclass
class Postgres:
    port: int
    superuser: str
    password: str
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def connection_url(self) -> str:
        """The URL template the database secrets engine is configured with."""
        return (
            f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{self.port}/postgres?sslmode=disable"
        )

    def logs(self) -> str:
        log = self.root / "postgres.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"

    def stop(self) -> None:
        """SIGINT by PID: PostgreSQL's fast shutdown."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _run_as() -> dict[str, int]:
    """subprocess arguments that drop root to `nobody` (nothing otherwise)."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}  # type: ignore[dict-item]


def start_postgres(root: Path) -> Postgres:
    bin_dir = _bin_dir()
    as_user = _run_as()
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    data, sockets = root / "data", root / "sockets"
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "LANG": "C.UTF-8"}
    for p in (sockets, pwfile):
        if p is sockets:
            p.mkdir(mode=0o700)
        if as_user:
            os.chown(p, as_user["user"], as_user["group"])
    r = subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=root,
        **as_user,  # type: ignore[arg-type]
    )
    pwfile.unlink()
    if r.returncode != 0:
        pytest.fail(f"initdb failed ({r.returncode}): {r.stderr[-2000:]}", pytrace=False)
    for attempt in range(3):
        port = free_port()
        with (root / "postgres.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(sockets),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=50",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                **as_user,  # type: ignore[arg-type]
            )
        server = Postgres(port, "postgres", password, root, proc)
        if _wait_ready(server, bin_dir):
            return server
        server.stop()
        if attempt == 2 or "could not bind" not in server.logs():
            break
    pytest.fail(f"PostgreSQL did not start:\n{server.logs()}", pytrace=False)


def _wait_ready(server: Postgres, bin_dir: Path, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.proc.poll() is None:
        r = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port)],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if r.returncode == 0:
            return True
        time.sleep(0.1)
    return False


def can_log_in(server: Postgres, user: str, password: str) -> tuple[bool, str]:
    """Whether `user`/`password` can open a session (and run a query);
    returns the server's SQLSTATE/error class when not (never the password)."""
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            dbname="postgres",
            user=user,
            password=password,
            connect_timeout=10,
            sslmode="disable",
        ) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.OperationalError as exc:
        return False, type(exc).__name__ + ": " + str(exc).replace(password, "[REDACTED]")
    return True, ""


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    # Not under pytest's tmp dir: that is root's 0700 directory, which the
    # unprivileged server could not enter.
    root = Path(tempfile.mkdtemp(prefix="cc-postgres-"))
    server = start_postgres(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
