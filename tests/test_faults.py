"""Fault loops, in the manner of SQLite's OOM tests: the Nth OS call of each
kind is made to fail, for every N a scenario reaches, with each errno that
kind can return, once or from then on. Every run must end with a clean
error or a documented fallback, a working next cell and nothing left
locked (VmLck from /proc/self/status). The loops run in fault_runner.py,
one child interpreter per scenario and a forked child per run, so that a
crash is a signal in a wait status, not the end of pytest.

The failures are injected by cypher_cell._native._fault_arm() (native/
sys/fault.rs): compiled in, inert until armed.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.child import run_child

from cypher_cell import _native

RUNNER = Path(__file__).with_name("fault_runner.py")

# Each scenario, and call kinds its operation must reach: proof that the
# loops are wired to the call points they claim to cover.
SCENARIOS: dict[str, set[str]] = {
    "create-auto": {
        "mmap",
        "memfd_secret",
        "ftruncate",
        "mmap_secretmem",
        "madvise_dontdump",
        "madvise_dontfork",
    },
    "create-secretmem": {"memfd_secret", "mmap_secretmem"},
    "create-locked": {"mmap", "mprotect", "madvise_dontdump", "madvise_wipeonfork", "mlock"},
    "create-unlocked": {"mmap", "mprotect", "madvise_wipeonfork"},
    "large": {"mmap", "memfd_secret", "mlock"},
    "reveal": set(),
    "expose": set(),
    "wipe": {"munmap", "munlock"},
    "ttl": {"mlock", "munmap"},
    "volatile": {"mlock", "munmap"},
    "envfile-3": {"file_read", "mlock", "memfd_secret"},
    "envfile-2000": {"file_read", "mlock", "memfd_secret", "munmap"},
    "secretsdir": {"openat2", "memfd_secret", "mmap_secretmem"},
    "prompt": {"tty_open", "tcgetattr", "tcsetattr", "tcflush", "tty_write", "tty_read", "memfd_secret"},
    "fork": {"memfd_secret", "mlock"},
    "doctor": {"prctl", "getrlimit", "mlock", "memfd_secret"},
}


def run_scenario(name: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(RUNNER), name], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_injected_failure_ends_cleanly(scenario: str) -> None:
    result = run_scenario(scenario)
    clean = result["clean"]
    assert isinstance(clean, dict)
    assert "bad" in result and not result["bad"], json.dumps(result["bad"], indent=1)
    counted = {kind for kind, n in clean["counts"].items() if n}
    assert SCENARIOS[scenario] <= counted, f"call points not reached: {SCENARIOS[scenario] - counted}"
    if scenario in ("reveal", "expose"):
        assert counted == set(), "reading a cell makes no OS call, so it cannot fail"
    else:
        assert isinstance(result["combos"], int) and result["combos"] >= len(counted)


def test_an_armed_failure_reaches_the_caller_and_disarms() -> None:
    """The injection is real (the Nth call fails with the errno asked for)
    and inert once disarmed (nothing counted, nothing failed)."""
    r = run_child(
        """
from cypher_cell import MemoryLockError, _native
_native._fault_arm("mlock", 1, 12)
try:
    CypherCell(b"k" * 32, protection="locked")
    raised = None
except MemoryLockError as e:
    raised = [e.tier, e.errno]
calls = _native._fault_calls("mlock")
_native._fault_disarm()
after = CypherCell(b"k" * 32, protection="locked")
big = CypherCell(b"k" * 5000, protection="locked")
report(raised=raised, calls=calls, after=after == b"k" * 32, big=big.protection,
       still=_native._fault_calls("mlock"))
"""
    )
    assert r == {"raised": ["locked", errno.ENOMEM], "calls": 1, "after": True, "big": "locked", "still": 1}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        _native._fault_arm("nonsense", 1, errno.ENOMEM)
    with pytest.raises(ValueError, match="positive"):
        _native._fault_arm("mlock", 1, 0)
    with pytest.raises(ValueError, match="unknown fault kind"):
        _native._fault_calls("nonsense")
    with pytest.raises(OverflowError):
        _native._fault_arm("mlock", -1, errno.ENOMEM)
    assert "mlock" in _native._fault_kinds() and "tty_read" in _native._fault_kinds()


# --- the findings, each on its own ---------------------------------------------


def test_a_region_that_cannot_be_unmapped_leaves_nothing_locked() -> None:
    """munmap refused when a large secret is freed: its pages must not stay
    locked (they used to, until the process ended)."""
    r = run_child(
        """
from support.procfs import status_kib
from cypher_cell import _native
base = status_kib("VmLck")
cells = [CypherCell(b"s" * 5000, protection=t) for t in ("locked", "secretmem")]
held = status_kib("VmLck") - base
_native._fault_arm("munmap", 1, 12, True)
for c in cells:
    c.wipe()
_native._fault_disarm()
report(held=held, left=status_kib("VmLck") - base, next=CypherCell(b"n" * 5000) == b"n" * 5000)
""",
    )
    assert r["held"] == 16  # two 2-page regions
    assert r == {"held": 16, "left": 0, "next": True}


def test_a_failing_getrandom_refuses_no_secret() -> None:
    """A large secret's canary, like a slot's, does without getrandom
    (seccomp filters answer ENOSYS): it used to refuse every secret over
    1,024 bytes, and with it every prompt (its staging buffer is one)."""
    r = run_child(
        """
from cypher_cell import _native
_native._fault_arm("getrandom", 1, 38, True)  # ENOSYS, every call
cells = [CypherCell(b"s" * 5000, protection=t) for t in ("secretmem", "locked", "unlocked")]
calls = _native._fault_calls("getrandom")
_native._fault_disarm()
report(ok=[c == b"s" * 5000 for c in cells], tiers=[c.protection for c in cells], calls=calls)
"""
    )
    assert r["ok"] == [True] * 3
    assert r["tiers"] == ["secretmem", "locked", "unlocked"]
    assert r["calls"] >= 1  # the pool seeds its canaries without it
