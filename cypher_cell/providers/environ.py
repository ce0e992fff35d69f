"""`Environ`: secrets from the process environment, scrubbed once loaded.

An inherited variable lives in two places in a Python process: the `bytes`
object in `os.environ`'s storage and the initial environment block that
`/proc/self/environ` shows. With ``scrub=True`` both are overwritten with
zeros in place and the variable is removed (children no longer inherit it).
The value never becomes a Python `str`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence

from cypher_cell import _native
from cypher_cell._native import CypherCell
from cypher_cell.errors import ProviderError
from cypher_cell.providers.base import Loaded, PolicyFor, Provider


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
        self._prefix = prefix
        self._scrub = bool(scrub)

    def describe(self) -> str:
        return f"environ {self._prefix}*" if self._prefix else "environ"

    def offered_keys(self) -> Collection[str] | None:
        if self._keys is not None:
            return [k for k in self._keys if self._prefix + k in os.environ]
        if self._prefix:
            n = len(self._prefix)
            return [name[n:] for name in os.environ if name.startswith(self._prefix) and len(name) > n]
        return None

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Loaded]:
        loaded: dict[str, Loaded] = {}
        try:
            for key in keys:
                name = self._prefix + key
                stored = _stored_value(name)
                if stored is None:
                    continue
                p = policy(key)
                cell = CypherCell(stored, volatile=p.volatile, ttl_sec=p.ttl_sec, protection=p.protection)
                loaded[key] = Loaded(cell, f"environ {name}")
                if self._scrub:
                    _native.scrub_environ(name, stored)
                    del stored
                    os.environ.pop(name, None)  # unsetenv + drop the (zeroed) bytes
        except BaseException:
            for entry in loaded.values():
                entry.cell.wipe()
            raise
        return loaded


def _stored_value(name: str) -> bytes | None:
    """The `bytes` object os.environ keeps for `name` (not a decoded copy)."""
    data = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    if not isinstance(data, dict) or encode is None:
        raise ProviderError("environ: os.environ has been replaced; cannot read values without copying")
    value = data.get(encode(name))
    return value if isinstance(value, bytes) else None
