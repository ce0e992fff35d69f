"""pydantic v2 support: `CypherCell` as a field type, and
`CypherCellSettingsSource`, a pydantic-settings source that fills
`CypherCell` fields from providers without a value ever becoming a `str`.

``import cypher_cell`` does not import this module: `CypherCell`'s
``__get_pydantic_core_schema__`` (native) imports it when pydantic first
asks for a schema. `CypherCellSettingsSource` needs pydantic-settings too
(``pip install 'cypher-cell[pydantic]'``) and is imported on first use.

A field typed `CypherCell` accepts a `CypherCell` (kept: the same object,
with its own policy), or ``bytes``/``bytearray``/``memoryview``/``str``,
copied into a new cell made with the field's ``Annotated[..., Policy(...)]``
(a writable buffer is left as it is: to have it wiped, pass
``CypherCell(buf, wipe_source=True)``). It dumps as the cell itself in
python mode and as ``"[REDACTED]"`` in JSON mode; its JSON schema is a
write-only password string; a validation error about it never holds its
input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from cypher_cell._native import CypherCell
from cypher_cell.policy import Policy

if TYPE_CHECKING:
    from cypher_cell._pydantic_settings import CypherCellSettingsSource

__all__ = ["CypherCellSettingsSource"]

REDACTED = "[REDACTED]"
_JSON_SCHEMA = {"type": "string", "format": "password", "writeOnly": True}
_POLICY_MARK = "cypher_cell_policy"  # in a cell schema's metadata: made with an Annotated Policy
# `Annotated[CypherCell | None, Policy(...)]`, however the union is spelled.
_OPTIONAL_CELL = (CypherCell | None, Optional[CypherCell])  # noqa: UP045


class _Held:
    """The input on its way into a cell. The validator's first step wraps
    any input in one of these and the second step takes the value out
    before checking it, so an error raised there records an empty `_Held`
    as its input (pydantic keeps the input of the step that failed), never
    the value."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value: object = value

    def take(self) -> object:
        value, self.value = self.value, None
        return value

    def __repr__(self) -> str:
        return REDACTED


def _to_cell(policy: Policy | None) -> Callable[[_Held], CypherCell]:
    p = policy or Policy()

    def to_cell(held: _Held) -> CypherCell:
        value = held.take()
        if isinstance(value, CypherCell):
            return value  # the same object: it keeps its own policy
        if isinstance(value, bytes | bytearray | memoryview | str):
            return CypherCell(value, policy=p)
        kind = type(value).__name__
        del value
        raise PydanticCustomError(
            "cypher_cell_type",
            "a CypherCell field takes a CypherCell, bytes, bytearray, memoryview or str, not {kind}",
            {"kind": kind},
        )

    return to_cell


def _serialize(cell: CypherCell, info: core_schema.SerializationInfo) -> object:
    # Python mode hands back the cell itself (it prints as [REDACTED]); JSON
    # mode has no way to carry a cell, and must not carry its value.
    return REDACTED if info.mode_is_json() else cell


def _cell_schema(policy: Policy | None) -> core_schema.CoreSchema:
    return core_schema.chain_schema(
        [
            core_schema.no_info_plain_validator_function(_Held),
            core_schema.no_info_plain_validator_function(_to_cell(policy)),
        ],
        serialization=core_schema.plain_serializer_function_ser_schema(_serialize, info_arg=True),
        metadata={_POLICY_MARK: policy is not None},
    )


def _core_schema(cls: type[CypherCell], source: object, handler: object) -> core_schema.CoreSchema:
    """`CypherCell.__get_pydantic_core_schema__` delegates here: cells made
    with the default policy (an ``Annotated`` `Policy` replaces this)."""
    return _cell_schema(None)


def _policy_schema(policy: Policy, source: object, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    """`Policy.__get_pydantic_core_schema__` delegates here: pydantic calls
    it for a `Policy` found in ``Annotated[CypherCell, Policy(...)]`` (its
    documented hook for metadata), and the field's cells get that policy.
    A `Policy` beside any other type is a mistake, said at class creation."""
    if source is CypherCell or source in _OPTIONAL_CELL:
        # What the annotations before this one made of the field: a Policy
        # there too would be silently replaced.
        inner = handler(source)
        cell = inner["schema"] if inner["type"] == "nullable" else inner
        if cell.get("metadata", {}).get(_POLICY_MARK):
            raise TypeError("Annotated[CypherCell, ...] takes at most one Policy")
        schema = _cell_schema(policy)
        return core_schema.nullable_schema(schema) if source in _OPTIONAL_CELL else schema
    raise TypeError(
        f"a Policy in Annotated[...] applies to a CypherCell (or CypherCell | None) field, not {source!r}"
    )


def _json_schema(owner: object, schema: object, handler: object) -> dict[str, object]:
    """`CypherCell.__get_pydantic_json_schema__` and `Policy`'s delegate here."""
    return dict(_JSON_SCHEMA)


def __getattr__(name: str) -> object:
    if name == "CypherCellSettingsSource":
        try:
            from cypher_cell._pydantic_settings import CypherCellSettingsSource  # noqa: PLC0415
        except ImportError as exc:
            if exc.name != "pydantic_settings":
                raise
            raise ImportError(
                "CypherCellSettingsSource needs pydantic-settings: pip install 'cypher-cell[pydantic]'"
            ) from None
        globals()[name] = CypherCellSettingsSource
        return CypherCellSettingsSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
