"""`Policy`: how the cell for one key behaves (time to live, burn after read,
protection tier), and how `load_secrets(policy=...)` picks one per key."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ProtectionName = Literal["auto", "secretmem", "locked", "unlocked"]
_TIERS = ("auto", "secretmem", "locked", "unlocked")


@dataclass(frozen=True, slots=True)
class Policy:
    """``ttl_sec``: seconds until the cell is wiped (None: never);
    ``volatile``: burned by its first read; ``protection``: the tier."""

    ttl_sec: float | None = None
    volatile: bool = False
    protection: ProtectionName = "auto"

    def __post_init__(self) -> None:
        ttl = self.ttl_sec
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float):
                raise TypeError(
                    f"Policy.ttl_sec must be a number of seconds or None, not {type(ttl).__name__}"
                )
            try:
                finite = math.isfinite(ttl)
            except OverflowError:  # an int too large for a float
                finite = False
            if not finite or ttl <= 0:
                raise ValueError(
                    f"Policy.ttl_sec must be a finite number of seconds greater than 0, got {ttl}"
                )
        if not isinstance(self.volatile, bool):
            raise TypeError(f"Policy.volatile must be True or False, not {type(self.volatile).__name__}")
        if self.protection not in _TIERS:
            raise ValueError(f"Policy.protection must be one of {', '.join(_TIERS)}; got {self.protection!r}")

    def describe(self) -> str:
        parts = []
        if self.volatile:
            parts.append("volatile")
        if self.ttl_sec is not None:
            parts.append(f"ttl {self.ttl_sec:g}s")
        if self.protection != "auto":
            parts.append(self.protection)
        return ", ".join(parts) or "default"


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
        for pattern, value in self._patterns:
            if fnmatch.fnmatchcase(key, pattern):
                return value
        return self._default


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")
