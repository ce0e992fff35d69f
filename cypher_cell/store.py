"""`SecretStore`: the read-only mapping of key → CypherCell that
`load_secrets()` returns. It knows where each value came from and wipes
every cell on `close()` or at the end of a `with` block."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import NoReturn

from cypher_cell._native import CypherCell, wipe_entries
from cypher_cell.policy import Policy, PolicyMap
from cypher_cell.providers.base import Entry, PolicyFor


class SecretStore(Mapping[str, CypherCell]):
    """Read-only ``Mapping[str, CypherCell]``; ``repr`` shows keys and sources only."""

    __slots__ = ("_closed", "_entries", "_policy")

    def __init__(self, entries: Mapping[str, Entry], policy: PolicyFor | None = None) -> None:
        # Set first: a traceback that records locals repr()s this half-made store.
        self._entries: dict[str, Entry] = {}
        self._closed = False
        entries = dict(entries)
        bad = next(((k, type(e).__name__) for k, e in entries.items() if not isinstance(e, Entry)), None)
        if bad is not None:
            # A wrong entry may be a value itself (b"..."): no local of this
            # frame may hold it in the error's traceback.
            entries = {}
            raise TypeError(f"SecretStore entries must be Entry, not {bad[1]} (key {bad[0]!r})")
        self._entries = entries
        self._policy = policy or PolicyMap()

    @classmethod
    def _adopt(cls, entries: dict[str, Entry], policy: PolicyFor) -> SecretStore:
        """A store over `entries` itself, not a copy: for `load_secrets`,
        whose dict nobody else holds (a copy of 100,000 entries is ~2 ms)."""
        store = cls.__new__(cls)
        store._entries = entries
        store._policy = policy
        store._closed = False
        return store

    def __getitem__(self, key: str) -> CypherCell:
        return self._entries[key].cell

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def source(self, key: str) -> str:
        """Where the key's value came from, e.g. ``"env-file .env:3"``."""
        return self._entries[key].origin

    def policy(self, key: str) -> Policy:
        """The policy the key's cell was created with."""
        if key not in self._entries:
            raise KeyError(key)
        return self._policy(key)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wipes every cell. Calling it again does nothing."""
        wipe_entries(self._entries.values())
        self._closed = True

    def __enter__(self) -> SecretStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {e.origin!r}" for k, e in self._entries.items())
        state = " closed" if self._closed else ""
        return f"<SecretStore{state} {{{inner}}}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretStore cannot be pickled: its secrets never leave locked memory")

    def __copy__(self) -> NoReturn:
        raise TypeError("SecretStore cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("SecretStore cannot be copied")
