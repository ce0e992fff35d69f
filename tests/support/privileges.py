"""Children with fewer privileges: `preexec_fn`s for subprocess.

A capability is dropped from the bounding set in the forked child, before
exec, so the new program does not get it back (root's effective set is
otherwise refilled at exec). RLIMIT_MEMLOCK binds only a process without
CAP_IPC_LOCK, so `without_memlock` drops both. `preexec_fn` is safe here:
the test process does not run threads while it starts these children.
"""

from __future__ import annotations

import ctypes
import errno
import resource
from collections.abc import Callable
from pathlib import Path

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_SETPCAP = 8
CAP_IPC_LOCK = 14

#: Child code (for support.child): fails unless CAP_IPC_LOCK is gone.
CHECK_NO_CAP = """
capeff = int(next(l for l in open("/proc/self/status") if l.startswith("CapEff")).split()[1], 16)
assert not capeff & (1 << 14), "CAP_IPC_LOCK still effective"
"""


def holds_capability(cap: int) -> bool:
    """Whether this process has `cap` in its effective set (/proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    raise LookupError("no CapEff in /proc/self/status")


def without_capabilities(*caps: int, memlock: tuple[int, int] | None = None) -> Callable[[], None]:
    """A preexec_fn: drops `caps` from the bounding set, then sets
    RLIMIT_MEMLOCK to `memlock` (soft, hard) if given. Without CAP_SETPCAP
    the drop fails with EPERM; that is fine for a capability this process
    does not hold (exec gives none), and an error for one it holds."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in caps:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                err = ctypes.get_errno()
                if err != errno.EPERM or holds_capability(cap):
                    raise OSError(err, f"prctl(PR_CAPBSET_DROP, {cap})")
        if memlock is not None:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, memlock)

    return preexec


def without_memlock(soft: int, hard: int) -> Callable[[], None]:
    """A preexec_fn: no CAP_IPC_LOCK, and RLIMIT_MEMLOCK (soft, hard), so the
    limit applies to the child even when the tests run as root."""
    return without_capabilities(CAP_IPC_LOCK, memlock=(soft, hard))
