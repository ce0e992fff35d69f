"""`EnvFile`: secrets from a ``.env`` file, with python-dotenv's syntax and
results. Rust reads the file straight into locked memory and parses it
there (`cypher_cell._native.DotenvFile`); values go into cells without
ever becoming Python objects, and the file's bytes are wiped after `load`.
"""

from __future__ import annotations

import os
import stat
import sys
import warnings
from collections.abc import Collection, Iterable, Sequence
from contextlib import closing
from typing import ClassVar, Literal

from cypher_cell._native import DotenvFile, dotenv_encoding, is_plain_name
from cypher_cell.errors import (
    DotenvSyntaxError,
    DotenvSyntaxWarning,
    FilePermissionWarning,
    ProviderError,
)
from cypher_cell.policy import Policy, PolicyMap
from cypher_cell.providers.base import Entry, PolicyFor, Provider, wiped_on_error

__all__ = ["EnvFile", "is_plain_name", "loose_permissions"]

#: A line whose key is not loaded and whose text is never shown.
NOT_A_KEY = (
    "the key is not a plain name, or looks like a line of base64 (not shown: it may be a line of "
    "an unquoted multi-line value, such as a PEM key); quote multi-line values"
)
#: python-dotenv reads a NUL byte as a character; no environment variable can hold one.
NUL = "a NUL byte (is this a binary file?); no environment variable can hold one"

PermissionsMode = Literal["warn", "error", "ignore"]
_PERMISSIONS = ("warn", "error", "ignore")


class EnvFile(Provider):
    """The keys of a ``.env`` file that have a value (``KEY=...``).

    Results are those of python-dotenv's ``dotenv_values()``, interpolation
    included (``${VAR}``, ``${VAR:-default}``: earlier values in the file,
    then the process environment, then the default). ``os.environ`` is never
    written.

    - `strict`: a statement python-dotenv cannot parse, a PEM block written
      without quotes, a key that may be a line of one, or a NUL byte raises
      `DotenvSyntaxError` naming the file and line (True); with False the
      statement is skipped with a `DotenvSyntaxWarning` as python-dotenv
      skips it (a NUL byte is read as python-dotenv reads it, with a warning).
    - `permissions`: a file readable by group or others gets a
      `FilePermissionWarning` ("warn"), a `ProviderError` ("error") or
      nothing ("ignore").
    - `optional`: a missing file offers nothing instead of raising.

    The file is read once, when its keys are first asked for, and its bytes
    are wiped after `load` (or by `close`).
    """

    kind: ClassVar[str] = "env-file"

    def __init__(
        self,
        path: str | os.PathLike[str] = ".env",
        *,
        interpolate: bool = True,
        encoding: str = "utf-8",
        strict: bool = True,
        permissions: PermissionsMode = "warn",
        optional: bool = False,
    ) -> None:
        path = os.fspath(path)
        if not isinstance(path, str):
            raise TypeError(f"EnvFile(path=...) must be a str or os.PathLike[str], not {type(path).__name__}")
        if permissions not in _PERMISSIONS:
            raise ValueError(
                f"EnvFile(permissions=...) must be one of {', '.join(_PERMISSIONS)}; got {permissions!r}"
            )
        if not isinstance(encoding, str):
            raise TypeError(f"EnvFile(encoding=...) must be a str, not {type(encoding).__name__}")
        dotenv_encoding(encoding)  # the native reader's rule: 'utf-8' or 'utf-8-sig'
        self._path = path
        self._interpolate = bool(interpolate)
        self._encoding = encoding
        self._strict = bool(strict)
        self._permissions = permissions
        self._optional = bool(optional)
        self._file: DotenvFile | None = None
        #: The keys `load` can give (a value, a plain name), in file order.
        self._offered: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"env-file {self._path}"

    def offered_keys(self) -> Collection[str]:
        self._read()
        return self._offered

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        file = self._read()
        if file is None:
            return {}
        loaded: dict[str, Entry] = {}
        # The file's bytes are wiped when this block ends, however it ends.
        with closing(self), wiped_on_error(loaded):
            same = policy.uniform() if isinstance(policy, PolicyMap) else None
            if same is not None:  # the usual case: one native call for every key
                return file.load(keys, policy=same)
            groups: dict[int, tuple[Policy, list[str]]] = {}
            for key in keys:
                p = policy(key)
                group = groups.get(id(p))
                if group is None:
                    groups[id(p)] = group = (p, [])
                group[1].append(key)
            for p, names in groups.values():
                loaded.update(file.load(names, policy=p))
            # Back in the order asked for, as with a single call.
            return {key: loaded[key] for key in keys if key in loaded}

    def close(self) -> None:
        """Wipes the file's bytes now (`load` does this itself). A later
        `offered_keys` or `load` reads the file again."""
        file, self._file = self._file, None
        self._offered = ()
        if file is not None:
            file.close()

    def _read(self) -> DotenvFile | None:
        if self._file is not None:
            return self._file
        if not os.path.lexists(self._path):
            if self._optional:
                return None
            raise ProviderError(f"env-file {self._path}: no such file (EnvFile(optional=True) allows that)")
        file = DotenvFile(self._path, encoding=self._encoding, interpolate=self._interpolate)
        try:
            self._check_permissions(file.mode)
            self._check_nul(file.nul_line)
            self._check_problems(file)
            plain, odd = file.loadable()
            self._check_names(odd)
        except BaseException:
            file.close()
            raise
        self._file = file
        self._offered = plain
        return file

    def _check_names(self, lines: Iterable[int]) -> None:
        """Keys that are not plain names, or that look like the last line of
        base64 (``KEY=`` or ``KEY==`` after '=' padding), are not loaded: a
        line of an unquoted multi-line value parses as such a key, and a
        key's name is shown everywhere. Named by line only."""
        for line in lines:
            what = f"env-file {self._path}:{line}: {NOT_A_KEY}"
            if self._strict:
                raise DotenvSyntaxError(what, path=self._path, line=line)
            _warn(f"{what}; it is not loaded", DotenvSyntaxWarning)

    def _check_nul(self, line: int | None) -> None:
        if line is None:
            return
        what = f"env-file {self._path}:{line}: {NUL}"
        if self._strict:
            raise DotenvSyntaxError(
                f"{what}; EnvFile(strict=False) reads it as python-dotenv does", path=self._path, line=line
            )
        _warn(f"{what}; read as a character, as python-dotenv reads it", DotenvSyntaxWarning)

    def _check_permissions(self, mode: int) -> None:
        loose = loose_permissions(mode)
        if self._permissions == "ignore" or loose is None:
            return
        message = f"env-file {self._path}: {loose}, or pass EnvFile(permissions='ignore')"
        if self._permissions == "error":
            raise ProviderError(message)
        _warn(message, FilePermissionWarning)

    def _check_problems(self, file: DotenvFile) -> None:
        problems = file.problems()
        if problems and self._strict:
            line, what = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DotenvSyntaxError(
                f"env-file {self._path}:{line}: {what}{more}; EnvFile(strict=False) skips such statements",
                path=self._path,
                line=line,
            )
        for line, what in problems:
            _warn(f"env-file {self._path}:{line}: {what}; the statement is skipped", DotenvSyntaxWarning)


def loose_permissions(mode: int) -> str | None:
    """What is wrong with a .env file's `st_mode`, or None: a file of
    secrets readable by group or others (`EnvFile` and `cypher-cell check`)."""
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    return f"readable by group or others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"


def _warn(message: str, category: type[Warning]) -> None:
    """Warns at the first caller outside cypher_cell (usually the
    application's `load_secrets` call), whatever the path that got here."""
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("cypher_cell."):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)
