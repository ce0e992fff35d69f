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


# pydantic: a CypherCell field, and the settings source (cypher_cell.pydantic).
def _pydantic_usage() -> None:
    from typing import Annotated

    from pydantic import BaseModel
    from pydantic_settings import BaseSettings

    from cypher_cell import Policy
    from cypher_cell.providers import EnvFile
    from cypher_cell.pydantic import CypherCellSettingsSource

    class Model(BaseModel):
        token: CypherCell
        otp: Annotated[CypherCell, Policy(volatile=True)] | None = None

    assert_type(Model(token=CypherCell(b"k")).token, CypherCell)

    class Settings(BaseSettings):
        token: CypherCell

    CypherCellSettingsSource(Settings, EnvFile(".env"), policy={"*": Policy(ttl_sec=5)})
    CypherCellSettingsSource(Settings, ".env")  # type: ignore[arg-type]
