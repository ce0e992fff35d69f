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

import os
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import pydantic
from pydantic_core import PydanticCustomError, core_schema

from cypher_cell._native import CypherCell
from cypher_cell.policy import Policy

if TYPE_CHECKING:
    from cypher_cell._pydantic_settings import CypherCellSettingsSource

__all__ = ["CypherCellSettingsSource"]

REDACTED = "[REDACTED]"
_JSON_SCHEMA = {"type": "string", "format": "password", "writeOnly": True}
_PYDANTIC_DIR = os.path.dirname(pydantic.__file__) + os.sep


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
            return CypherCell(value, volatile=p.volatile, ttl_sec=p.ttl_sec, protection=p.protection)
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


def _annotated_policy() -> Policy | None:
    """The `Policy` in the ``Annotated[...]`` this `CypherCell` occurrence
    sits in. pydantic hands a type's schema hook the bare type and ignores
    metadata it does not know, so the policy is read from pydantic's own
    call that is applying that metadata: the nearest
    `GenerateSchema._apply_annotations` frame (every field and every
    ``Annotated`` goes through one). The walk stays inside pydantic's
    package: a frame outside it means no such call encloses this one."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PYDANTIC_DIR):
        if frame.f_code.co_name == "_apply_annotations":
            found = [a for a in frame.f_locals.get("annotations", ()) if isinstance(a, Policy)]
            if len(found) > 1:
                raise TypeError("Annotated[CypherCell, ...] takes at most one Policy")
            return found[0] if found else None
        frame = frame.f_back
    return None


def _core_schema(cls: type[CypherCell], source: object, handler: object) -> core_schema.CoreSchema:
    """`CypherCell.__get_pydantic_core_schema__` delegates here."""
    return core_schema.chain_schema(
        [
            core_schema.no_info_plain_validator_function(_Held),
            core_schema.no_info_plain_validator_function(_to_cell(_annotated_policy())),
        ],
        serialization=core_schema.plain_serializer_function_ser_schema(_serialize, info_arg=True),
    )


def _json_schema(cls: type[CypherCell], schema: object, handler: object) -> dict[str, object]:
    """`CypherCell.__get_pydantic_json_schema__` delegates here."""
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
