"""`Policy`: how the cell for one key behaves (time to live, burn after read,
protection tier), and how `load_secrets(policy=...)` picks one per key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

ProtectionName = Literal["auto", "secretmem", "locked", "unlocked"]
_TIERS = ("auto", "secretmem", "locked", "unlocked")


#: The longest time to live, in seconds (about 31,700 years): beyond any
#: process's life and always representable as a deadline. None: no limit.
#: The native core checks the same bound for ``CypherCell(ttl_sec=...)``.
MAX_TTL_SEC = 1e12


def _shown_ttl(ttl: float) -> str:
    """A TTL as an error message shows it, in a few characters: an int in
    full can run to thousands of digits (or refuse to print at all, past
    ``sys.get_int_max_str_digits()``). Ints below 10**15 as they are, the
    rest as the float they round to, as the native core shows them."""
    if isinstance(ttl, int) and -(10**15) < ttl < 10**15:
        return str(int(ttl))
    try:
        return float.__repr__(float(ttl))
    except OverflowError:
        return "an int too large for a float"


class Policy:
    """``ttl_sec``: seconds until the cell is wiped (None: never);
    ``volatile``: burned by its first read; ``protection``: the tier.

    Immutable, compared and hashed by value. (Written out rather than a
    dataclass: `dataclasses` imports `inspect`, a third of the package's
    import time.)"""

    __slots__ = ("protection", "ttl_sec", "volatile")
    __match_args__ = ("ttl_sec", "volatile", "protection")

    ttl_sec: float | None
    volatile: bool
    protection: ProtectionName

    def __init__(
        self, ttl_sec: float | None = None, volatile: bool = False, protection: ProtectionName = "auto"
    ) -> None:
        if ttl_sec is not None:
            if isinstance(ttl_sec, bool) or not isinstance(ttl_sec, int | float):
                raise TypeError(
                    f"Policy.ttl_sec must be a number of seconds or None, not {type(ttl_sec).__name__}"
                )
            try:
                seconds = float(ttl_sec)
            except OverflowError:  # an int too large for a float
                seconds = math.nan
            if not 0 < seconds <= MAX_TTL_SEC:  # NaN fails both
                raise ValueError(
                    "Policy.ttl_sec must be a finite number of seconds greater than 0 and at most 1e+12 "
                    f"(None: no limit), got {_shown_ttl(ttl_sec)}"
                )
        if not isinstance(volatile, bool):
            raise TypeError(f"Policy.volatile must be True or False, not {type(volatile).__name__}")
        if protection not in _TIERS:
            raise ValueError(f"Policy.protection must be one of {', '.join(_TIERS)}; got {protection!r}")
        object.__setattr__(self, "ttl_sec", ttl_sec)
        object.__setattr__(self, "volatile", volatile)
        object.__setattr__(self, "protection", protection)

    def _fields(self) -> tuple[float | None, bool, str]:
        return (self.ttl_sec, self.volatile, self.protection)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Policy is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Policy is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__ or not isinstance(other, Policy):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Policy(ttl_sec={self.ttl_sec!r}, volatile={self.volatile!r}, protection={self.protection!r})"

    def __reduce__(self) -> tuple[type[Policy], tuple[float | None, bool, str]]:
        return (type(self), self._fields())

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
        if self._patterns:
            from fnmatch import fnmatchcase  # noqa: PLC0415  (brings `re`: imported on first use)

            for pattern, value in self._patterns:
                if fnmatchcase(key, pattern):
                    return value
        return self._default


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")
