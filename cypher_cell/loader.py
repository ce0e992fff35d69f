"""`load_secrets()`: every secret an application needs, pulled from its
sources into cells, all or nothing."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Mapping, Set
from contextlib import suppress

from cypher_cell._native import stray_entry, wipe_entries
from cypher_cell.errors import MemoryLockError, MissingSecretsError, ProviderError
from cypher_cell.policy import Policy, PolicyMap
from cypher_cell.providers.base import Entry, Provider, is_interactive
from cypher_cell.store import SecretStore


def load_secrets(
    *sources: Provider,
    keys: Iterable[str] | None = None,
    required: Iterable[str] = (),
    policy: Mapping[str, Policy] | None = None,
    default_policy: Policy | None = None,
) -> SecretStore:
    """Loads secrets from `sources`, consulted in order: the first source
    that has a key wins.

    `keys` limits what is loaded (default: every key the enumerable sources
    offer, plus `required`). `policy` maps key names or ``fnmatch`` patterns
    to a `Policy`. If a required key is missing or a source fails, every cell
    already filled is wiped and the error is raised: one
    `MissingSecretsError` naming all missing keys, or the source's error.
    """
    for source in sources:
        if not isinstance(source, Provider):
            raise TypeError(
                f"load_secrets() takes providers such as EnvFile(...) or Environ(...), "
                f"not {type(source).__name__}"
            )
    required = _names("required", required)
    asked_for = None if keys is None else _names("keys", keys)
    policy_for = PolicyMap(policy, default_policy)
    required_set = set(required)
    found: dict[str, Entry] = {}
    wanted: list[str] = []
    # (source index, number of keys it gave): each source's keys are one run
    # of `found`'s order (a later source only adds keys not found yet), so
    # `refresh()` can tell who gave what without a map of every key.
    given: list[tuple[int, int]] = []
    try:
        try:
            offered = [source.offered_keys() for source in sources]
            wanted, wanted_from = _wanted(offered, asked_for, required)
            for i, (source, offer) in enumerate(zip(sources, offered, strict=True)):
                only = required_set if is_interactive(source) else None
                ask = _to_ask(wanted, offer if offer is wanted_from else None, offer, found, only)
                if ask:
                    before = len(found)
                    found = _merge(source, _load(source, ask, policy_for), ask, found)
                    given.append((i, len(found) - before))
            missing = [k for k in required if k not in found]
            if missing:
                raise MissingSecretsError(missing)
        except BaseException:
            wipe_entries(found.values())
            raise
        finally:
            # Sources may hold buffers (a parsed .env file) even if never asked.
            # A close that fails fails the load, before anything is committed.
            failure = _close_all(sources)
            if failure is not None:
                wipe_entries(found.values())
                raise failure
        # Everything is here and every source closed: only now may sources act
        # on it (Environ scrubs), so a load that fails changes nothing.
        _commit_all(sources, found)
    except BaseException:
        # What sources keep for a store's life (a Vault login) ends with it.
        _release_all(sources)
        raise
    order = list(found)
    ordered = found if order == wanted else {k: found[k] for k in wanted if k in found}
    return SecretStore._adopt(ordered, policy_for, sources, order, given)


def _names(what: str, names: Iterable[str]) -> list[str]:
    if isinstance(names, str | bytes):
        raise TypeError(f"{what} must be a list of key names, not a single {type(names).__name__}")
    out = list(names)
    for name in out:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{what} must contain non-empty key names (str), got {name!r}")
    return out


def _wanted(
    offered: list[Collection[str] | None], asked_for: list[str] | None, required: list[str]
) -> tuple[list[str], Collection[str] | None]:
    """The keys to load, in order, and the one listing they were taken from
    whole, if so (its source can then be asked for all of them unfiltered)."""
    if asked_for is not None:
        return _unique([*asked_for, *required]), None
    listing = [offer for offer in offered if offer is not None]
    if len(listing) == 1 and not required:
        return list(listing[0]), listing[0]
    return _unique([k for offer in listing for k in offer] + required), None


def _to_ask(
    wanted: list[str],
    listed_whole: Collection[str] | None,
    offer: Collection[str] | None,
    found: Mapping[str, Entry],
    only: set[str] | None,
) -> list[str]:
    """The keys to ask one source for: wanted, not found yet, offered by it
    (anything, if it cannot list), and required if it asks only for those."""
    if not found and listed_whole is not None:
        ask = wanted  # what is wanted is exactly what this source listed
    else:
        # A dict's keys are already a set; other collections become one.
        offer_set = None if offer is None else offer if isinstance(offer, Set) else set(offer)
        ask = [k for k in wanted if k not in found and (offer_set is None or k in offer_set)]
    return ask if only is None else [k for k in ask if k in only]


def _merge(
    source: Provider, got: Mapping[str, Entry], ask: list[str], found: dict[str, Entry]
) -> dict[str, Entry]:
    """`found` with what a source loaded added (a source's own `dict` is
    taken over when nothing was found before: a copy of 100,000 entries is
    not free). A key it was not asked for, or an entry that is not a
    `Entry`, is an error, and then every cell it made is wiped."""
    unexpected: list[str] = []
    if list(got) != ask:  # every key asked for, in order (the usual answer), needs no set
        asked = set(ask)
        unexpected = sorted(k for k in got if k not in asked)
    stray = stray_entry(got.values())
    if unexpected or stray is not None:
        with suppress(TypeError):  # the stray entry, reported below; its cell is wiped if it has one
            wipe_entries(got.values())
        what = (
            f"returned keys it was not asked for: {unexpected}"
            if unexpected
            else f"returned a {type(stray).__name__} instead of an Entry"
        )
        # The stray entry may be a value itself (b"..." instead of an Entry):
        # this frame must not hold it in the error's traceback.
        del stray, got
        raise ProviderError(f"{source.describe()}: {what}")
    if not found and type(got) is dict:
        return got
    found.update(got)
    return found


def _load(source: Provider, ask: list[str], policy_for: PolicyMap) -> Mapping[str, Entry]:
    """What `source` loads for `ask`. Memory that could not be locked is the
    machine's limit, not the source's fault, but the error still names the
    source it happened in (the engine's message knows only the memory)."""
    try:
        return source.load(ask, policy_for)
    except MemoryLockError as exc:
        where = source.describe()
        if str(exc).startswith(where):
            raise
        raise MemoryLockError(f"{where}: {exc}", tier=exc.tier, errno=exc.errno) from exc


def _commit_all(sources: tuple[Provider, ...], found: Mapping[str, Entry]) -> None:
    """Commits every source. The load has succeeded: a commit that fails
    cannot be undone by failing it (other sources may have committed, and
    failing would wipe what they gave up), so it becomes a warning and the
    other sources still commit. Ctrl-C here wipes the cells and propagates."""
    for source in sources:
        try:
            source.commit()
        except Exception as exc:
            warnings.warn(
                f"{source.describe()}: {exc} ({type(exc).__name__} after loading; the secrets are "
                f"loaded, but what this source does once a load succeeds may be incomplete)",
                RuntimeWarning,
                stacklevel=3,
            )
        except BaseException:
            wipe_entries(found.values())
            raise


def _close_all(sources: tuple[Provider, ...]) -> BaseException | None:
    """Closes every source, even if one fails; returns the first failure."""
    first: BaseException | None = None
    for source in sources:
        try:
            source.close()
        except BaseException as exc:
            first = first or exc
    return first


def _release_all(sources: tuple[Provider, ...]) -> None:
    """Releases every source after a failed load (a Vault login revoked)."""
    for source in sources:
        with suppress(Exception):
            source.release()


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
