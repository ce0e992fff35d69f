"""Checked by `mypy --strict` (not run by pytest): the stub supports the
documented usage, and rejects misuse (each `type: ignore` must be needed,
which `warn_unused_ignores` under --strict enforces)."""

from __future__ import annotations

import contextlib
from typing import Literal, assert_type

from cypher_cell import CellWipedError, CypherCell

cell = CypherCell(b"key", volatile=False, ttl_sec=None, wipe_source=False, protection="auto")
assert_type(cell.reveal(), bytes)
assert_type(cell.reveal_masked(suffix_len=4), str)
assert_type(cell.wiped, bool)
assert_type(cell.protection, Literal["secretmem", "locked", "unlocked"])
with cell.expose() as view:
    assert_type(view, memoryview)
with CypherCell(bytearray(b"k"), wipe_source=True) as c:
    assert_type(c, CypherCell)
CypherCell(memoryview(b"k"), ttl_sec=1.5)
CypherCell("text", ttl_sec=3)
with contextlib.suppress(CellWipedError):
    cell.reveal()

CypherCell(b"k", protection="fort-knox")  # type: ignore[arg-type]
CypherCell(12345)  # type: ignore[arg-type]
CypherCell(b"k", True)  # type: ignore[call-arg]
cell.protection = "locked"  # type: ignore[misc]
