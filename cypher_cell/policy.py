"""`Policy`: how the cell for one key behaves (time to live, burn after read,
protection tier), and how `load_secrets(policy=...)` picks one per key."""

from __future__ import annotations

from collections.abc import Mapping

# `Policy` is native (native/py/policy.rs): checked once when made, and
# taken as it is by every native constructor (`CypherCell(policy=...)`, the
# providers' native halves), so no provider unpacks it into keywords.
# Immutable, compared and hashed by value, picklable; a subclass is a
# different kind of policy (never equal to a plain one).
from cypher_cell._native import Policy

__all__ = ["DEFAULT_POLICY", "Policy", "PolicyMap"]

DEFAULT_POLICY = Policy()


class PolicyMap:
    """Resolves a key's policy: an exact name first, then the first matching
    ``fnmatch`` pattern (in the order given), then the default."""

    def __init__(self, policy: Mapping[str, Policy] | None = None, default: Policy | None = None) -> None:
        policy = dict(policy or {})
        for name, value in policy.items():
            if not isinstance(name, str):
                raise TypeError(f"policy keys must be key names or patterns (str), not {type(name).__name__}")
            if not isinstance(value, Policy):
                raise TypeError(f"policy[{name!r}] must be a Policy, not {type(value).__name__}")
        if default is not None and not isinstance(default, Policy):
            raise TypeError(f"default_policy must be a Policy, not {type(default).__name__}")
        self._exact = {k: v for k, v in policy.items() if not _is_pattern(k)}
        self._patterns = [(k, v) for k, v in policy.items() if _is_pattern(k)]
        self._default = default or DEFAULT_POLICY

    def uniform(self) -> Policy | None:
        """The one policy every key gets, when there are no per-key rules."""
        return None if self._exact or self._patterns else self._default

    def __call__(self, key: str) -> Policy:
        exact = self._exact.get(key)
        if exact is not None:
            return exact
        if self._patterns:
            from fnmatch import fnmatchcase  # noqa: PLC0415  (brings `re`: imported on first use)

            for pattern, value in self._patterns:
                if fnmatchcase(key, pattern):
                    return value
        return self._default


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")
