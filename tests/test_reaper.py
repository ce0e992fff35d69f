"""The TTL reaper zeroes a cell nobody touches again, on time. Observed from
outside: the test polls the child's memory through /proc/PID/mem."""

from __future__ import annotations

import hashlib
import time

import pytest
from support.child import start_child
from support.procfs import read_memory

TTL = 0.3
SLACK = 0.050  # the target: zeroed within 50 ms of the deadline


@pytest.mark.parametrize("size", [32, 1000, 5000])
def test_untouched_cell_is_zeroed_within_50ms_of_its_deadline(size: int) -> None:
    child = start_child(
        f"""
from support.procfs import cell_address
secret = os.urandom({size}).replace(b"\\0", b"\\1")
t0 = time.monotonic()
cell = CypherCell(secret, ttl_sec={TTL}, protection="locked")
t1 = time.monotonic()
addr = cell_address(cell)
import hashlib
report(addr=addr, t0=t0, t1=t1, digest=hashlib.sha256(secret).hexdigest())
hold()
"""
    )
    try:
        addr, t0, t1 = (child.report[k] for k in ("addr", "t0", "t1"))
        assert isinstance(addr, int) and isinstance(t0, float) and isinstance(t1, float)
        seen_live_before_deadline = False
        zeroed_at = None
        while time.monotonic() < t1 + TTL + 1.0:
            now = time.monotonic()
            data = read_memory(child.pid, addr, size)
            if data is None:
                # A large secret's region is zeroed and then unmapped: gone.
                assert size > 1024, "a slot's page must stay mapped"
                zeroed_at = now
                break
            if hashlib.sha256(data).hexdigest() == child.report["digest"]:
                assert now < t1 + TTL + SLACK, "still readable past the deadline"
                seen_live_before_deadline |= now < t0 + TTL
            elif data == bytes(size):
                zeroed_at = now
                break
            time.sleep(0.001)
        assert seen_live_before_deadline, "the secret should be intact before its deadline"
        assert zeroed_at is not None, "never zeroed"
        assert zeroed_at >= t0 + TTL - 0.005, "zeroed before the deadline"
        assert zeroed_at <= t1 + TTL + SLACK
    finally:
        child.finish()


def test_the_reaper_thread_blocks_every_signal_a_process_may_be_sent() -> None:
    """Process-directed signals must reach the main thread (Python's
    handlers) or `cypher-cell run`'s forwarding thread, never the reaper,
    where SIGTERM's default action would end the process. The kernel's
    account: the thread's SigBlk in /proc/PID/task/TID/status."""
    from support.child import run_child

    code = (
        "import os, signal\n"
        "from cypher_cell import CypherCell\n"
        "cell = CypherCell(b'x' * 8, ttl_sec=60)  # starts the reaper\n"
        "blocked = {}\n"
        "for tid in os.listdir('/proc/self/task'):\n"
        "    who = 'main' if int(tid) == os.getpid() else 'other'\n"
        "    status = open(f'/proc/self/task/{tid}/status').read().splitlines()\n"
        "    mask = int(next(l for l in status if l.startswith('SigBlk:')).split()[1], 16)\n"
        "    names = ('SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGWINCH', 'SIGCHLD')\n"
        "    on = [s for s in names if mask >> (getattr(signal, s) - 1) & 1]\n"
        "    blocked.setdefault(who, []).append(on)\n"
        "report(blocked=blocked)\n"
    )
    blocked = run_child(code)["blocked"]
    assert isinstance(blocked, dict)
    # The child's threads: the main one and the reaper (the only other).
    assert blocked["other"] == [["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGCHLD"]]
    assert blocked["main"] == [[]], "the caller's mask is restored"
