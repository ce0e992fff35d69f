"""`SecretsDir`: one file per secret, as Docker (``/run/secrets``),
Kubernetes secret volumes and systemd credentials
(``$CREDENTIALS_DIRECTORY``) provide them. Each file is read by Rust
straight into its cell."""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Sequence
from pathlib import Path

from cypher_cell import _native
from cypher_cell.errors import ProviderError, ProviderUnavailableError
from cypher_cell.providers.base import Loaded, PolicyFor, Provider, wiped_on_error

DEFAULT_MAX_SIZE = 1 << 20


class SecretsDir(Provider):
    """`path` defaults to ``$CREDENTIALS_DIRECTORY`` when set, else
    ``/run/secrets``. File names are the keys; hidden names (Kubernetes'
    ``..data`` bookkeeping) are skipped. One trailing newline is stripped.
    Symlinks that resolve outside the directory and files over `max_size`
    bytes are refused. A missing directory is an error unless `optional`."""

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
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"SecretsDir(max_size=...) must be a size in bytes, got {max_size!r}")
        self._path = Path(path)
        self._max_size = max_size
        self._optional = optional

    def describe(self) -> str:
        return f"secrets-dir {self._path}"

    def _root(self) -> Path | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            if self._optional:
                return None
            raise ProviderUnavailableError(f"secrets-dir {self._path}: no such directory") from None
        except OSError as exc:
            raise ProviderError(f"secrets-dir {self._path}: cannot read: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise ProviderError(f"secrets-dir {self._path}: not a directory")
        return self._path.resolve()

    def offered_keys(self) -> Collection[str] | None:
        root = self._root()
        if root is None:
            return []
        try:
            names = sorted(os.listdir(root))
        except OSError as exc:
            raise ProviderError(f"secrets-dir {self._path}: cannot list: {exc.strerror}") from None
        return [n for n in names if not n.startswith(".") and not (root / n).is_dir()]

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Loaded]:
        root = self._root()
        if root is None:
            return {}
        loaded: dict[str, Loaded] = {}
        with wiped_on_error(loaded):
            for key in keys:
                if not key or "/" in key or key.startswith(".") or "\0" in key:
                    continue  # not a plain file name in this directory
                place = root / key
                if not place.exists() and not place.is_symlink():
                    continue
                real = place.resolve()
                if real.parent != root and root not in real.parents:
                    raise ProviderError(
                        f"secrets-dir {self._path}: {key} is a symlink leading outside the directory; refused"
                    )
                p = policy(key)
                cell = _native.read_file_cell(
                    str(real),
                    max_size=self._max_size,
                    volatile=p.volatile,
                    ttl_sec=p.ttl_sec,
                    protection=p.protection,
                )
                loaded[key] = Loaded(cell, f"secrets-dir {place}")
        return loaded
