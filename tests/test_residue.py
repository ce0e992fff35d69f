"""Nothing left behind: a child loads a secret it reads itself, uses and ends
its cells on every exit path, and the test then reads the child's whole
memory through /proc/PID/mem looking for the secret (raw, UTF-16-LE,
UTF-32-LE). Controls keep the scanner honest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.child import start_child
from support.procfs import scan_memory, secret_forms


def scan_child(code: str, secret: bytes, path: Path) -> tuple[int, dict[str, object]]:
    child = start_child(code + "\nreport(done=True)\nhold()\n", str(path))
    try:
        return scan_memory(child.pid, secret_forms(secret)).copies, child.report
    finally:
        child.finish()


def test_control_a_child_that_loaded_nothing_has_no_copy(secret_file: tuple[bytes, Path]) -> None:
    secret, path = secret_file
    copies, _ = scan_child("x = 1", secret, path)
    assert copies == 0


def test_control_a_child_holding_the_secret_has_a_copy(secret_file: tuple[bytes, Path]) -> None:
    secret, path = secret_file
    copies, _ = scan_child("kept = read_secret(sys.argv[1])", secret, path)
    assert copies >= 1


def test_control_reveal_leaves_a_copy_python_cannot_wipe(secret_file: tuple[bytes, Path]) -> None:
    """Documented limit: reveal() returns bytes that Python frees unzeroed."""
    secret, path = secret_file
    code = """
cell = CypherCell(read_secret(sys.argv[1]), wipe_source=True, protection="locked")
kept = cell.reveal()
cell.wipe()
"""
    copies, _ = scan_child(code, secret, path)
    assert copies >= 1


@pytest.mark.parametrize("protection", ["auto", "locked", "unlocked"])
def test_every_exit_path_leaves_zero_copies(secret_file: tuple[bytes, Path], protection: str) -> None:
    secret, path = secret_file
    code = f"""
P = {protection!r}
buf = read_secret(sys.argv[1])
cells = []
a = CypherCell(buf, protection=P)                    # source kept for now
b = CypherCell(buf, protection=P, wipe_source=True)  # ...and now zeroed
assert not any(buf)
assert a == b                                        # compared in place
with a.expose() as view:                             # read in place
    assert len(view) == len(buf)
a.wipe()                                             # path: wipe()
del b; gc.collect()                                  # path: deallocation
c = CypherCell(read_secret(sys.argv[1]), wipe_source=True, protection=P)
with c:                                              # path: context exit
    pass
d = CypherCell(read_secret(sys.argv[1]), wipe_source=True, protection=P, volatile=True)
with d.expose() as view:                             # path: burn after read
    pass
e = CypherCell(read_secret(sys.argv[1]), wipe_source=True, protection=P, ttl_sec=0.05)
time.sleep(0.3)                                      # path: TTL reaper
f = CypherCell(read_secret(sys.argv[1], 200), wipe_source=True, protection=P)
f.wipe()                                             # a large region of its own
"""
    copies, report = scan_child(code, secret, path)
    assert report == {"done": True}
    assert copies == 0


def test_interpreter_exit_wipes_live_cells(secret_file: tuple[bytes, Path]) -> None:
    """Cells still alive at exit are wiped by the atexit hook: the child
    calls it (as exit would), then the scan finds nothing."""
    secret, path = secret_file
    code = """
from cypher_cell import _native
cells = [CypherCell(read_secret(sys.argv[1]), wipe_source=True, protection="locked") for _ in range(3)]
import atexit
atexit._run_exitfuncs()
assert all(c.wiped for c in cells)
"""
    copies, _ = scan_child(code, secret, path)
    assert copies == 0


def test_a_live_locked_cell_is_found_once(secret_file: tuple[bytes, Path]) -> None:
    """Exactly one copy while alive: the cell itself, no stray copies."""
    secret, path = secret_file
    code = """
cell = CypherCell(read_secret(sys.argv[1]), wipe_source=True, protection="locked")
"""
    copies, _ = scan_child(code, secret, path)
    assert copies == 1
