"""`SecretStore`: the read-only mapping of key → CypherCell that
`load_secrets()` returns. It knows where each value came from, can read
every value again (`refresh()`), and wipes every cell on `close()` or at the
end of a `with` block."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import NoReturn

from cypher_cell._native import CypherCell, stray_entry, wipe_entries
from cypher_cell.errors import MissingSecretsError, ProviderError
from cypher_cell.policy import Policy, PolicyMap
from cypher_cell.providers.base import Entry, PolicyFor, Provider


class SecretStore(Mapping[str, CypherCell]):
    """Read-only ``Mapping[str, CypherCell]``; ``repr`` shows keys and sources only."""

    __slots__ = ("_closed", "_entries", "_given", "_order", "_policy", "_sources")

    def __init__(self, entries: Mapping[str, Entry], policy: PolicyFor | None = None) -> None:
        # Set first: a traceback that records locals repr()s this half-made store.
        self._entries: dict[str, Entry] = {}
        self._closed = False
        self._sources: tuple[Provider, ...] = ()
        self._order: list[str] = []
        self._given: list[tuple[int, int]] = []
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
    def _adopt(
        cls,
        entries: dict[str, Entry],
        policy: PolicyFor,
        sources: Sequence[Provider] = (),
        order: list[str] | None = None,
        given: list[tuple[int, int]] | None = None,
    ) -> SecretStore:
        """A store over `entries` itself, not a copy: for `load_secrets`,
        whose dict nobody else holds (a copy of 100,000 entries is ~2 ms).
        `order` and `given` tell which source gave which key: source
        `given[i][0]` gave the next `given[i][1]` keys of `order`."""
        store = cls.__new__(cls)
        store._entries = entries
        store._policy = policy
        store._closed = False
        store._sources = tuple(sources)
        store._order = order or []
        store._given = given or []
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
        """Wipes every cell, then ends what the sources keep going for the
        store (Vault: lease renewal; revocation with ``revoke_on_close``).
        Calling it again does nothing."""
        wipe_entries(self._entries.values())
        sources, self._sources = self._sources, ()
        self._closed = True
        for source in sources:
            try:
                source.release()
            except Exception as exc:
                warnings.warn(
                    f"{source.describe()}: {exc} ({type(exc).__name__} while closing the store; "
                    "its cells are wiped)",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def refresh(self) -> None:
        """Reads every key again from the source that gave it and swaps the
        new cells in, wiping the old ones; all or nothing: if any source
        fails, or no longer has a key, every new cell is wiped, the error
        raised and the store left as it was. Keys from sources that cannot
        be read twice (`Provider.refreshable`: a prompt, a scrubbed
        environment) keep their cells. Read ``store[key]`` where a value is
        used rather than keeping a cell: a kept cell may be an old, wiped one."""
        if self._closed:
            raise ValueError("refresh() of a closed SecretStore")
        plan: list[tuple[Provider, list[str]]] = []
        at = 0
        for index, count in self._given:
            keys = self._order[at : at + count]
            at += count
            source = self._sources[index] if index < len(self._sources) else None
            if source is not None and source.refreshable and keys:
                plan.append((source, keys))
        new: dict[str, Entry] = {}
        try:
            try:
                for source, keys in plan:
                    got = source.load(keys, self._policy)
                    stray = stray_entry(got.values())
                    unexpected = [k for k in got if k not in set(keys)]
                    new.update((k, e) for k, e in got.items() if isinstance(e, Entry))
                    if stray is not None or unexpected:
                        wipe_entries(e for e in got.values() if isinstance(e, Entry))
                        del stray, got
                        raise ProviderError(f"{source.describe()}: returned something it was not asked for")
                    missing = [k for k in keys if k not in got]
                    if missing:
                        raise MissingSecretsError(missing)
            finally:
                failure = None
                for source, _ in plan:
                    try:
                        source.close()
                    except BaseException as exc:
                        failure = failure or exc
                if failure is not None:
                    raise failure
        except BaseException:
            wipe_entries(new.values())
            raise
        old = [self._entries[k] for k in new if k in self._entries]
        self._entries.update((k, new[k]) for k in new if k in self._entries)
        wipe_entries(old)

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
