"""`load_secrets()`: every secret an application needs, pulled from its
sources into cells, all or nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cypher_cell.errors import MissingSecretsError, ProviderError
from cypher_cell.policy import Policy, PolicyMap
from cypher_cell.providers.base import Loaded, Provider
from cypher_cell.store import SecretStore


def load_secrets(  # noqa: PLR0912 - one flat sequence of checks reads best here
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
    found: dict[str, Loaded] = {}
    wanted: list[str] = []
    try:
        offered = [source.offered_keys() for source in sources]
        if asked_for is not None:
            wanted = _unique([*asked_for, *required])
        else:
            listed = (k for offer in offered if offer is not None for k in offer)
            wanted = _unique([*listed, *required])
        for source, offer in zip(sources, offered, strict=True):
            offer_set = None if offer is None else set(offer)
            ask = [k for k in wanted if k not in found and (offer_set is None or k in offer_set)]
            if source.asks_only_required:
                ask = [k for k in ask if k in required_set]
            if not ask:
                continue
            got = source.load(ask, policy_for)
            unexpected = got.keys() - set(ask)
            if unexpected:
                for k in unexpected:
                    got.pop(k).cell.wipe()
                found.update(got)
                raise ProviderError(
                    f"{source.describe()}: returned keys it was not asked for: {sorted(unexpected)}"
                )
            found.update(got)
        missing = [k for k in required if k not in found]
        if missing:
            raise MissingSecretsError(missing)
        # Everything is here: only now may sources act on it (Environ scrubs).
        for source in sources:
            source.commit()
    except BaseException:
        _wipe(found)
        raise
    finally:
        # Sources may hold buffers (a parsed .env file) even if never asked;
        # every one is closed even if another's close fails.
        failures: list[BaseException] = []
        for source in sources:
            try:
                source.close()
            except BaseException as exc:
                failures.append(exc)
        if failures:
            _wipe(found)
            raise failures[0]
    ordered = {k: found[k] for k in wanted if k in found}
    return SecretStore(ordered, policy_for)


def _names(what: str, names: Iterable[str]) -> list[str]:
    if isinstance(names, str | bytes):
        raise TypeError(f"{what} must be a list of key names, not a single {type(names).__name__}")
    out = list(names)
    for name in out:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{what} must contain non-empty key names (str), got {name!r}")
    return out


def _wipe(found: Mapping[str, Loaded]) -> None:
    for entry in found.values():
        entry.cell.wipe()


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
