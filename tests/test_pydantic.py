"""CypherCell as a pydantic v2 field type, with real pydantic: what it
accepts, how it prints, dumps and describes itself, errors without the
input, the Annotated policy, and import cost."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Annotated

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from support.procfs import random_secret

from cypher_cell import CypherCell, Policy


class Model(BaseModel):
    token: CypherCell
    maybe: CypherCell | None = None
    otp: Annotated[CypherCell, Policy(ttl_sec=60, volatile=True)] | None = None


def test_import_cypher_cell_does_not_import_pydantic() -> None:
    code = "import sys, cypher_cell; print(sorted(m for m in sys.modules if 'pydantic' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # ... and -X importtime agrees.
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import cypher_cell"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert "cypher_cell" in err and "pydantic" not in err


def test_accepts_bytes_bytearray_memoryview_str() -> None:
    secret = random_secret()
    for value in (secret, bytearray(secret), memoryview(secret), secret.decode()):
        m = Model(token=value)
        assert isinstance(m.token, CypherCell)
        assert m.token == secret


def test_a_cell_is_kept_as_is() -> None:
    cell = CypherCell(random_secret(), ttl_sec=5)
    m = Model(token=cell, otp=cell)
    assert m.token is cell and m.otp is cell
    assert m.otp.volatile is False  # a given cell keeps its own policy


def test_a_writable_buffer_is_not_wiped() -> None:
    secret = random_secret()
    buf = bytearray(secret)
    Model(token=buf)
    assert buf == secret


def test_optional() -> None:
    assert Model(token=b"x").maybe is None
    assert Model(token=b"x", maybe=None).maybe is None
    assert Model(token=b"x", maybe=b"y").maybe == b"y"


def test_annotated_policy_applies_when_a_cell_is_made() -> None:
    class P(BaseModel):
        a: Annotated[CypherCell, Policy(ttl_sec=60, volatile=True)]
        b: Annotated[CypherCell, Policy(ttl_sec=5)] | None = None
        c: Annotated[CypherCell | None, Policy(protection="unlocked")] = None
        plain: CypherCell | None = None

    p = P(a=b"1", b=b"2", c=b"3", plain=b"4")
    assert (p.a.volatile, p.a.ttl_sec) == (True, 60.0)
    assert p.b is not None and (p.b.volatile, p.b.ttl_sec) == (False, 5.0)
    assert p.c is not None and p.c.protection == "unlocked"
    assert p.plain is not None and (p.plain.volatile, p.plain.ttl_sec) == (False, None)
    assert p.a.reveal() == b"1"
    assert p.a.wiped  # burned by its first read


def test_repr_str_and_dumps_never_show_the_value() -> None:
    secret = random_secret()
    m = Model(token=secret, maybe=secret.decode())
    dumps = (m.model_dump_json(), json.dumps(m.model_dump(mode="json")), repr(m.model_dump()))
    for text in (repr(m), str(m), *dumps):
        assert secret.decode() not in text
    dumped = m.model_dump()
    assert dumped["token"] is m.token  # python mode: the cell itself
    assert m.model_dump(mode="json")["token"] == "[REDACTED]"
    assert json.loads(m.model_dump_json())["maybe"] == "[REDACTED]"


def test_json_schema_is_a_write_only_password() -> None:
    props = Model.model_json_schema()["properties"]
    assert props["token"] == {"type": "string", "format": "password", "writeOnly": True, "title": "Token"}
    schema = TypeAdapter(CypherCell).json_schema()
    assert schema == {"type": "string", "format": "password", "writeOnly": True}


def test_validation_errors_never_contain_the_input() -> None:
    secret = random_secret().decode()
    bad_inputs: list[object] = [[secret], {"k": secret}, 12345678901234567890, (secret,)]
    for bad in bad_inputs:
        with pytest.raises(ValidationError) as info:
            Model(token=bad)
        err = info.value
        assert err.errors()[0]["type"] == "cypher_cell_type"
        for text in (str(err), repr(err), err.json(), repr(err.errors())):
            assert secret not in text and "12345678901234567890" not in text
        assert err.errors()[0]["input"] is not bad
    # A str no cell can hold (a lone surrogate): CypherCell's own error, still no input.
    with pytest.raises(ValidationError) as info:
        Model(token=secret + "\ud800")
    assert secret not in str(info.value) and secret not in info.value.json()


def test_from_a_dict_and_from_json() -> None:
    secret = random_secret().decode()
    m = Model.model_validate({"token": secret, "otp": secret.encode()})
    assert m.token == secret.encode() and m.otp is not None and m.otp.volatile
    j = Model.model_validate_json(json.dumps({"token": secret, "maybe": None}))
    assert isinstance(j.token, CypherCell) and j.token == secret.encode()
    assert j.maybe is None


def test_a_misplaced_or_repeated_policy_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="at most one Policy"):

        class Twice(BaseModel):
            a: Annotated[CypherCell, Policy(ttl_sec=60), Policy(volatile=True)]

    with pytest.raises(TypeError, match="applies to a CypherCell"):

        class Elsewhere(BaseModel):
            a: Annotated[str, Policy(ttl_sec=60)]
