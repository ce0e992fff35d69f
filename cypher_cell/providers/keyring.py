"""`Keyring`: secrets from the operating system's keyring, through the
`keyring` package (Secret Service, macOS Keychain, Windows Credential
Locker, KWallet, ...).

`keyring.get_password()` hands back a `str` that Python frees without
zeroing, and on the way the Secret Service backend makes two more `bytes`
copies (the decrypted, padded value and the unpadded slice). Those copies
are the keyring library's own; this module adds none: it passes the `str`
straight to the cell and drops its reference at once. (For a non-ASCII value
CPython caches a UTF-8 form inside that `str` while the cell copies it; it
is freed with the `str`.)

When the backend is exactly keyring's Secret Service backend, the value is
fetched over the same D-Bus session protocol (dh-ietf1024-sha256-aes128-cbc,
as keyring does) but decrypted straight into a `bytearray` that is copied
into the cell and then zeroed, so no plaintext Python object ever exists.
Such values are bytes: a value that is not UTF-8 text loads too.

Not covered here: the Secret Service daemon keeps the value in its own
memory, and any process of the same user can ask it for the value. The
encrypted value and the D-Bus session's AES key remain in this process as
ordinary Python objects (together they give the value back); so do the
D-Bus library's buffers, which hold the value itself when the daemon refuses
an encrypted session.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from cypher_cell._native import CypherCell
from cypher_cell.errors import ProviderError, ProviderUnavailableError
from cypher_cell.policy import Policy
from cypher_cell.providers.base import Entry, PolicyFor, Provider, wiped_on_error

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend
    from typing_extensions import Buffer

INSTALL_HINT = "pip install cypher-cell[keyring]"
_AES_BLOCK = 16

T = TypeVar("T")


class Keyring(Provider):
    """Reads ``keyring.get_password(service, username)`` for each key asked.

    The keyring username is the key name, or ``username[key]`` when the
    mapping has the key. A keyring cannot list its entries, so this source
    is asked by name (`offered_keys()` is None). Origins read
    ``"keyring SERVICE/USERNAME"``.
    """

    kind = "keyring"

    def __init__(self, service: str, *, username: Mapping[str, str] | None = None) -> None:
        if not isinstance(service, str) or not service:
            raise TypeError(f"Keyring(service) must be a non-empty str, not {service!r}")
        if username is not None and not isinstance(username, Mapping):
            raise TypeError(
                "Keyring(username=...) must be None (the key name is the username) or a mapping "
                f"of key name to keyring username, not {type(username).__name__}"
            )
        usernames = dict(username or {})
        for key, name in usernames.items():
            if not isinstance(key, str) or not key or not isinstance(name, str) or not name:
                raise TypeError(
                    "Keyring(username=...) must map non-empty key names to non-empty usernames (str), "
                    f"got {key!r}: {name!r}"
                )
        self._service = service
        self._usernames = usernames

    def username_for(self, key: str) -> str:
        """The keyring username that holds `key`."""
        return self._usernames.get(key, key)

    def offered_keys(self) -> None:
        return None

    def describe(self) -> str:
        return f"{self.kind} {self._service}"

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        if not keys:
            return {}
        try:
            import keyring  # noqa: PLC0415  (optional dependency, imported on first use)
        except ImportError as exc:
            raise ProviderUnavailableError(
                f"{self.describe()}: the keyring package is not installed; {INSTALL_HINT}"
            ) from exc
        backend = self._guarded(keyring.get_keyring, "selection", keys[0])
        loaded: dict[str, Entry] = {}
        with wiped_on_error(loaded):
            if _is_secret_service(backend):
                self._load_from_secret_service(backend, keys, policy, loaded)
            else:
                self._load_through_keyring(backend, keys, policy, loaded)
        return loaded

    def _load_through_keyring(
        self,
        backend: KeyringBackend,
        keys: Sequence[str],
        policy: PolicyFor,
        loaded: dict[str, Entry],
    ) -> None:
        """Any backend: the value arrives as a `str`, and goes into the cell
        with no other reference kept to it."""
        name = _backend_name(backend)
        for key in keys:
            fetch = partial(backend.get_password, self._service, self.username_for(key))
            secret: str | None = None
            try:
                secret = self._guarded(fetch, name, key)
                if secret is None:
                    continue
                if not isinstance(secret, str):
                    raise ProviderError(
                        self._failure(name, key, f"returned {type(secret).__name__}, not str")
                    )
                cell = _new_cell(secret, policy(key))
            finally:
                # Whatever happens, this frame keeps no reference to the value
                # (a traceback that records locals would show it).
                secret = None
            loaded[key] = Entry(cell, self._origin(key))

    def _load_from_secret_service(
        self, backend: Any, keys: Sequence[str], policy: PolicyFor, loaded: dict[str, Entry]
    ) -> None:
        """keyring's Secret Service backend: the same collection, search and
        unlock as its `get_password()`, one connection and one encrypted
        session for all keys, and each value decrypted into a bytearray that
        is zeroed once the cell holds it."""
        from secretstorage.util import open_session  # noqa: PLC0415  (optional dependency)

        name = _backend_name(backend)
        collection = self._guarded(backend.get_preferred_collection, name, keys[0])
        session: Any = None
        try:
            with closing(collection.connection):
                session = self._guarded(partial(open_session, collection.connection), name, keys[0])
                for key in keys:
                    fetch = partial(
                        _encrypted_secret, backend, collection, session, self._service, self.username_for(key)
                    )
                    secret: Any = None
                    try:
                        secret = self._guarded(fetch, name, key)
                        if secret is None:
                            continue
                        cell = self._cell_from_secret(secret, session, policy(key), name, key)
                    finally:
                        secret = None
                        del fetch
                    loaded[key] = Entry(cell, self._origin(key))
        finally:
            # The session holds the AES key that decrypts what D-Bus carried,
            # and a closed collection's repr() makes a D-Bus call that fails:
            # neither may sit in a traceback's locals.
            collection = session = None

    def _cell_from_secret(
        self, secret: Any, session: Any, rule: Policy, backend: str, key: str
    ) -> CypherCell:
        """A cell from a Secret Service ``(session, parameters, value,
        content_type)`` struct, decrypting ``value`` into a bytearray that is
        zeroed on every path."""
        _session_path, iv, value, _content_type = secret
        secret = None  # only `value` holds the secret's bytes from here, and it is cleared below
        try:
            if not session.encrypted:
                # The daemon refused an encrypted session: the value crossed D-Bus
                # in clear and the D-Bus library already holds it as bytes.
                return _new_cell(value, rule)
            if len(iv) != _AES_BLOCK or not value or len(value) % _AES_BLOCK:
                raise ProviderError(self._failure(backend, key, "malformed encrypted secret"))

            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: PLC0415

            decryptor = Cipher(algorithms.AES(session.aes_key), modes.CBC(bytes(iv))).decryptor()
            plain = bytearray(len(value) + _AES_BLOCK - 1)  # update_into() wants a block of headroom
            try:
                size = decryptor.update_into(value, plain)
                decryptor.finalize()
                pad = plain[size - 1] if size else 0
                # PKCS#7: the last `pad` bytes all equal `pad`. count() reads in place (no slice copy).
                padded = 1 <= pad <= _AES_BLOCK and plain.count(pad, size - pad, size) == pad
                if size != len(value) or not padded:
                    raise ProviderError(self._failure(backend, key, "bad padding in encrypted secret"))
                view = memoryview(plain)[: size - pad]
                try:
                    return _new_cell(view, rule, wipe_source=True)
                finally:
                    view.release()
            finally:
                plain[:] = bytes(len(plain))  # same length: overwritten in place, never reallocated
                del decryptor
        finally:
            # The session's AES key opens `value`: neither stays in a traceback's locals.
            session = value = None

    def _guarded(self, call: Callable[[], T], backend: str, key: str) -> T:
        """Runs a keyring backend call, turning its failures into our errors.

        Backend failures (keyring, Secret Service, D-Bus, socket) become
        `ProviderUnavailableError`, any other exception `ProviderError`,
        naming the backend, the key, the failure's type and a generic reason
        (`_reason`): never the failure's own text, in which a backend may
        have put anything, the value included. Nothing is chained: a
        backend's exception may itself be chained to one that holds the
        value (a KeyringError raised from a UnicodeDecodeError, whose
        `.object` is the raw secret), and its traceback keeps the backend's
        frames, locals included, alive. Raised outside the handler.
        """
        failures = _backend_failures()
        try:
            return call()
        except failures as exc:
            error: ProviderError = ProviderUnavailableError(self._failure(backend, key, _reason(exc)))
        except Exception as exc:
            error = ProviderError(self._failure(backend, key, _reason(exc)))
        raise error

    def _failure(self, backend: str, key: str, what: str) -> str:
        return (
            f"{self.describe()}: keyring backend {backend} failed for key {key!r} "
            f"(keyring username {self.username_for(key)!r}): {what}"
        )

    def _origin(self, key: str) -> str:
        return f"{self.kind} {self._service}/{self.username_for(key)}"


def _encrypted_secret(backend: Any, collection: Any, session: Any, service: str, username: str) -> Any:
    """The Secret Service struct for (service, username), value still
    encrypted, or None: the first match, as keyring's `get_password()`."""
    from secretstorage.item import ITEM_IFACE  # noqa: PLC0415  (optional dependency)
    from secretstorage.util import DBusAddressWrapper  # noqa: PLC0415

    for item in collection.search_items(backend._query(service, username)):
        backend.unlock(item)
        (secret,) = DBusAddressWrapper(item.item_path, ITEM_IFACE, collection.connection).call(
            "GetSecret", "o", session.object_path
        )
        return secret
    return None


def _new_cell(data: Buffer | str, rule: Policy, *, wipe_source: bool = False) -> CypherCell:
    try:
        return CypherCell(data, policy=rule, wipe_source=wipe_source)
    finally:
        data = ""  # a failure's traceback keeps this frame: it must not hold the value


def _backend_name(backend: object) -> str:
    """The backend's import path, as PYTHON_KEYRING_BACKEND takes it."""
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_secret_service(backend: object) -> bool:
    """Exactly keyring's Secret Service backend, with the secretstorage parts
    the fast path uses. A subclass may read values differently, so it goes
    through its own `get_password()`."""
    try:
        from keyring.backends.SecretService import Keyring as SecretService  # noqa: PLC0415
        from secretstorage.item import ITEM_IFACE  # noqa: PLC0415, F401
        from secretstorage.util import DBusAddressWrapper, open_session  # noqa: PLC0415, F401
    except ImportError:
        return False
    return type(backend) is SecretService


#: Generic reasons for the failures keyring backends raise, most specific
#: first, looked up by class name so that no optional package is imported.
_REASONS = (
    ("NoKeyringError", "no keyring backend is available"),
    ("KeyringLocked", "the keyring is locked"),
    ("LockedException", "the keyring is locked"),
    ("PromptDismissedException", "the unlock prompt was dismissed"),
    ("InitError", "the backend could not be initialised"),
    ("SecretServiceNotAvailableException", "no Secret Service is running on the session bus"),
    ("ItemNotFoundException", "the keyring item vanished while being read"),
    ("DBusErrorResponse", "the D-Bus service returned an error"),
    ("UnicodeDecodeError", "the stored value is not text"),
    ("KeyringError", "the backend reported an error"),
    ("SecretStorageException", "the Secret Service reported an error"),
)


def _reason(exc: BaseException) -> str:
    """The failure's type and a generic reason, never its text: a backend
    may put anything in an error's message, the value included. An OS
    error is named by its errno, which is a number chosen by the kernel."""
    kind = type(exc).__name__
    classes = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, OSError) and isinstance(exc.errno, int):
        code = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{kind}: {code} ({os.strerror(exc.errno)})"
    for name, reason in _REASONS:
        if name in classes:
            return f"{kind}: {reason}"
    return f"{kind} (its message is withheld: it may hold the value)"


def _backend_failures() -> tuple[type[Exception], ...]:
    """Exception types that mean "the backend cannot serve" and whose text
    describes the service, never a value."""
    from keyring.errors import KeyringError  # noqa: PLC0415

    failures: list[type[Exception]] = [KeyringError, OSError]
    try:
        from jeepney import DBusErrorResponse  # noqa: PLC0415
        from secretstorage.exceptions import SecretStorageException  # noqa: PLC0415
    except ImportError:
        pass
    else:
        failures += [SecretStorageException, DBusErrorResponse]
    return tuple(failures)
