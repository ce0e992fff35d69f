"""`Prompt`: asks a person on the terminal, echo off.

The Rust core reads each answer straight into locked memory and from there
into its cell: the answer never becomes a Python `str` or `bytes`. Ctrl-C
raises `KeyboardInterrupt` with the terminal restored; Ctrl-D before an
answer raises `EOFError`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from cypher_cell import _native
from cypher_cell.errors import ProviderError
from cypher_cell.providers.base import Entry, PolicyFor, Provider, wiped_on_error

_CONTROLLING_TERMINAL = "/dev/tty"


class Prompt(Provider):
    """Asks for each key on the controlling terminal, echo off.

    With `keys` it offers exactly those keys, asked in that order. Without,
    it asks only for the *required* keys that earlier sources did not have.
    `prompt` is a ``str.format`` template whose one field is ``{key}``;
    `tty_path` names another terminal device to ask on. With no terminal it
    raises `ProviderUnavailableError`. An empty answer is an empty value.
    """

    kind = "prompt"

    def __init__(
        self,
        keys: Iterable[str] | None = None,
        *,
        prompt: str = "{key}: ",
        tty_path: str = _CONTROLLING_TERMINAL,
    ) -> None:
        if isinstance(keys, str | bytes):
            raise TypeError("Prompt(keys=...) takes a list of key names, not a single str")
        names = None if keys is None else list(dict.fromkeys(keys))
        for name in names or ():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Prompt(keys=...) must contain non-empty key names (str), got {name!r}")
        if not isinstance(prompt, str):
            raise TypeError(f"Prompt(prompt=...) must be a str, not {type(prompt).__name__}")
        try:
            prompt.format(key="KEY")
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(
                f"Prompt(prompt=...) must be a str.format template whose only field is {{key}}: {exc}"
            ) from None
        if not isinstance(tty_path, str):
            raise TypeError(f"Prompt(tty_path=...) must be a str, not {type(tty_path).__name__}")
        self._keys = None if names is None else tuple(names)
        self._prompt = prompt
        self._tty_path = tty_path

    @property
    def interactive(self) -> bool:
        return self._keys is None

    def offered_keys(self) -> Collection[str] | None:
        return self._keys

    @property
    def refreshable(self) -> bool:
        return False  # a person is not asked again

    def describe(self) -> str:
        where = "terminal" if self._tty_path == _CONTROLLING_TERMINAL else self._tty_path
        return f"{self.kind} ({where})"

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        loaded: dict[str, Entry] = {}
        with wiped_on_error(loaded):
            for key in keys:
                try:
                    cell = _native.prompt_cell(
                        self._prompt.format(key=key),
                        policy=policy(key),
                        tty_path=self._tty_path,
                    )
                except (ProviderError, ValueError, EOFError) as exc:
                    raise _naming(exc, key) from None
                loaded[key] = Entry(cell, self.describe())
        return loaded


def _naming(exc: Exception, key: str) -> Exception:
    """The same error, naming the key it was asked for (never a value: the
    native messages name only the terminal and the limit)."""
    if type(exc) in (ValueError, EOFError) or isinstance(exc, ProviderError):
        return type(exc)(f"{exc}; asking for {key}")
    return exc
