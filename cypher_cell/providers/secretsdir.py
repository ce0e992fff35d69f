"""`SecretsDir`: one file per secret, as Docker (``/run/secrets``),
Kubernetes secret volumes and systemd credentials
(``$CREDENTIALS_DIRECTORY``) provide them. Each file is read by Rust
straight into its cell.

The directory is opened once per listing or load; each file is opened
relative to it by the kernel in one step (``openat2`` with
``RESOLVE_BENEATH``; on kernels without it, component by component with
``O_NOFOLLOW``), and every check is made on the opened descriptor: nothing
can be swapped between a check and the read.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

from cypher_cell import _native
from cypher_cell.errors import ProviderError, ProviderUnavailableError
from cypher_cell.providers.base import Entry, PolicyFor, Provider, wiped_on_error

DEFAULT_MAX_SIZE = 1 << 20

# O_NONBLOCK: should the path name a FIFO, the open must not wait for a writer
# (O_DIRECTORY refuses it anyway, before opening).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NONBLOCK


class SecretsDir(Provider):
    """`path` defaults to ``$CREDENTIALS_DIRECTORY`` when set, else
    ``/run/secrets``. File names are the keys; hidden names (Kubernetes'
    ``..data`` bookkeeping) are skipped. One trailing newline is stripped.
    Symlinks are followed while they stay inside the directory (Kubernetes'
    ``key -> ..data/key``); one leading outside it, or by an absolute path,
    is refused, as are anything but regular files and files over `max_size`
    bytes. A missing directory is an error unless `optional`."""

    kind = "secrets-dir"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        optional: bool = False,
    ) -> None:
        if path is None:
            path = os.environ.get("CREDENTIALS_DIRECTORY") or "/run/secrets"
        path = os.fspath(path)
        if not isinstance(path, str) or "\0" in path:
            raise ValueError(f"SecretsDir(path=...) must be a path without NUL characters, got {path!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"SecretsDir(max_size=...) must be a size in bytes, got {max_size!r}")
        self._path = Path(path)
        self._max_size = max_size
        self._optional = optional

    def describe(self) -> str:
        return f"secrets-dir {self._path}"

    def _open(self) -> int | None:
        """The directory, opened; None if it is missing and optional."""
        try:
            return os.open(self._path, _DIR_FLAGS)
        except FileNotFoundError:
            if self._optional:
                return None
            raise ProviderUnavailableError(f"secrets-dir {self._path}: no such directory") from None
        except NotADirectoryError:
            raise ProviderError(f"secrets-dir {self._path}: not a directory") from None
        except OSError as exc:
            raise ProviderError(f"secrets-dir {self._path}: cannot open: {exc.strerror}") from None

    def offered_keys(self) -> Collection[str] | None:
        fd = self._open()
        if fd is None:
            return []
        try:
            with os.scandir(fd) as entries:
                return sorted(e.name for e in entries if not e.name.startswith(".") and not _is_dir(e))
        except OSError as exc:
            raise ProviderError(f"secrets-dir {self._path}: cannot list: {exc.strerror}") from None
        finally:
            os.close(fd)

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        fd = self._open()
        if fd is None:
            return {}
        loaded: dict[str, Entry] = {}
        try:
            with wiped_on_error(loaded):
                for key in keys:
                    if not key or "/" in key or key.startswith(".") or "\0" in key:
                        continue  # not a plain file name in this directory
                    try:
                        name = os.fsencode(key)
                    except UnicodeEncodeError:
                        continue  # no file can have this name
                    cell = _native.read_file_cell_at(
                        fd,
                        name,
                        label=_printable(f"secrets-dir {self._path}: {key}"),
                        max_size=self._max_size,
                        policy=policy(key),
                    )
                    if cell is not None:
                        loaded[key] = Entry(cell, _printable(f"secrets-dir {self._path / key}"))
        finally:
            os.close(fd)
        return loaded


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A subdirectory (not a key); what cannot be told is listed, and its
    load names the problem (a symlink loop, say)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _printable(text: str) -> str:
    """`text` with the bytes of a file name that is not UTF-8 (decoded by
    Python as lone surrogates) written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
