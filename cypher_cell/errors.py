"""The exceptions and warnings of cypher_cell.

Every message names a key, a source and a place (``file:line``); none ever
carries a secret's value. The native core raises these same classes.
"""

from __future__ import annotations

__all__ = [
    "CellExpiredError",
    "CellWipedError",
    "CypherCellError",
    "DotenvSyntaxError",
    "DotenvSyntaxWarning",
    "FilePermissionWarning",
    "MemoryLockError",
    "MemoryLockWarning",
    "MissingSecretsError",
    "ProviderError",
    "ProviderUnavailableError",
]


class CypherCellError(Exception):
    """Base class of every cypher_cell error."""


class CellWipedError(CypherCellError, ValueError):
    """The cell was wiped, burned after its one read, or created before a fork.

    A ``ValueError``, so code written against the first release's promise
    ("reading a wiped cell raises ValueError") keeps working.
    """


class CellExpiredError(CellWipedError):
    """The cell's time to live has passed; its memory has been zeroed."""


class MemoryLockError(CypherCellError):
    """The requested protection tier could not be had.

    ``tier`` is the tier asked for, ``errno`` the kernel's answer (or None).
    """

    def __init__(self, message: str, *, tier: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.tier = tier
        self.errno = errno


class MemoryLockWarning(UserWarning):
    """``protection="auto"`` had to settle for memory that may be swapped."""


class ProviderError(CypherCellError):
    """A source of secrets failed; the message names the provider and key."""


class ProviderUnavailableError(ProviderError):
    """A source cannot be used here (no terminal, no keyring backend, ...)."""


class MissingSecretsError(CypherCellError, KeyError):
    """Required keys were found in no source. ``keys`` lists them all."""

    def __init__(self, keys: list[str] | tuple[str, ...]) -> None:
        self.keys = tuple(keys)
        super().__init__(f"missing required secrets: {', '.join(self.keys)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DotenvSyntaxError(ProviderError):
    """A ``.env`` file could not be parsed. ``path`` and ``line`` say where."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class DotenvSyntaxWarning(UserWarning):
    """``EnvFile(strict=False)`` skipped a statement it could not parse (as
    python-dotenv does); the message names the file and line only."""


class FilePermissionWarning(UserWarning):
    """A file holding secrets can be read by its group or by others."""
