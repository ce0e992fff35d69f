"""`Environ`: secrets from the process environment, scrubbed once loaded.

An inherited variable lives in two places in a Python process: the `bytes`
object in `os.environ`'s storage and the initial environment block that
`/proc/self/environ` shows. With ``scrub=True`` both are overwritten with
zeros in place and the variable is removed (children no longer inherit it).
The value never becomes a Python `str`, nor a local of any Python frame:
native code copies it from `os.environ`'s `bytes` into the cell.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence

from cypher_cell import _native
from cypher_cell.errors import ProviderError
from cypher_cell.providers.base import Entry, PolicyFor, Provider, wiped_on_error


class Environ(Provider):
    """Reads ``prefix + KEY`` for each key; store keys drop the prefix.

    With neither `keys` nor `prefix` it offers only the keys `load_secrets`
    asks for: it never loads (or scrubs) the whole environment.
    """

    kind = "environ"

    def __init__(self, keys: Iterable[str] | None = None, *, prefix: str = "", scrub: bool = True) -> None:
        if isinstance(keys, str):
            raise TypeError("Environ(keys=...) takes a list of names, not a single str")
        if not isinstance(prefix, str):
            raise TypeError(f"Environ(prefix=...) must be a str, not {type(prefix).__name__}")
        self._keys = None if keys is None else list(dict.fromkeys(keys))
        if self._keys is not None and not all(isinstance(k, str) and k for k in self._keys):
            raise TypeError("Environ(keys=...) must contain non-empty names (str)")
        self._prefix = prefix
        self._scrub = bool(scrub)
        self._to_scrub: list[str] = []

    def describe(self) -> str:
        return f"environ {self._prefix}*" if self._prefix else "environ"

    @property
    def refreshable(self) -> bool:
        return not self._scrub  # scrubbed variables cannot be read again

    def offered_keys(self) -> Collection[str] | None:
        # load_secrets asks every source for its keys first: a new load. What
        # an earlier load that failed had read is not to be scrubbed by this one.
        self._to_scrub = []
        if self._keys is not None:
            # Not `name in os.environ`: that decodes the value into a str.
            return [k for k in self._keys if _is_set(self._prefix + k)]
        if self._prefix:
            n = len(self._prefix)
            return [name[n:] for name in os.environ if name.startswith(self._prefix) and len(name) > n]
        return None

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        loaded: dict[str, Entry] = {}
        with wiped_on_error(loaded):
            for key in keys:
                name = self._prefix + key
                if not _is_set(name):
                    continue
                # The value goes from os.environ's bytes into the cell in native
                # code: it is never a local here, so a failure (locked memory
                # refused) leaves no value in this frame for a traceback to show.
                cell = _native.environ_cell(_encoded(name), policy=policy(key))
                if cell is None:  # unset meanwhile, by another thread
                    continue
                loaded[key] = Entry(cell, f"environ {name}")
                if self._scrub:
                    self._to_scrub.append(name)
        return loaded

    def commit(self) -> None:
        """Scrubs what `load` read, once the whole load has succeeded. Every
        variable is tried; those that could not be scrubbed are named in one
        `ProviderError` (which `load_secrets` turns into a warning)."""
        names, self._to_scrub = self._to_scrub, []
        failed: list[str] = []
        for name in names:
            try:
                # Zeroes os.environ's bytes (only if nothing else holds them)
                # and the C environment's strings in place, then unsets it.
                _native.scrub_environ(_encoded(name))
            except Exception as exc:
                failed.append(f"{name} ({type(exc).__name__})")
        if failed:
            raise ProviderError(f"{self.describe()}: could not scrub {', '.join(failed)}")


def _encoded(name: str) -> bytes:
    """`name` as os.environ's storage keys it (on POSIX, its `encodekey`
    is `os.fsencode` for a str)."""
    return os.fsencode(name)


def _is_set(name: str) -> bool:
    """Whether os.environ holds a value for `name`, looked up without
    decoding the value into a str or keeping it in a local. A name that
    cannot be encoded (a lone surrogate) cannot be set."""
    try:
        encoded = _encoded(name)
    except UnicodeEncodeError:
        return False
    return _native.environ_is_set(encoded)
