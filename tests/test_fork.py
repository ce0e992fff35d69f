"""A forked child inherits no secret: every cell reads as wiped, locked-tier
pages are zero (MADV_WIPEONFORK), secretmem pages are not mapped at all
(MADV_DONTFORK), and the child can still make cells of its own."""

from __future__ import annotations

import json
import os

import pytest
from kernel import cell_address, maps, read_memory

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
        readable = [any(m.start <= a < m.end and m.perms[0] == "r" for m in maps()) for a in addrs]
        contents = [read_memory(os.getpid(), a, len(SECRET)) for a in addrs]
        fresh = CypherCell(b"child's own", protection=protection)  # type: ignore[arg-type]
        return {
            "wiped": [c.wiped for c in [*cells, big]],
            "refused": refused,
            "readable": readable,
            "zero": [c == bytes(len(SECRET)) for c in contents if c is not None],
            "fresh_ok": fresh.reveal() == b"child's own",
        }

    out = in_fork(child)
    assert out["wiped"] == [True] * 4
    assert out["refused"] == 4
    assert out["fresh_ok"] is True
    if protection == "secretmem":
        assert out["readable"] == [False] * 4, "secretmem pages must not be readable in the child"
    else:
        assert out["readable"] == [True] * 4
        assert out["zero"] == [True] * 4, "MADV_WIPEONFORK pages must read as zeros"
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


def test_secretmem_holes_in_the_child_are_reserved_so_nothing_new_lands_there() -> None:
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

    assert in_fork(child) == {"perms": "---p", "reused": False}
