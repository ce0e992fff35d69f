"""RLIMIT_MEMLOCK policy, in children without CAP_IPC_LOCK (root ignores the
limit otherwise): a required tier raises MemoryLockError, `auto` degrades to
unlocked memory with exactly one warning, a soft limit below the hard limit
is raised, and nothing crashes."""

from __future__ import annotations

import ctypes
import resource
from collections.abc import Callable

from kernel import run_child

PR_CAPBSET_DROP = 24
CAP_IPC_LOCK = 14


def limited(soft: int, hard: int) -> Callable[[], None]:
    def preexec() -> None:
        # Dropped from the bounding set, CAP_IPC_LOCK is gone after exec.
        if ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))

    return preexec


CHECK_NO_CAP = """
capeff = int(next(l for l in open("/proc/self/status") if l.startswith("CapEff")).split()[1], 16)
assert not capeff & (1 << 14), "CAP_IPC_LOCK still effective"
"""


def test_zero_limit_required_tiers_raise_and_auto_warns_once() -> None:
    r = run_child(
        CHECK_NO_CAP
        + """
import warnings
from cypher_cell import MemoryLockError, MemoryLockWarning
errors = {}
for tier in ("secretmem", "locked"):
    for size in (32, 100_000):
        try:
            CypherCell(b"s" * size, protection=tier)
            errors[f"{tier}/{size}"] = None
        except MemoryLockError as e:
            errors[f"{tier}/{size}"] = [e.tier, e.errno, str(e)]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cells = [CypherCell(b"s" * n) for n in (1, 32, 500, 5000, 100_000)]
report(errors=errors, tiers=[c.protection for c in cells],
       warnings=[(w.category.__name__, str(w.message)) for w in caught],
       values_ok=[c.reveal() == b"s" * n for c, n in zip(cells, (1, 32, 500, 5000, 100_000))])
""",
        preexec_fn=limited(0, 0),
    )
    errors = r["errors"]
    assert isinstance(errors, dict)
    for key, err in errors.items():
        assert err is not None, f"{key} should have raised MemoryLockError"
        tier, errno, message = err
        assert tier == key.split("/")[0]
        assert errno in (1, 11, 12)  # EPERM, EAGAIN, ENOMEM
        assert "RLIMIT_MEMLOCK" in message
        assert "sss" not in message
    assert r["tiers"] == ["unlocked"] * 5
    assert r["values_ok"] == [True] * 5
    warnings = r["warnings"]
    assert isinstance(warnings, list)
    assert len(warnings) == 1
    assert warnings[0][0] == "MemoryLockWarning"
    assert "swap" in warnings[0][1]


def test_soft_limit_is_raised_toward_the_hard_limit() -> None:
    r = run_child(
        CHECK_NO_CAP
        + """
import resource
cells = [CypherCell(b"k" * 32, protection="locked"), CypherCell(bytes(50_000), protection="locked"),
         CypherCell(b"k" * 32, protection="secretmem")]
report(tiers=[c.protection for c in cells], limit=resource.getrlimit(resource.RLIMIT_MEMLOCK))
""",
        preexec_fn=limited(0, 1 << 20),
    )
    assert r["tiers"] == ["locked", "locked", "secretmem"]
    assert r["limit"] == [1 << 20, 1 << 20]


def test_limit_exhaustion_midway_degrades_without_crashing() -> None:
    """A 64 KiB limit: locked cells succeed until it is spent, then the
    required tier raises and auto degrades; earlier cells stay intact."""
    r = run_child(
        CHECK_NO_CAP
        + """
from cypher_cell import MemoryLockError
import warnings
ok = []
failed_at = None
for i in range(40):
    try:
        ok.append(CypherCell(bytes([i]) * 5000, protection="locked"))
    except MemoryLockError:
        failed_at = i
        break
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    extra = CypherCell(bytes(5000))
report(failed_at=failed_at, intact=all(c.reveal() == bytes([i]) * 5000 for i, c in enumerate(ok)),
       extra=extra.protection, n_warn=len(caught))
""",
        preexec_fn=limited(64 << 10, 64 << 10),
    )
    assert r["failed_at"] is not None and 5 <= r["failed_at"] <= 16  # type: ignore[operator]
    assert r["intact"] is True
    assert r["extra"] == "unlocked"
    assert r["n_warn"] == 1
