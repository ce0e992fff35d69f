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
    DotenvSyntaxError,
    MemoryLockError,
    MemoryLockWarning,
    MissingSecretsError,
    ProviderError,
    ProviderUnavailableError,
)
from cypher_cell.loader import load_secrets
from cypher_cell.policy import Policy
from cypher_cell.redaction import install_log_redaction, redact
from cypher_cell.store import SecretStore

__all__ = [
    "CellExpiredError",
    "CellWipedError",
    "CypherCell",
    "CypherCellError",
    "DotenvSyntaxError",
    "MemoryLockError",
    "MemoryLockWarning",
    "MissingSecretsError",
    "Policy",
    "ProviderError",
    "ProviderUnavailableError",
    "SecretStore",
    "__version__",
    "install_log_redaction",
    "load_secrets",
    "redact",
]

# Interpreter exit is one of the exit paths: wipe every cell still alive.
atexit.register(_wipe_all)
