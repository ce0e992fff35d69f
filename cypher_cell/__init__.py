"""cypher_cell: secrets loaded straight into locked, zeroizing memory.

>>> from cypher_cell import CypherCell
>>> with CypherCell(b"hunter2") as cell:
...     print(cell)
[REDACTED]
"""

from __future__ import annotations

import atexit

from cypher_cell._native import CypherCell, __version__, _wipe_all
from cypher_cell.errors import (
    CellExpiredError,
    CellWipedError,
    CypherCellError,
    MemoryLockError,
    MemoryLockWarning,
)

__all__ = [
    "CellExpiredError",
    "CellWipedError",
    "CypherCell",
    "CypherCellError",
    "MemoryLockError",
    "MemoryLockWarning",
    "__version__",
]

# Interpreter exit is one of the exit paths: wipe every cell still alive.
atexit.register(_wipe_all)
