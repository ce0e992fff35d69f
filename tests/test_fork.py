"""A forked child inherits no secret: every cell reads as wiped, locked-tier
pages are zero (MADV_WIPEONFORK), secretmem pages are not inherited
(MADV_DONTFORK; the fork hook puts read-only zero pages in their place), a
view open at the fork is released, and the child can still make cells of its
own."""

from __future__ import annotations

import json
import os

import pytest
from support.child import run_child
from support.procfs import cell_address, maps, read_memory

from cypher_cell import CellWipedError, CypherCell

SECRET = b"fork-test-secret-0123456789abcdef"


def in_fork(fn: object) -> dict[str, object]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            result = fn()  # type: ignore[operator]
        except BaseException as exc:  # report, never fall back into pytest
            result = {"error": repr(exc)}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    out: dict[str, object] = json.loads(data)
    assert "error" not in out, out
    return out


@pytest.mark.parametrize("protection", ["secretmem", "locked", "unlocked"])
def test_child_sees_cells_wiped_and_pages_gone_or_zeroed(protection: str) -> None:
    cells = [CypherCell(SECRET, protection=protection) for _ in range(3)]  # type: ignore[arg-type]
    big = CypherCell(SECRET * 500, protection=protection)  # type: ignore[arg-type]
    addrs = [cell_address(c) for c in [*cells, big]]

    def child() -> dict[str, object]:
        refused = 0
        for c in [*cells, big]:
            try:
                c.reveal()
            except CellWipedError:
                refused += 1
        here = [[m for m in maps() if m.start <= a < m.end] for a in addrs]
        readable = [bool(m) and m[0].perms[0] == "r" for m in here]
        contents = [read_memory(os.getpid(), a, len(SECRET)) for a in addrs]
        fresh = CypherCell(b"child's own", protection=protection)  # type: ignore[arg-type]
        return {
            "wiped": [c.wiped for c in [*cells, big]],
            "refused": refused,
            "readable": readable,
            "zero": [c == bytes(len(SECRET)) for c in contents if c is not None],
            "secretmem": [bool(m) and "secretmem" in m[0].path for m in here],
            "fresh_ok": fresh.reveal() == b"child's own",
        }

    out = in_fork(child)
    assert out["wiped"] == [True] * 4
    assert out["refused"] == 4
    assert out["fresh_ok"] is True
    # Secretmem windows are zero pages of the child's own, not the parent's
    # secretmem mapping; anonymous pages are wiped on fork.
    assert out["secretmem"] == [False] * 4
    assert out["readable"] == [True] * 4
    assert out["zero"] == [True] * 4, "the child must read zeros where cells were"
    # The parent is untouched.
    assert all(c.reveal() == SECRET for c in cells)
    assert big.reveal() == SECRET * 500


def test_child_can_drop_and_collect_inherited_cells() -> None:
    cells = [CypherCell(SECRET, ttl_sec=60) for _ in range(50)]

    def child() -> dict[str, object]:
        import gc

        del cells[:]
        gc.collect()
        made = [CypherCell(b"x" * n, ttl_sec=0.05) for n in range(1, 40)]
        import time

        time.sleep(0.3)  # the child starts its own reaper
        return {"expired": all(c.wiped for c in made)}

    assert in_fork(child) == {"expired": True}
    assert all(not c.wiped for c in cells)


def test_an_exposure_from_before_the_fork_cannot_be_opened_in_the_child() -> None:
    cell = CypherCell(SECRET, protection="secretmem")
    exposure = cell.expose()

    def child() -> dict[str, object]:
        try:
            with exposure as view:
                return {"read": len(view)}
        except CellWipedError:
            return {"refused": True}

    assert in_fork(child) == {"refused": True}
    with exposure as view:
        assert len(view) == len(SECRET)


def test_secretmem_holes_in_the_child_are_filled_so_nothing_new_lands_there() -> None:
    """Read-only zero pages: a view that could not be released reads zeros
    there instead of faulting or reading a later mapping."""
    big = CypherCell(SECRET * 300, protection="secretmem")  # a region of its own
    start = cell_address(big)

    def child() -> dict[str, object]:
        here = [m for m in maps() if m.start <= start < m.end]
        made = [CypherCell(b"child" * 2000, protection="secretmem") for _ in range(20)]
        addrs = [cell_address(c) for c in made]
        return {
            "perms": here[0].perms if here else None,
            "reused": any(start <= a < start + len(SECRET) * 300 for a in addrs),
        }

    assert in_fork(child) == {"perms": "r--p", "reused": False}


# Runs in a fresh interpreter (`run_child`), which forks inside an open
# `expose()` block; the forked child tries every way of reading the views it
# inherited and reports what happened, never the bytes it read.
FORK_INSIDE_EXPOSE = """
import pickle, signal
secret = bytes.fromhex(sys.argv[2])
cell = CypherCell(secret, protection=sys.argv[1])

def attempt(read):
    try:
        read()
        return "read"
    except ValueError as exc:
        return "ValueError: " + str(exc)

exposure = cell.expose()
with exposure as view:
    kept = view[:]                        # sub-views share the view's buffer
    again = memoryview(view)
    cast = view.cast("c")
    direct = memoryview(exposure)         # a second export of the exposure
    held = pickle.PickleBuffer(view[:])   # a sub-view exported again: cannot be released
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = {name: attempt(read) for name, read in [
            ("view", lambda: view[0]), ("slice", lambda: kept[0]), ("memoryview", lambda: again[0]),
            ("cast", lambda: cast[0]), ("direct", lambda: direct[0]),
            ("bytes", lambda: bytes(view)), ("tobytes", lambda: kept.tobytes()),
        ]}
        stale = memoryview(held)
        out["held"] = [len(stale), stale.tobytes() == bytes(len(stale))]
        stale.release()
    else:
        parent_reads = cell == view
if pid == 0:
    # The child leaves the block and exits through interpreter shutdown
    # (atexit, finalizers) with the parent's cell, exposure and views.
    out["fresh"] = CypherCell(b"child's own", protection=sys.argv[1]) == b"child's own"
    out["after"] = attempt(lambda: kept[0])
    os.write(w, json.dumps(out).encode())
    os.close(w)
    sys.exit(0)
os.close(w)
with os.fdopen(r) as pipe:
    data = pipe.read()
_, status = os.waitpid(pid, 0)
parent_after = cell == secret
del held
report(child=json.loads(data) if data else None, status=status,
       signal=signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None,
       parent_reads=parent_reads, parent_after=parent_after)
"""


@pytest.mark.parametrize("protection", ["secretmem", "locked"])
def test_a_fork_inside_an_open_exposure_gives_the_child_errors_not_a_crash(protection: str) -> None:
    """Every view the child can reach raises ValueError (CPython's "released
    memoryview"); a view exported again to another object cannot be released
    and reads zeros in the child — never the secret, never a crash."""
    secret = SECRET * 3
    r = run_child(FORK_INSIDE_EXPOSE, protection, secret.hex())
    assert r["signal"] is None, f"the child was killed by {r['signal']}"
    assert r["status"] == 0
    child = r["child"]
    assert isinstance(child, dict)
    released = "ValueError: operation forbidden on released memoryview object"
    for name in ("view", "slice", "memoryview", "cast", "direct", "bytes", "tobytes", "after"):
        assert child[name] == released, name
    assert child["held"] == [len(secret), True], "a view that cannot be released reads zeros"
    assert child["fresh"] is True
    assert r["parent_reads"] is True, "the parent's view is untouched"
    assert r["parent_after"] is True


@pytest.mark.parametrize("protection", ["secretmem", "locked"])
def test_every_read_of_an_inherited_cell_in_the_child_is_refused(protection: str) -> None:
    cell = CypherCell(SECRET, protection=protection)  # type: ignore[arg-type]
    volatile = CypherCell(SECRET, protection=protection, volatile=True)  # type: ignore[arg-type]
    timed = CypherCell(SECRET, protection=protection, ttl_sec=0.2)  # type: ignore[arg-type]

    def child() -> dict[str, object]:
        import time

        out: dict[str, object] = {}
        for name, read in [
            ("reveal", cell.reveal),
            ("masked", cell.reveal_masked),
            ("eq", lambda: cell == SECRET),
            ("ne", lambda: cell != SECRET),
            ("eq-cell", lambda: cell == timed),
            ("expose", cell.expose),
            ("volatile", volatile.reveal),
            ("timed", timed.reveal),
        ]:
            try:
                read()
                out[name] = "read"
            except CellWipedError:
                out[name] = "refused"
        time.sleep(0.3)  # past the TTL: there is no reaper thread for the inherited cell
        cell.wipe()
        timed.wipe()
        out["wiped"] = [c.wiped for c in (cell, volatile, timed)]
        return out

    out = in_fork(child)
    assert out.pop("wiped") == [True] * 3
    assert set(out.values()) == {"refused"}, out
    # The parent's cells are untouched by the child's wipes; the TTL cell expired here.
    assert cell == SECRET
    assert volatile.reveal() == SECRET


def test_a_stale_view_over_any_of_many_secretmem_windows_reads_zeros_in_the_child() -> None:
    """The fork hook's table of secretmem windows once held 1,024: past that a
    child had holes where a view that could not be released faulted. 1,100
    large cells (a window each) fit under the default 8 MiB memory-lock limit."""
    r = run_child(
        """
import pickle, signal
cells = [CypherCell(bytes([1]) * 2000, protection="secretmem") for _ in range(1100)]
held = []
for cell in (cells[0], cells[-1]):
    with cell.expose() as view:
        held.append(pickle.PickleBuffer(view[:]))  # cannot be released
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    views = [memoryview(h) for h in held]
    os.write(w, json.dumps([len(v) == 2000 and v.tobytes() == bytes(2000) for v in views]).encode())
    os._exit(0)
os.close(w)
with os.fdopen(r) as pipe:
    data = pipe.read()
_, status = os.waitpid(pid, 0)
report(zeros=json.loads(data) if data else None, status=status,
       signal=signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None)
"""
    )
    assert r["signal"] is None, f"the child was killed by {r['signal']}"
    assert r["status"] == 0
    assert r["zeros"] == [True, True]
