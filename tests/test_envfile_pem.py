"""What an unquoted multi-line value (a PEM key, a base64 blob) may never
become: a loaded key with a truncated value, a key named after one of its
lines, a line shown in any output (`check` as text and --json, `show`, the
store's list and repr, warnings and errors), or a Python object left in
memory by `check` (a child's memory scanned through /proc/PID/mem).

Real keys are generated here (RSA-2048, EC, Ed25519; PKCS#8, traditional,
encrypted with headers, OpenSSH; a certificate chain). A body line of a key
is never named in an assertion message: helpers count leaked lines.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from dotenv import dotenv_values
from support.child import start_child
from support.cli import run_cli, run_main
from support.envfile import write
from support.procfs import scan_memory

from cypher_cell import DotenvSyntaxError, MissingSecretsError, load_secrets
from cypher_cell.errors import DotenvSyntaxWarning
from cypher_cell.providers import EnvFile

ARMOUR = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]+-----")


# ------------------------------------------------------------------ keys


def _pem(key: Any, fmt: ser.PrivateFormat, password: bytes | None = None) -> str:
    enc: ser.KeySerializationEncryption = (
        ser.BestAvailableEncryption(password) if password else ser.NoEncryption()
    )
    return key.private_bytes(ser.Encoding.PEM, fmt, enc).decode()


def _chain() -> str:
    """Two self-signed certificates, one after the other (a bundle)."""
    out = []
    for i in range(2):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {i}")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        out.append(cert.public_bytes(ser.Encoding.PEM).decode())
    return "".join(out)


@functools.lru_cache(maxsize=1)
def pems() -> tuple[str, ...]:
    """50 RSA-2048 keys, 12 EC and 12 Ed25519 keys in every PEM form, a
    bundle of two certificates. Each ends with a newline."""
    out: list[str] = []
    forms = [ser.PrivateFormat.PKCS8, ser.PrivateFormat.TraditionalOpenSSL, ser.PrivateFormat.OpenSSH]
    for i in range(50):
        out.append(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048), forms[i % 3]))
    for i, curve in enumerate([ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()] * 3):
        ssh_cannot = isinstance(curve, ec.SECP256K1) and forms[i % 3] == ser.PrivateFormat.OpenSSH
        out.append(_pem(ec.generate_private_key(curve), forms[0] if ssh_cannot else forms[i % 3]))
    for i in range(12):
        out.append(_pem(ed25519.Ed25519PrivateKey.generate(), [forms[0], forms[2]][i % 2]))
    # Legacy encrypted PEM: RFC 1421 headers and a blank line before the body.
    out.append(_pem(rsa.generate_private_key(65537, 2048), forms[1], b"pw"))
    out.append(_pem(ec.generate_private_key(ec.SECP256R1()), forms[1], b"pw"))
    out.append(_chain())
    return tuple(out)


def body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not ARMOUR.fullmatch(line)]


def needles(pem: str) -> list[str]:
    """What of each body line would show if it were taken for a key: the
    line, and its part before '=' padding (`NAME==` is a key `NAME`). Short
    lines (an OpenSSH key's last, say) could occur by chance in any text:
    they are checked against the key names shown instead (see `shown`)."""
    out = []
    for line in body_lines(pem):
        name = line.split("=")[0].split(":")[0]
        if len(name) >= 12:
            out.append(name)
    return out


def leaks(said: str, pem_list: list[str] | tuple[str, ...]) -> int:
    """How many body lines of these keys appear in `said` (a count: the
    lines themselves are never put into an assertion message)."""
    return sum(n in said for pem in pem_list for n in needles(pem))


def body_names(pem_list: list[str] | tuple[str, ...]) -> set[str]:
    return {line.split("=")[0] for pem in pem_list for line in body_lines(pem)}


def pem_file(directory: Path, pem_list: list[str] | tuple[str, ...]) -> tuple[Path, list[int], list[str]]:
    """A .env with each PEM unquoted under its own key, plain keys around
    them. Returns the path, the line of each PEM's key, and the plain keys."""
    lines = ["BEFORE=1"]
    opened, plain = [], ["BEFORE"]
    for i, pem in enumerate(pem_list):
        opened.append(len(lines) + 1)
        lines += f"TLS_KEY_{i}={pem}".splitlines()
        lines.append(f"AFTER_{i}=2")
        plain.append(f"AFTER_{i}")
    return write(directory, "\n".join(lines) + "\n"), opened, plain


def everything_shown(path: Path) -> tuple[str, dict[str, Any]]:
    """Every output of check (text, --json), show, EnvFile (strict: the
    error; not strict: list, repr and source of the store, and warnings),
    joined; and the facts the test asserts on."""
    facts: dict[str, Any] = {}
    said: list[str] = []
    status, text = run_main("check", str(path))
    said.append(text)
    status, js = run_main("check", "--json", str(path))
    said.append(js)
    facts["json"] = json.loads(js)
    status, shown = run_main("show", "--env-file", str(path))
    said.append(shown)
    facts["show_status"] = status
    with pytest.raises(DotenvSyntaxError) as info:
        load_secrets(EnvFile(path))
    said += [str(info.value), repr(info.value), repr(info.value.args)]
    facts["strict_line"] = info.value.line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = load_secrets(EnvFile(path, strict=False))
    with store:
        facts["store"] = list(store)
        said += [repr(store), str(list(store)), *(store.source(k) for k in store)]
    said += [str(w.message) for w in caught]
    facts["warnings"] = [str(w.message) for w in caught]
    return "\n".join(said), facts


# ------------------------------------------------------ PEM and base64 lines


def test_no_line_of_any_unquoted_pem_is_ever_shown(tmp_path: Path) -> None:
    """Each generated key alone in a file, every output format."""
    for n, pem in enumerate(pems()):
        path, opened, plain = pem_file(tmp_path, [pem])
        said, facts = everything_shown(path)
        leaked = leaks(said, [pem])
        assert leaked == 0, f"key {n}: a body line was shown"
        assert facts["store"] == plain, f"key {n}: the key with the broken value is not loaded"
        assert facts["strict_line"] == opened[0], f"key {n}"
        js = facts["json"]
        names = {k["key"] for k in js["keys"]} - {None}
        assert names == set(plain), f"key {n}"
        assert not names & body_names([pem])
        assert any(p.startswith(f"{path}:{opened[0]}: ") and "PEM" in p for p in js["problems"])
        assert any(f":{opened[0]}: " in w and "PEM" in w for w in facts["warnings"])


def test_many_unquoted_pems_in_one_file_through_the_command_line(tmp_path: Path) -> None:
    """All the keys in one file, the command run as a user runs it."""
    path, opened, plain = pem_file(tmp_path, pems())
    said = []
    for args in (["check", str(path)], ["check", "--json", str(path)], ["show", "--env-file", str(path)]):
        r = run_cli(*args, timeout=120)
        said.append(r.stdout + r.stderr)
        assert r.returncode == 1
    leaked = leaks("\n".join(said), pems())
    assert leaked == 0
    data = json.loads(said[1])
    assert [k["key"] for k in data["keys"]] == plain
    assert [int(p.split(":")[1]) for p in data["problems"] if "PEM" in p] == opened
    # show (strict) refuses the file at the first broken value, by line.
    assert f"{path}:{opened[0]}:" in said[2]


def _pem_with_last_line(tail: str) -> str:
    """A real key's PEM with its last body line replaced: the shape that
    python-dotenv reads as `TAIL=` or `TAIL==`, a key with a value."""
    lines = pems()[0].splitlines()
    return "\n".join([*lines[:-2], tail, lines[-1]]) + "\n"


@pytest.mark.parametrize("with_end", [True, False])
def test_a_base64_last_line_without_plus_or_slash_is_never_a_key(tmp_path: Path, with_end: bool) -> None:
    """Finding 2: letters and digits with '=' padding are a plain name with
    a value; without an -----END line python-dotenv has no complaint at all,
    so strict mode loaded it. Now strict refuses at the opening key's line."""
    tail = "RkcJ9xUxK8mBd7Qw3TzXa1vLmN0pQrStUvWxYz=="
    pem = _pem_with_last_line(tail)
    if not with_end:
        pem = pem[: pem.rindex("-----END")]
    path = write(tmp_path, f"A=1\nTLS_KEY={pem}B=2\n")
    said, facts = everything_shown(path)
    leaked = leaks(said, [pem]) + (tail.rstrip("=") in said)
    assert leaked == 0
    assert facts["store"] == ["A", "B"]
    assert facts["strict_line"] == 2


def test_the_opening_key_is_not_loaded_with_a_truncated_value(tmp_path: Path) -> None:
    """python-dotenv gives TLS_KEY the value '-----BEGIN PRIVATE KEY-----':
    loading that would hand the application a broken key. It is left out, so
    that `required` reports it missing."""
    path, _, _ = pem_file(tmp_path, pems()[:1])
    assert dotenv_values(path)["TLS_KEY_0"] == "-----BEGIN PRIVATE KEY-----"
    with pytest.warns(DotenvSyntaxWarning), pytest.raises(MissingSecretsError, match="TLS_KEY_0"):
        load_secrets(EnvFile(path, strict=False), required=["TLS_KEY_0"])


def test_a_quoted_pem_loads_exactly_as_python_dotenv_reads_it(tmp_path: Path) -> None:
    pem = pems()[1]
    path = write(tmp_path, f'TLS_KEY="{pem}"\nA=1\n')
    with load_secrets(EnvFile(path)) as store:
        assert list(store) == ["TLS_KEY", "A"]
        same = store["TLS_KEY"] == pem.encode()
        assert same
    same = dotenv_values(path)["TLS_KEY"] == pem
    assert same


def test_armourless_base64_continuation_lines_are_never_shown(tmp_path: Path) -> None:
    """Without armour there is no block to recognize: each line stands on its
    own. Bare lines are listed by line only; a last line with '=' padding is
    refused by its shape (base64 letters, digits, both cases)."""
    pem = pems()[2]
    body = body_lines(pem)
    blob = "\n".join([*body[:-1], "Zm9vYmFyQmF6cXV4MTIzNDU2Nzg5=="])
    tail_line = len(body) + 1
    path = write(tmp_path, f"A=1\nBLOB={blob}\nB=2\nC=\nD==\nE=''\n")
    said, facts = everything_shown(path)
    leaked = leaks(said, [pem]) + ("Zm9vYmFyQmF6cXV4MTIz" in said)
    assert leaked == 0
    # C= is an empty value under an upper-case name; D== ends in two '=' of
    # padding, so it is refused whatever its name; E='' is quoted.
    assert facts["store"] == ["A", "BLOB", "B", "C", "E"]
    assert {k["key"] for k in facts["json"]["keys"]} - {None} == {"A", "BLOB", "B", "C", "E"}
    assert facts["strict_line"] == tail_line
    assert any(f":{tail_line}: " in w for w in facts["warnings"])
    assert any(f":{tail_line + 3}: " in w for w in facts["warnings"])


def test_keys_without_a_value_are_listed_by_line_only_in_json(tmp_path: Path) -> None:
    path = write(tmp_path, "A=1\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nB=2\n")
    _status, js = run_main("check", "--json", str(path))
    leaked = "MIIEvQIBADANBgkqhkiG9w0" in js
    assert not leaked
    data = json.loads(js)
    assert data["keys"] == [
        {"key": "A", "line": 1, "has_value": True},
        {"key": None, "line": 2, "has_value": False},
        {"key": "B", "line": 3, "has_value": True},
    ]


def test_a_base64_line_that_parses_as_a_key_is_never_loaded_or_shown(tmp_path: Path) -> None:
    last = "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm=="
    pem = f"-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n{last}\n-----END PRIVATE KEY-----"
    path = write(tmp_path, f"PRIVATE_KEY={pem}\nOK=1\n".encode())
    with pytest.raises(DotenvSyntaxError) as info:
        load_secrets(EnvFile(path))
    assert last.rstrip("=") not in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = load_secrets(EnvFile(path, strict=False))
    # The whole PEM block is skipped, its key included (no truncated value).
    assert list(store) == ["OK"]
    shown = repr(store) + "".join(str(w.message) for w in caught)
    assert last.rstrip("=") not in shown
    assert any(":1: a PEM block" in str(w.message) for w in caught)


# ---------------------------------------------- what `check` leaves in memory

CHECK_CHILD = """
from cypher_cell.cli import check_env_file
keys, problems = check_env_file(sys.argv[1])
report(keys=len(keys), problems=len(problems))
hold()
"""

KEYS_CHILD = """
from cypher_cell._native import DotenvFile
with DotenvFile(sys.argv[1]) as f:
    kept = f.keys()
report(keys=len(kept))
hold()
"""


def _copies(code: str, path: Path, lines: list[str]) -> int:
    child = start_child(code, str(path))
    try:
        forms = [line.encode(enc) for line in lines for enc in ("ascii", "utf-16-le", "utf-32-le")]
        return scan_memory(child.pid, forms).copies
    finally:
        child.finish()


def test_check_turns_no_line_of_a_multi_line_value_into_a_python_object(tmp_path: Path) -> None:
    """Scanned in a child's memory after `check` returns: the lines of an
    armourless base64 value (bare lines, names that are not plain) and of a
    PEM are nowhere. Control: `DotenvFile.keys()` does make them str.

    The lines are longer than 64 bytes (76, as `base64` wraps; 70, as
    OpenSSH does): a run of up to 64 bytes of whatever the parser last moved
    through the CPU's vector registers can be left on the stack, where the
    dynamic linker's lazy binding (`_dl_runtime_resolve_xsavec`) saves those
    registers. That copy is no Python object and is not what this measures."""
    der = "".join(body_lines(pems()[3]))
    armourless = [der[i : i + 76] for i in range(0, len(der) - 76, 76)]
    pem = pems()[2]  # OpenSSH: lines of 70
    assert "OPENSSH" in pem
    content = "A=1\nBLOB=" + "\n".join(armourless) + f"\nTLS_KEY={pem}B=2\n"
    path = write(tmp_path, content)
    wanted = armourless[1:] + [n for n in needles(pem) if len(n) > 64]
    # Enough lines for the scan to mean something (the count varies with
    # the generated keys' lengths; a count, so no line shows on failure).
    n_wanted = len(wanted)
    assert n_wanted >= 12
    after_check = _copies(CHECK_CHILD, path, wanted)
    assert after_check == 0
    control = _copies(KEYS_CHILD, path, armourless[1:])
    assert control >= len(armourless) - 1
