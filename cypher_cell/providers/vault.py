"""`Vault`: secrets from OpenBao or HashiCorp Vault: KV v1 and v2, dynamic
secrets (database credentials), PKI certificates.

The HTTP client is native (`cypher_cell._native.VaultClient`: ureq over
rustls): each reply is read into locked memory and its JSON parsed there,
and values go from there into cells. The token is a cell too. Python sees
statuses, lease ids and durations and field names, never a value or a token.

Leases: a reply with ``lease_duration > 0`` gives its cells a time to live
of the lease (a shorter policy TTL wins). Renewable leases are renewed on a
native thread while the store is open, moving the cells' deadlines; a lease
that cannot be renewed ends its cells at its end. A token obtained by login
is renewed likewise and revoked when the store closes;
``revoke_on_close=True`` revokes every lease too.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import time
import warnings
import weakref
from collections.abc import Collection, Mapping, Sequence
from typing import ClassVar

from cypher_cell._native import (
    CypherCell,
    VaultClient,
    VaultLeases,
    VaultReply,
    environ_cell,
    read_file_cell_at,
)
from cypher_cell.errors import ProviderError, ProviderUnavailableError
from cypher_cell.policy import Policy, PolicyMap
from cypher_cell.providers.base import Entry, PolicyFor, Provider, wiped_on_error

__all__ = ["Vault", "VaultAppRole", "VaultAuth", "VaultJWT", "VaultToken"]

#: The longest token or JWT file read (a Kubernetes service-account token is ~1 KiB).
_MAX_TOKEN_FILE = 64 << 10

Secret = CypherCell | bytes | str


def _cell(value: Secret, what: str) -> tuple[CypherCell, bool]:
    """A cell for a secret given as a cell (used as is, never wiped here) or
    as bytes/str (copied into a cell of our own, wiped when done)."""
    if isinstance(value, CypherCell):
        return value, False
    if isinstance(value, bytes | str):
        if not value:
            raise ValueError(f"{what} is empty")
        return CypherCell(value), True
    raise TypeError(f"{what} must be a CypherCell, bytes or str, not {type(value).__name__}")


def _file_cell(path: str | os.PathLike[str], what: str) -> CypherCell:
    """A file's content (one trailing newline dropped) straight into a cell."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ProviderError(f"vault: cannot open the directory of {what} {path}: {exc.strerror}") from None
    try:
        cell = read_file_cell_at(
            fd, os.fsencode(name), label=f"vault: {what} {path}", max_size=_MAX_TOKEN_FILE
        )
    finally:
        os.close(fd)
    if cell is None:
        raise ProviderError(f"vault: {what} {path}: no such file")
    return cell


class VaultAuth(abc.ABC):
    """How a `Vault` provider gets its token."""

    @abc.abstractmethod
    def login(self, client: VaultClient, timeout: float) -> tuple[CypherCell, tuple[int, bool] | None, bool]:
        """``(token, login, owned)``: the token's cell; for a token obtained
        by login its ``(lease_duration, renewable)`` (it is then renewed and
        revoked), else None; whether the cell is ours to wipe."""

    @abc.abstractmethod
    def describe(self) -> str: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class VaultToken(VaultAuth):
    """A token given: a `CypherCell` (used as it is and left alone), or
    bytes/str (copied into a cell, wiped when the store closes)."""

    def __init__(self, token: Secret) -> None:
        self._token, _ = _cell(token, "VaultToken(token)")

    def login(self, client: VaultClient, timeout: float) -> tuple[CypherCell, tuple[int, bool] | None, bool]:
        return self._token, None, False

    def describe(self) -> str:
        return "token"


def _login(
    client: VaultClient, path: str, body: dict[str, str | CypherCell], timeout: float
) -> tuple[CypherCell, tuple[int, bool] | None, bool]:
    (reply,) = client.send_all([("POST", path, body, False)], timeout=timeout)
    try:
        if not 200 <= reply.status < 300 or reply.auth is None:
            raise ProviderError(_status_error(reply, "login failed"))
        return reply.token_cell(), reply.auth, True
    finally:
        reply.close()


class VaultAppRole(VaultAuth):
    """AppRole login (``auth/<mount>/login``) with a role id and secret id
    (cells, bytes or str). The token obtained is held in a cell, renewed
    while the store is open and revoked when it closes."""

    def __init__(self, role_id: Secret, secret_id: Secret, mount: str = "approle") -> None:
        self._role_id, _ = _cell(role_id, "VaultAppRole(role_id)")
        self._secret_id, _ = _cell(secret_id, "VaultAppRole(secret_id)")
        self._mount = _mount(mount)

    def login(self, client: VaultClient, timeout: float) -> tuple[CypherCell, tuple[int, bool] | None, bool]:
        body: dict[str, str | CypherCell] = {"role_id": self._role_id, "secret_id": self._secret_id}
        return _login(client, f"auth/{self._mount}/login", body, timeout)

    def describe(self) -> str:
        return f"approle (auth/{self._mount})"


class VaultJWT(VaultAuth):
    """JWT login (``auth/<mount>/login``) with a role and a token file read
    at each login (Kubernetes: ``mount="kubernetes"`` and the service
    account's token file). The file goes straight into a cell."""

    def __init__(self, role: str, jwt_file: str | os.PathLike[str], mount: str = "jwt") -> None:
        if not isinstance(role, str) or not role:
            raise TypeError("VaultJWT(role) must be a non-empty str")
        self._role = role
        self._jwt_file = os.fspath(jwt_file)
        self._mount = _mount(mount)

    def login(self, client: VaultClient, timeout: float) -> tuple[CypherCell, tuple[int, bool] | None, bool]:
        jwt = _file_cell(self._jwt_file, "JWT file")
        try:
            return _login(client, f"auth/{self._mount}/login", {"role": self._role, "jwt": jwt}, timeout)
        finally:
            jwt.wipe()

    def describe(self) -> str:
        return f"jwt role {self._role} (auth/{self._mount})"


class _DefaultToken(VaultAuth):
    """``BAO_TOKEN``, then ``VAULT_TOKEN``, then ``~/.vault-token``."""

    def login(self, client: VaultClient, timeout: float) -> tuple[CypherCell, tuple[int, bool] | None, bool]:
        for name in ("BAO_TOKEN", "VAULT_TOKEN"):
            cell = environ_cell(name.encode())
            if cell is not None:
                return cell, None, True
        path = os.path.join(os.path.expanduser("~"), ".vault-token")
        if os.path.exists(path):
            return _file_cell(path, "token file"), None, True
        raise ProviderError(
            "vault: no token: set BAO_TOKEN or VAULT_TOKEN, write ~/.vault-token, or pass "
            "auth=VaultToken(...), VaultAppRole(...) or VaultJWT(...)"
        )

    def describe(self) -> str:
        return "token from the environment"


def _mount(mount: str) -> str:
    if not isinstance(mount, str) or not mount.strip("/"):
        raise TypeError("mount must be a non-empty str such as 'approle'")
    return mount.strip("/")


def _status_error(reply: VaultReply, what: str) -> str:
    """An error for a reply's status: the path, the address, what Vault said
    (its own messages name paths and policies, never values)."""
    said = "; ".join(e for e in reply.errors if e != "permission denied")
    if reply.status == 403:
        what = "permission denied"
    return f"vault {reply.path}: {what} at {reply.address} (HTTP {reply.status}){': ' + said if said else ''}"


def _addresses(url: str | Sequence[str] | None) -> list[str]:
    if url is None:
        env = os.environ.get("BAO_ADDR") or os.environ.get("VAULT_ADDR")
        return [env] if env else []
    if isinstance(url, str):
        return [url]
    urls = list(url)
    if not all(isinstance(u, str) for u in urls):
        raise TypeError("Vault(url=...) must be a str or a sequence of str")
    return urls


class Vault(Provider):
    """The fields of secrets at `paths` (as the ``bao``/``vault`` CLI writes
    them, mount included: ``"secret/app"``). Each field becomes a key; with
    several paths the first that has a field wins; ``keys={"DB_PASSWORD":
    "password"}`` maps store keys to fields (and loads only those). KV v1
    and v2 are told apart per mount, as the CLI does. With `params` each
    path is written instead of read (``pki/issue/web`` with
    ``params={"common_name": ...}``). Fields that are not strings (numbers,
    booleans, arrays such as PKI's ``ca_chain``, objects) become their JSON
    text. A path that does not exist is an error naming it.
    """

    kind: ClassVar[str] = "vault"

    def __init__(
        self,
        *paths: str,
        url: str | Sequence[str] | None = None,
        auth: VaultAuth | None = None,
        params: Mapping[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
        namespace: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        revoke_on_close: bool = False,
    ) -> None:
        if not paths:
            raise TypeError("Vault() takes at least one path, such as Vault('secret/app')")
        for path in paths:
            if not isinstance(path, str) or not path.strip("/"):
                raise TypeError(f"Vault paths must be non-empty str such as 'secret/app', not {path!r}")
        if auth is not None and not isinstance(auth, VaultAuth):
            raise TypeError(
                f"Vault(auth=...) takes VaultToken, VaultAppRole or VaultJWT, not {type(auth).__name__}"
            )
        if params is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise TypeError("Vault(params=...) must map str to str")
        if keys is not None and not all(
            isinstance(k, str) and k and isinstance(f, str) for k, f in keys.items()
        ):
            raise TypeError("Vault(keys=...) must map store keys (str) to field names (str)")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 1e9:
            raise ValueError("Vault(timeout=...) must be a number of seconds greater than 0")
        self._paths = tuple(p.strip("/") for p in paths)
        self._addresses = _addresses(url)
        self._auth = auth or _DefaultToken()
        self._params = None if params is None else dict(params)
        self._keys = None if keys is None else dict(keys)
        self._namespace = namespace or os.environ.get("BAO_NAMESPACE") or os.environ.get("VAULT_NAMESPACE")
        ca = (
            ca_file if ca_file is not None else os.environ.get("BAO_CACERT") or os.environ.get("VAULT_CACERT")
        )
        self._ca_file = None if ca is None else os.fspath(ca)
        self._timeout = float(timeout)
        self._revoke_on_close = bool(revoke_on_close)
        self._client: VaultClient | None = None
        self._token: CypherCell | None = None
        self._token_owned = False
        self._leases: VaultLeases | None = None
        #: Mount paths seen, and whether each is KV v2.
        self._mounts: dict[str, bool] = {}
        #: One reply per path while a load is under way; wiped by `close`.
        self._replies: list[VaultReply] | None = None
        self._fields: list[frozenset[str]] = []

    def describe(self) -> str:
        where = ", ".join(self._addresses) or "BAO_ADDR/VAULT_ADDR unset"
        return f"vault {', '.join(self._paths)} at {where}"

    @property
    def leases(self) -> VaultLeases | None:
        """The leases held while a store is open (lease ids, renewals)."""
        return self._leases

    def offered_keys(self) -> Collection[str]:
        self._read()
        if self._keys is not None:
            return [k for k, f in self._keys.items() if any(f in fields for fields in self._fields)]
        seen: dict[str, None] = {}
        for reply in self._replies or ():
            seen.update(dict.fromkeys(reply.fields()))
        return list(seen)

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        self._read()
        replies = self._replies or []
        # Each key to the first path that has its field.
        plan: dict[int, list[tuple[str, str]]] = {}
        for key in keys:
            field = key if self._keys is None else self._keys.get(key)
            if field is None:
                continue
            for i, fields in enumerate(self._fields):
                if field in fields:
                    plan.setdefault(i, []).append((key, field))
                    break
        loaded: dict[str, Entry] = {}
        with wiped_on_error(loaded):
            uniform = policy.uniform() if isinstance(policy, PolicyMap) else None
            for i, pairs in plan.items():
                reply = replies[i]
                groups: dict[int, tuple[Policy, list[tuple[str, str]]]] = {}
                for pair in pairs:
                    p = uniform or policy(pair[0])
                    groups.setdefault(id(p), (p, []))[1].append(pair)
                for p, group in groups.values():
                    loaded.update(reply.load(group, origin=f"vault {self._paths[i]}", policy=p))
            return {key: loaded[key] for key in keys if key in loaded}

    def close(self) -> None:
        """Wipes the replies' bodies and drops the connections (their
        buffers held the replies; freed, they are zeroed). The leases stay
        held (renewed, and revoked with ``revoke_on_close``) until `release`."""
        replies, self._replies = self._replies, None
        self._fields = []
        self._client = None
        for reply in replies or ():
            if self._leases is not None:
                self._leases.add(reply)
            reply.close()

    def commit(self) -> None:
        if self._leases is not None:
            self._leases.start()
            _holding.add(self)

    def release(self) -> None:
        """Stops renewing; revokes every lease with ``revoke_on_close``, and
        a login's token; wipes the token if it is ours."""
        self.close()
        _holding.discard(self)
        leases, self._leases = self._leases, None
        token, self._token = self._token, None
        failed = leases.stop(self._revoke_on_close) if leases is not None else []
        if token is not None and self._token_owned:
            token.wipe()
        if failed:
            warnings.warn(f"{self.describe()}: {'; '.join(failed)}", RuntimeWarning, stacklevel=3)

    # --- reading ---

    def _connect(self) -> VaultClient:
        if self._client is None:
            if not self._addresses:
                raise ProviderError("vault: no address: set BAO_ADDR or VAULT_ADDR, or pass Vault(url=...)")
            self._client = VaultClient(
                self._addresses, namespace=self._namespace, ca_file=self._ca_file, timeout=self._timeout
            )
        return self._client

    def _read(self) -> None:
        if self._replies is not None:
            return
        deadline = time.monotonic() + self._timeout
        client = self._connect()
        token = self._authenticate(client, deadline)
        requests: list[tuple[str, str, dict[str, str | CypherCell] | None, bool]] = []
        for path in self._paths:
            if self._params is not None:
                requests.append(("PUT", path, dict(self._params), False))
            else:
                api_path, nested = self._api_path(client, token, path, deadline)
                requests.append(("GET", api_path, None, nested))
        replies = client.send_all(
            requests,
            token=token,
            timeout=_left(deadline, self._paths[0], client),
            names=list(self._paths),
            leases=self._leases,
        )
        try:
            for reply, path in zip(replies, self._paths, strict=True):
                if reply.status == 404 or (200 <= reply.status < 300 and not reply.has_data):
                    raise ProviderError(
                        f"vault {path}: no such path at {reply.address} (HTTP {reply.status})"
                    )
                if not 200 <= reply.status < 300:
                    raise ProviderError(_status_error(reply, "read failed"))
        except BaseException:
            for reply in replies:
                if self._leases is not None:
                    self._leases.add(reply)
                reply.close()
            raise
        self._replies = replies
        self._fields = [frozenset(r.fields()) for r in replies]

    def _authenticate(self, client: VaultClient, deadline: float) -> CypherCell:
        if self._token is not None:
            return self._token
        token, login, owned = self._auth.login(client, _left(deadline, "login", client))
        self._token, self._token_owned = token, owned
        self._leases = VaultLeases(client)
        self._leases.set_token(token, login)
        return token

    def _api_path(
        self, client: VaultClient, token: CypherCell, path: str, deadline: float
    ) -> tuple[str, bool]:
        """The API path to read for a CLI path, and whether its fields are
        ``data.data``: KV v2 mounts put ``data/`` after the mount."""
        mount = next((m for m in self._mounts if path.startswith(m)), None)
        if mount is None:
            (reply,) = client.send_all(
                [("GET", f"sys/internal/ui/mounts/{path}", None, False)],
                token=token,
                timeout=_left(deadline, path, client),
                names=[path],
            )
            try:
                mount_path, kind, version = reply.mount_info() if reply.status == 200 else (None, None, None)
            finally:
                reply.close()
            if not mount_path:
                return path, False  # not told: read it as it is, as the CLI does
            mount = mount_path if mount_path.endswith("/") else mount_path + "/"
            self._mounts[mount] = kind == "kv" and version == "2"
        if self._mounts[mount]:
            return f"{mount}data/{path[len(mount) :]}", True
        return path, False


#: Providers whose store is open (leases held, maybe a login token). At
#: interpreter exit each is released as its store's `close()` would have
#: (``revoke_on_close``, the login token revoked) before the package's own
#: exit hook wipes every cell: atexit runs this module's hook first.
_holding: weakref.WeakSet[Vault] = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    for provider in list(_holding):
        with contextlib.suppress(Exception):
            provider.release()


def _left(deadline: float, what: str, client: VaultClient) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProviderUnavailableError(
            f"vault {what}: no answer within the timeout from {', '.join(client.addresses)}"
        )
    return left
