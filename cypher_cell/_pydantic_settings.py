"""`CypherCellSettingsSource`: a pydantic-settings source over cypher_cell's
providers (imported as ``cypher_cell.pydantic.CypherCellSettingsSource``).

Keys are matched to fields by pydantic-settings' own environment matching
(`PydanticBaseEnvSettingsSource._extract_field_info`: ``env_prefix``,
``case_sensitive``, ``alias``, ``validation_alias`` with ``AliasChoices``),
so a field reads the same key from a provider as from the environment.
``CypherCell`` fields get the provider's cell itself; other fields get the
decoded text, and that cell is wiped. docs/pydantic.md has the rules.
"""

from __future__ import annotations

import sys
import types
import typing
import weakref
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Annotated, Any, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsError
from pydantic_settings.sources import PydanticBaseEnvSettingsSource

from cypher_cell._native import CypherCell, wipe_entries
from cypher_cell.loader import _close_all, _commit_all
from cypher_cell.policy import Policy, PolicyMap
from cypher_cell.providers.base import Entry, Provider, is_interactive

REDACTED = "[REDACTED]"


class _Text(str):
    """Decoded text for a field that is not a `CypherCell`. pydantic turns
    it into a plain `str` (or int, URL, ...) when it validates, so the model
    never holds one; while it is validation's input it prints as
    ``[REDACTED]``, so a ValidationError's text (a missing field's error
    shows the whole input) shows no value. The error's ``errors()`` and
    ``json()`` still hold it (docs/pydantic.md: ``hide_input_in_errors``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        # Only the repr (what an error's text and a dict's repr show): str()
        # stays the text, for a field validator that runs before pydantic's.
        return "'[REDACTED]'"


def _shielded(value: Any) -> Any:
    """JSON-decoded text with every string a `_Text`."""
    if isinstance(value, str):
        return _Text(value)
    if isinstance(value, list):
        return [_shielded(v) for v in value]
    if isinstance(value, dict):
        return {k: _shielded(v) for k, v in value.items()}
    return value


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """An annotation without its ``Annotated`` layers, and their metadata."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata.extend(extra)
    return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType)


def _cell_field(field: FieldInfo) -> tuple[bool, list[Any]]:
    """Whether a field is ``CypherCell`` or ``CypherCell | None`` (either
    possibly ``Annotated``), and the metadata found on the way."""
    annotation, metadata = _strip(field.annotation)
    metadata = [*field.metadata, *metadata]
    if _is_union(annotation):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            annotation, inner = _strip(members[0])
            metadata.extend(inner)
    return annotation is CypherCell, metadata


def _mentions_cell(annotation: Any) -> bool:
    return annotation is CypherCell or any(_mentions_cell(a) for a in get_args(annotation))


class CypherCellSettingsSource(PydanticBaseEnvSettingsSource):
    """A pydantic-settings source that reads `providers` (in order: the
    first that has a field's key wins), for ``settings_customise_sources``.

    ``policy`` maps field names or ``fnmatch`` patterns to a `Policy`, as
    `load_secrets` maps keys; a field's own ``Annotated[CypherCell,
    Policy(...)]`` comes first, ``default_policy`` last. The providers are
    closed when the source has read them, and committed (`Environ` scrubs)
    once the settings object has been built: a build that fails, here or in
    pydantic's validation, scrubs nothing.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        *providers: Provider,
        policy: Mapping[str, Policy] | None = None,
        default_policy: Policy | None = None,
    ) -> None:
        super().__init__(settings_cls)
        for provider in providers:
            if not isinstance(provider, Provider):
                raise TypeError(
                    f"CypherCellSettingsSource takes providers such as EnvFile(...) or Environ(...), "
                    f"not {type(provider).__name__}"
                )
        delimiter = self.config.get("env_nested_delimiter")
        if delimiter:
            raise SettingsError(
                f"{settings_cls.__name__}: CypherCellSettingsSource does not split keys on "
                f"env_nested_delimiter ({delimiter!r}); give a nested model's fields as JSON under one "
                "key, or leave nested models to pydantic-settings' own sources"
            )
        for name, field in settings_cls.model_fields.items():
            is_cell, _ = _cell_field(field)
            if not is_cell and _mentions_cell(field.annotation):
                raise TypeError(
                    f"{settings_cls.__name__}.{name}: CypherCellSettingsSource fills fields typed "
                    "CypherCell or CypherCell | None; a CypherCell inside another type would pass "
                    "through a str"
                )
        self._providers = providers
        self._policy_for = PolicyMap(policy, default_policy)

    def __repr__(self) -> str:
        names = ", ".join(p.describe() for p in self._providers)
        return f"{type(self).__name__}({self.settings_cls.__name__}, {names})"

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # pydantic-settings' abstract hook; __call__ reads every field at once.
        return None, field_name, False

    def _field_policy(self, field_name: str, metadata: list[Any]) -> Policy:
        found = [m for m in metadata if isinstance(m, Policy)]
        if len(found) > 1:
            raise TypeError(f"{self.settings_cls.__name__}.{field_name}: more than one Policy")
        return found[0] if found else self._policy_for(field_name)

    def _names(self, field: FieldInfo, field_name: str) -> list[tuple[str, str, bool]]:
        """pydantic-settings' (field key, key as written, complex) for a
        field, in its order of preference. The key is as written (the
        environment source lowercases it when not case-sensitive)."""
        case_sensitive = self.case_sensitive
        self.case_sensitive = True
        try:
            return self._extract_field_info(field, field_name)
        finally:
            self.case_sensitive = case_sensitive

    def __call__(self) -> dict[str, Any]:
        cells: dict[str, Entry] = {}  # field key -> the entry whose cell the model gets
        data: dict[str, Any] = {}
        try:
            wanted = {}
            for name, field in self.settings_cls.model_fields.items():
                is_cell, metadata = _cell_field(field)
                wanted[name] = (field, self._names(field, name), is_cell, self._field_policy(name, metadata))
            for provider in self._providers:
                if not wanted:
                    break
                self._read(provider, wanted, cells, data)
        except BaseException:
            wipe_entries(cells.values())
            raise
        finally:
            # A close that fails fails the build, before anything is committed.
            failure = _close_all(self._providers)
            if failure is not None:
                wipe_entries(cells.values())
                raise failure
        self._commit_once_built(cells)
        return data

    def _read(
        self,
        provider: Provider,
        wanted: dict[str, tuple[FieldInfo, list[tuple[str, str, bool]], bool, Policy]],
        cells: dict[str, Entry],
        data: dict[str, Any],
    ) -> None:
        """Takes from one provider every field still wanted that it has."""
        offered = provider.offered_keys()
        index: dict[str, str] | None = None
        if offered is not None:
            # The last of keys differing only in case wins, as in pydantic-settings' os.environ.
            index = {self._apply_case_sensitive(k): k for k in offered}
        users: dict[str, list[str]] = {}  # provider key -> the fields reading it
        picks: list[tuple[str, list[tuple[str, str, bool]]]] = []
        person = is_interactive(provider)  # Prompt(): a person is asked, once per required field
        for name, (field, names, _, _) in wanted.items():
            if person and not field.is_required():
                continue
            options = self._options(names, index)[:1] if person else self._options(names, index)
            for key, _, _ in options:
                users.setdefault(key, []).append(name)
            if options:
                picks.append((name, options))
        if not users:
            return
        # A key read by several fields (aliases may share one) is loaded once,
        # with the policy of the first CypherCell field among them.
        policies = {
            key: next((wanted[n][3] for n in names if wanted[n][2]), wanted[names[0]][3])
            for key, names in users.items()
        }
        got = provider.load(list(users), policies.__getitem__)
        kept: set[str] = set()  # keys whose cell a CypherCell field took
        try:
            for name, options in picks:
                hit = next((o for o in options if o[0] in got), None)
                if hit is None:
                    continue
                key, field_key, is_complex = hit
                field, _, is_cell, _ = wanted.pop(name)
                entry = got[key]
                if is_cell:
                    kept.add(key)
                    cells[field_key] = entry
                    data[field_key] = entry.cell
                else:
                    data[field_key] = self._text(name, field, entry, key, is_complex)
        finally:
            # Cells read only for their text, or for a spelling not taken.
            wipe_entries(e for k, e in got.items() if k not in kept)

    def _options(
        self, names: list[tuple[str, str, bool]], index: dict[str, str] | None
    ) -> list[tuple[str, str, bool]]:
        """The (provider key, field key, complex) to try for one field, in
        order: from a provider's listing, the first of the field's names it
        has; a provider that cannot list its keys is asked for each name as
        written and, unless case-sensitive, in upper and in lower case (a
        `Prompt()` only for the first, and only for required fields)."""
        options: list[tuple[str, str, bool]] = []
        for field_key, written, is_complex in names:
            if index is not None:
                key = index.get(self._apply_case_sensitive(written))
                if key is not None:
                    return [(key, field_key, is_complex)]
            else:
                spellings = [written] if self.case_sensitive else [written, written.upper(), written.lower()]
                options.extend((s, field_key, is_complex) for s in dict.fromkeys(spellings))
        return options

    def _text(self, name: str, field: FieldInfo, entry: Entry, key: str, is_complex: bool) -> Any:
        """The decoded text of a cell (wiped by the caller): pydantic coerces
        the text (str, int, SecretStr, a URL; JSON for lists, dicts and
        models). A failure names the field and the key, never the value
        (the decoding errors that would carry it are not chained)."""
        where = f"{self.settings_cls.__name__}.{name}: {key!r} from {entry.origin}"
        text: str | None = None
        try:
            with entry.cell.expose() as view:
                text = str(view, "utf-8")
        except UnicodeDecodeError:
            pass  # raised below, without the error that holds the bytes
        if text is None:
            raise SettingsError(f"{where} is not UTF-8 text")
        if not (is_complex or self.field_is_complex(field)):
            return _Text(text)
        decoded: Any = None
        failed = False
        try:
            decoded = self.decode_complex_value(name, field, text)
        except ValueError:
            failed = True
        if failed:
            raise SettingsError(f"{where} is not valid JSON (the field is a {_kind(field)})")
        return _shielded(decoded)

    def _commit_once_built(self, cells: dict[str, Entry]) -> None:
        """Commits the providers (Environ scrubs) once the settings object
        is built. pydantic-settings tells a source nothing after calling it,
        and validation comes after; but pydantic, when validation succeeds,
        gives the object a new ``__dict__``. So a marker goes into the
        ``__dict__`` of the object being built (found in
        ``BaseSettings.__init__``'s frame): it is released when validation
        succeeds, and the commit runs then. A failed validation leaves the
        marker until the failed object is dropped, and then commits nothing.
        Called outside ``BaseSettings(...)``, the source commits now."""
        instance = _being_built(self.settings_cls)
        try:
            ref = None if instance is None else weakref.ref(instance)
        except TypeError:  # a settings class with __slots__ and no __weakref__
            ref = None
        if instance is None or ref is None:
            _commit_all(self._providers, cells)
            return
        marker = _Pending()
        weakref.finalize(marker, _commit_if_built, ref, self._providers, cells).atexit = False
        vars(instance)[f"__cypher_cell_pending_{id(marker):x}"] = marker


class _Pending:
    """The marker `_commit_once_built` puts in a settings object's
    pre-validation ``__dict__``."""

    __slots__ = ("__weakref__",)


def _being_built(settings_cls: type[BaseSettings]) -> BaseSettings | None:
    init = BaseSettings.__init__.__code__
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code is init:
            instance = frame.f_locals.get(init.co_varnames[0])
            return instance if isinstance(instance, settings_cls) else None
        frame = frame.f_back
    return None


def _commit_if_built(
    ref: weakref.ref[BaseSettings], providers: Sequence[Provider], cells: dict[str, Entry]
) -> None:
    # The marker was released while the object lives: pydantic replaced its
    # __dict__, which it does only once validation has succeeded.
    if ref() is not None:
        _commit_all(tuple(providers), cells)


def _kind(field: FieldInfo) -> str:
    annotation, _ = _strip(field.annotation)
    return getattr(annotation, "__name__", None) or repr(annotation)
