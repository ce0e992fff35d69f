"""EnvFile, the `.env` provider, and its native half DotenvFile: what a user
sees of them.

- The DotenvFile API: keys, lines, values, loading, closing, arguments.
- The provider: the contract every provider meets, origins, strict (an
  error) and not strict (warnings, skipped like python-dotenv), file
  permissions, optional files, encodings and a BOM, interpolation on/off,
  plain key names (the rule every key must meet to be loaded).
- Errors and warnings name the file and line and never a value (a planted
  value is looked for in every exception text, warning and log record).
- Bad input (huge, binary, NUL, non-UTF-8, a directory, unreadable, a
  dangling symlink, a FIFO, exponential `${...}` growth) gets a clear error
  and no crash; Ctrl-C ends a read that waits on a FIFO.

Elsewhere: test_envfile_compat.py (python-dotenv as the oracle),
test_envfile_pem.py (unquoted PEM keys and base64), test_envfile_memory.py
(where the bytes live, by the kernel's accounts), test_envfile_residue.py
(a child's memory scanned after a load).

Values never appear in assertion messages: cells are compared with ``==``
inside helpers that return key names or booleans.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values
from hypothesis import given
from hypothesis import strategies as st
from support.cli import run_main
from support.dotenv_oracle import assert_same_as_oracle
from support.envfile import HYPOTHESIS, fifo_writer, interpolation_environment, write
from support.provider_contract import ProviderContract

from cypher_cell import DotenvSyntaxError, Policy, ProviderError, load_secrets
from cypher_cell._native import DotenvFile, _pool_stats, dotenv_encoding, is_plain_name, wipe_entries
from cypher_cell.errors import DotenvSyntaxWarning, FilePermissionWarning
from cypher_cell.providers import EnvFile, Provider
from cypher_cell.providers import envfile as envfile_module

PLANT = "PLANTED-VALUE-XYZ"


@pytest.fixture(autouse=True, scope="module")
def _environment() -> Iterator[None]:
    with interpolation_environment():
        yield


# --------------------------------------------------------- DotenvFile API


def test_keys_lines_and_values(tmp_path: Path) -> None:
    path = write(tmp_path, b"# c\nA=1\n\nB\nexport C='x'\nA=2\n")
    with DotenvFile(str(path)) as f:
        assert f.keys() == ["A", "B", "C"]
        assert [f.line(k) for k in ("A", "B", "C")] == [6, 4, 5]
        assert [f.has_value(k) for k in ("A", "B", "C")] == [True, False, True]
        assert f.cell("A") == b"2"
        assert f.duplicates() == [("A", [2, 6])]
        assert f.problems() == []
        assert stat.S_IMODE(f.mode) == 0o600
        assert f.path == str(path)
        with pytest.raises(KeyError):
            f.line("NOPE")
        with pytest.raises(KeyError):
            f.cell("NOPE")
        with pytest.raises(ValueError, match="no '=' and so no value") as info:
            f.cell("B")
        assert f"{path}:4" in str(info.value)
        assert "B" not in str(info.value).replace(str(path), ""), "a bare line's text is not repeated"


def test_load_gives_plain_named_valued_keys_in_the_order_asked(tmp_path: Path) -> None:
    path = write(tmp_path, b"A=1\nB=2\nC\nx+y/z==\nD.E-F=3\n")
    with DotenvFile(str(path)) as f:
        assert f.loadable() == (("A", "B", "D.E-F"), [4])
        loaded = f.load(["D.E-F", "NOPE", "C", "x+y/z=", "B", "A"], policy=Policy(volatile=True))
        # Absent, valueless and not-plain keys are left out, not errors.
        assert list(loaded) == ["D.E-F", "B", "A"]
        assert [e.cell == v for e, v in zip(loaded.values(), [b"3", b"2", b"1"], strict=True)] == [True] * 3
        assert [e.cell.volatile for e in loaded.values()] == [True] * 3
        assert [e.origin for e in loaded.values()] == [f"env-file {path}:{n}" for n in (5, 2, 1)]
        assert repr(loaded["A"]) == f"Entry(cell=[REDACTED], origin='env-file {path}:1')"


@pytest.mark.parametrize("stray", [b"not a str", None])
def test_load_is_all_or_nothing(tmp_path: Path, stray: object) -> None:
    path = write(tmp_path, b"A=1\nB=2\n")

    def keys() -> Iterator[object]:
        yield "A"
        if stray is None:
            raise RuntimeError("the keys' iterator failed")
        yield stray

    with DotenvFile(str(path)) as f:
        before = _pool_stats()["live_cells"]
        with pytest.raises(TypeError if stray is not None else RuntimeError):
            f.load(keys())  # type: ignore[arg-type]
        assert _pool_stats()["live_cells"] == before
        f.close()
        with pytest.raises(ValueError, match="closed"):
            f.load(["A"])


def test_wipe_loaded_wipes_every_cell_even_past_a_stray_item(tmp_path: Path) -> None:
    path = write(tmp_path, b"A=1\nB=2\n")
    with DotenvFile(str(path)) as f:
        a, b = f.load(["A", "B"]).values()
    with pytest.raises(TypeError, match="Entry"):
        wipe_entries([a, "not an entry", b])  # type: ignore[list-item]
    assert (a.cell.wiped, b.cell.wiped) == (True, True)


#: What a key's name looks like (the rule's specification; the native
#: check is tested against it).
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


@HYPOTHESIS
@given(st.text(alphabet=st.sampled_from("aZ_09.-+/=é \t$"), max_size=8) | st.text(max_size=6))
def test_is_plain_name_matches_its_specification(name: str) -> None:
    assert is_plain_name(name) == (PLAIN_NAME.fullmatch(name) is not None)


def test_undefined_references_name_identifiers_only(tmp_path: Path) -> None:
    content = f"A=${{NOPE}}${{CC_TEST_EXT}}\nB=${{B:-x}}\nC=pw${{{PLANT}!}}\nD\nE=${{D}}\n"
    with DotenvFile(str(write(tmp_path, content.encode()))) as f:
        assert f.undefined_references() == [("A", 1, "NOPE"), ("C", 3, None)]
    with DotenvFile(str(write(tmp_path, content.encode())), interpolate=False) as f:
        assert f.undefined_references() == []


def test_close_wipes_values_but_names_stay_readable(tmp_path: Path) -> None:
    path = write(tmp_path, b"A=1\nB='x\\'y'\n")
    f = DotenvFile(str(path))
    cell = f.cell("B")
    assert not f.closed
    f.close()
    f.close()
    assert f.closed
    assert f.keys() == ["A", "B"]
    with pytest.raises(ValueError, match="closed"):
        f.cell("A")
    assert cell == b"x'y"  # cells made before are independent copies
    assert "closed" in repr(f)
    with DotenvFile(str(path)) as g:
        pass
    assert g.closed


def test_arguments_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, b"A=1\n")
    for bad in ("latin-1", "utf-16", "no-such-codec"):
        with pytest.raises(ValueError, match=bad):
            DotenvFile(str(path), encoding=bad)
        with pytest.raises(ValueError, match=bad):
            EnvFile(path, encoding=bad)
    for ok in ("UTF8", "utf_8", "utf-8-sig"):
        DotenvFile(str(path), encoding=ok).close()
        EnvFile(path, encoding=ok)
    # One rule, native: EnvFile asks the reader when it is made.
    assert [dotenv_encoding(e) for e in ("UTF8", "U8", "utf_8_sig")] == ["utf-8", "utf-8", "utf-8-sig"]
    with pytest.raises(TypeError, match="encoding"):
        EnvFile(path, encoding=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_size"):
        DotenvFile(str(path), max_size=-1)
    with pytest.raises(ValueError, match="permissions"):
        EnvFile(path, permissions="loud")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DotenvFile(123)  # type: ignore[arg-type]
    with DotenvFile(str(path)) as f, pytest.raises(TypeError, match="Policy"):
        f.cell("A", policy="steel")  # type: ignore[arg-type]


# -------------------------------------------------------------- provider


class TestEnvFileContract(ProviderContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        lines = [f"{k}='{v.decode()}'\n" for k, v in planted.items()]
        return EnvFile(write(self.dir, "".join(["# planted\n", *lines, "NO_VALUE\n"]).encode()))


def test_origin_is_the_file_and_line_of_the_winning_binding(tmp_path: Path) -> None:
    path = write(tmp_path, b"# c\nA=1\nB=2\nA=3\n")
    with load_secrets(EnvFile(path)) as store:
        assert store.source("A") == f"env-file {path}:4"
        assert store.source("B") == f"env-file {path}:3"
        assert list(store) == ["A", "B"]


def test_offered_keys_are_those_with_a_value_in_file_order(tmp_path: Path) -> None:
    provider = EnvFile(write(tmp_path, b"Z=1\nNONE\nA=\nM=2\n"))
    assert list(provider.offered_keys()) == ["Z", "A", "M"]
    provider.close()
    store = load_secrets(EnvFile(write(tmp_path, b"Z=1\nNONE\n")))
    assert list(store) == ["Z"]
    store.close()


def test_the_file_is_read_once_and_wiped_after_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[DotenvFile] = []

    def counting(*args: Any, **kw: Any) -> DotenvFile:
        opened.append(DotenvFile(*args, **kw))
        return opened[-1]

    monkeypatch.setattr(envfile_module, "DotenvFile", counting)
    path = write(tmp_path, b"A=1\nB=2\n")
    provider = EnvFile(path)
    with load_secrets(provider, policy={"A": Policy(volatile=True)}) as store:
        assert store["B"] == b"2"
        assert len(opened) == 1
        assert opened[0].closed
    # A changed file between offered_keys() and load() is not read again.
    provider = EnvFile(path)
    assert "A" in provider.offered_keys()
    path.write_bytes(b"A=changed\n")
    loaded = provider.load(["A"], lambda key: Policy())
    assert loaded["A"].cell == b"1"
    assert len(opened) == 2 and opened[1].closed


def test_a_failure_in_load_wipes_the_cells_and_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []
    files: list[DotenvFile] = []

    class Failing:
        def __init__(self, *args: Any, **kw: Any) -> None:
            self.real = DotenvFile(*args, **kw)
            files.append(self.real)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def load(self, keys: list[str], **kw: Any) -> dict[str, Any]:
            if made:
                raise RuntimeError("boom")
            loaded = self.real.load(keys, **kw)
            made.extend(entry.cell for entry in loaded.values())
            return loaded

    monkeypatch.setattr(envfile_module, "DotenvFile", Failing)
    path = write(tmp_path, b"A=1\nB=2\n")
    with pytest.raises(RuntimeError):
        load_secrets(EnvFile(path), policy={"A": Policy(volatile=True)})
    assert made and all(c.wiped for c in made)
    assert files[0].closed


def test_os_environ_is_never_written(tmp_path: Path) -> None:
    before = dict(os.environ)
    path = write(tmp_path, b"CC_TEST_NEW=1\nCC_TEST_EXT=overridden\nexport CC_TEST_X=2\n")
    with load_secrets(EnvFile(path)) as store:
        assert len(store) == 3
    assert dict(os.environ) == before


def test_strict_raises_naming_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"A=1\nB='open\nC=2\nD E\n")
    with pytest.raises(DotenvSyntaxError) as info:
        load_secrets(EnvFile(path))
    err = info.value
    assert (err.path, err.line) == (str(path), 2)
    assert f"{path}:2" in str(err)
    assert "no closing quote" in str(err)
    assert "1 more" in str(err)


def test_not_strict_warns_and_skips_like_python_dotenv(tmp_path: Path) -> None:
    path = write(tmp_path, b"A=1\nB='open\nC=2\nD E\n")
    with pytest.warns(DotenvSyntaxWarning) as caught:
        store = load_secrets(EnvFile(path, strict=False))
    assert [str(w.message).split(": ")[0] for w in caught] == [f"env-file {path}:2", f"env-file {path}:4"]
    # The warnings point at this test, the caller of load_secrets.
    assert {Path(w.filename).name for w in caught} == {Path(__file__).name}
    with store:
        assert list(store) == ["A", "C"]


@pytest.mark.parametrize(
    ("mode", "permissions", "outcome"),
    [
        (0o600, "warn", None),
        (0o400, "error", None),
        (0o640, "warn", "warning"),
        (0o604, "warn", "warning"),
        (0o644, "error", "error"),
        (0o644, "ignore", None),
    ],
)
def test_permissions(tmp_path: Path, mode: int, permissions: str, outcome: str | None) -> None:
    path = write(tmp_path, b"A=1\n", mode=mode)
    provider = EnvFile(path, permissions=permissions)  # type: ignore[arg-type]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if outcome == "error":
            with pytest.raises(ProviderError, match="readable by group or others"):
                load_secrets(provider)
            return
        load_secrets(provider).close()
    found = [w for w in caught if issubclass(w.category, FilePermissionWarning)]
    assert len(found) == (1 if outcome == "warning" else 0)
    if found:
        assert f"{mode:04o}" in str(found[0].message)


def test_a_bom_is_dropped_as_python_dotenv_drops_it(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    cases = [
        (bom, "utf-8", ["A", "B"]),
        (bom, "utf-8-sig", ["A", "B"]),
        # The codec drops one BOM and python-dotenv another.
        (bom * 2, "utf-8-sig", ["A", "B"]),
    ]
    for prefix, encoding, keys in cases:
        path = write(tmp_path, prefix + b"A=1\nB=2\n")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            store = load_secrets(EnvFile(path, encoding=encoding))
        with store:
            assert list(store) == keys
            assert store[keys[0]] == b"1"


def test_a_second_bom_left_in_the_first_key_makes_it_no_plain_name(tmp_path: Path) -> None:
    """python-dotenv keeps a second BOM in the first key ("\ufeffA"); such a
    key is not a plain name, so EnvFile refuses (strict) or skips it."""
    path = write(tmp_path, b"\xef\xbb\xbf" * 2 + b"A=1\nB=2\n")
    with DotenvFile(str(path)) as f:
        assert f.keys() == ["\ufeffA", "B"]
    with pytest.raises(DotenvSyntaxError, match=":1: the key is not a plain name"):
        load_secrets(EnvFile(path))
    with pytest.warns(DotenvSyntaxWarning, match=":1: the key is not a plain name"):
        store = load_secrets(EnvFile(path, strict=False))
    assert list(store) == ["B"]


def test_missing_file_is_an_error_unless_optional(tmp_path: Path) -> None:
    missing = tmp_path / "absent.env"
    with pytest.raises(ProviderError, match=r"absent\.env: no such file"):
        load_secrets(EnvFile(missing))
    store = load_secrets(EnvFile(missing, optional=True))
    assert list(store) == []
    assert list(EnvFile(missing, optional=True).offered_keys()) == []


def test_path_like_and_repr(tmp_path: Path) -> None:
    path = write(tmp_path, f"A={PLANT}\n".encode())
    provider = EnvFile(path)
    assert provider.describe() == f"env-file {path}"
    provider.offered_keys()
    assert PLANT not in repr(provider)
    with DotenvFile(str(path)) as f:
        assert PLANT not in repr(f)
    provider.close()


# --------------------------------------------------- values never leak


def everything_said(run: Callable[[], object], caplog: pytest.LogCaptureFixture) -> str:
    """Every exception text, warning and log record that `run` produced."""
    said: list[str] = []
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run()
            if hasattr(result, "close"):
                result.close()
        except Exception as err:
            said += [str(err), repr(err), repr(err.args), str(getattr(err, "__cause__", ""))]
    said += [str(w.message) for w in caught]
    said += [r.getMessage() for r in caplog.records]
    return "\n".join(said)


PLANTED_FILES = {
    "text-after-quote": f'A="{PLANT}" junk\n'.encode(),
    "unclosed-quote": f"A='{PLANT}\n".encode(),
    "no-key": f"={PLANT}\n".encode(),
    "value-then-problem": f"A={PLANT}\nB C\n".encode(),
    "value-then-non-utf8": f"A={PLANT}\n".encode() + b"\xff\n",
    "value-then-nul": f"A={PLANT}\x00\n".encode(),
    "as-a-statement": f"{PLANT} junk\n".encode(),
    "in-a-reference": f"A=x${{{PLANT}}}\nB=${{{PLANT}:b}}\n".encode(),
}


@pytest.mark.parametrize("name", sorted(PLANTED_FILES))
@pytest.mark.parametrize("strict", [True, False])
def test_no_message_carries_a_value(
    name: str, strict: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, PLANTED_FILES[name], mode=0o644)
    said = everything_said(lambda: load_secrets(EnvFile(path, strict=strict, permissions="warn")), caplog)
    assert str(path) in said
    assert PLANT not in said
    said = everything_said(lambda: load_secrets(EnvFile(path, permissions="error")), caplog)
    assert PLANT not in said


def test_no_value_message_for_missing_values_or_closed_files(tmp_path: Path) -> None:
    path = write(tmp_path, f"A={PLANT}\nB\n".encode())
    f = DotenvFile(str(path))
    for run in (lambda: f.cell("B"), lambda: f.cell("NOPE")):
        with pytest.raises((KeyError, ValueError)) as info:
            run()
        assert PLANT not in str(info.value)
    f.close()
    with pytest.raises(ValueError) as info:
        f.cell("A")
    assert PLANT not in str(info.value)


# ------------------------------------------------------------- bad input


def test_a_100_mb_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.env"
    with open(path, "wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: no 100 MB written to disk
    with pytest.raises(ProviderError, match=r"104857600 bytes is over max_size \(67108864 bytes\)"):
        DotenvFile(str(path))
    with pytest.raises(ProviderError, match=r"huge\.env"):
        load_secrets(EnvFile(path))
    small = write(tmp_path, b"A=12345\n")
    with pytest.raises(ProviderError, match="max_size"):
        DotenvFile(str(small), max_size=7)
    DotenvFile(str(small), max_size=8).close()


def test_interpolation_cannot_grow_past_max_size(tmp_path: Path) -> None:
    lines = ["A0=xxxxxxxxxxxxxxxx"] + [f"A{i}=${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, 40)]
    path = write(tmp_path, "\n".join(lines).encode())
    with pytest.raises(DotenvSyntaxError, match="max_size") as info:
        DotenvFile(str(path), max_size=1 << 20)
    assert info.value.line == 17  # A16: the first value over the limit


def test_expansion_is_capped_in_proportion_to_the_file(tmp_path: Path) -> None:
    """A 108 KB file that references a 100 KB value 700 times builds 70 MB,
    as python-dotenv does; exponential growth is still refused, with the cap
    said in the error."""
    big = "v" * 100_000
    refs = "".join(f"R{i}=${{BIG}}\n" for i in range(700))
    path = write(tmp_path, f"BIG={big}\n{refs}")
    expected = dotenv_values(path)
    digest = hashlib.sha256(expected["R699"].encode()).hexdigest()  # type: ignore[union-attr]
    with DotenvFile(str(path)) as f:
        assert len(f.keys()) == 701
        cell = f.cell("R699")
        with cell.expose() as view:
            assert hashlib.sha256(view).hexdigest() == digest
    lines = ["A0=" + "x" * 64] + [f"A{i}=${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, 40)]
    path = write(tmp_path, "\n".join(lines))
    with pytest.raises(DotenvSyntaxError, match=r"over \d+ bytes") as info:
        DotenvFile(str(path))
    message = str(info.value)
    cap = int(re.search(r"over (\d+) bytes", message).group(1))  # type: ignore[union-attr]
    assert 64 << 20 <= cap <= 1 << 30
    total, first_over = 0, 0
    for i in range(40):
        total += 64 << i
        if total > cap:
            first_over = i + 1
            break
    assert info.value.line == first_over  # refused at the first value past the cap


def test_binary_garbage_nul_and_non_utf8_name_the_line(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    garbage = rng.randbytes(4096).replace(b"\0", b"\1")
    with pytest.raises(DotenvSyntaxError, match="not valid UTF-8"):
        DotenvFile(str(write(tmp_path, garbage)))
    # NUL is a character to python-dotenv and to DotenvFile; EnvFile(strict)
    # refuses it (test_a_nul_byte_loads_what_python_dotenv_loads_when_not_strict
    # has the rest).
    with DotenvFile(str(write(tmp_path, b"A=1\nB=x\x00y\n"))) as f:
        assert f.nul_line == 2
    with pytest.raises(DotenvSyntaxError, match="NUL") as info:
        load_secrets(EnvFile(write(tmp_path, b"A=1\nB=x\x00y\n")))
    assert info.value.line == 2
    with pytest.raises(DotenvSyntaxError, match="not valid UTF-8") as info:
        DotenvFile(str(write(tmp_path, b"A=1\r\n\r\nB=\xff\n")))
    assert info.value.line == 3
    assert info.value.path is not None and info.value.path.endswith(".env")
    with pytest.raises(DotenvSyntaxError, match="not valid UTF-8"):
        DotenvFile(str(write(tmp_path, bytes(range(256)) * 4)))


NUL_FILES = {
    "in-a-comment": b"A=1\n# a comment \x00 here\nB=2\n",
    "in-a-value": b"A=x\x00y\nB=2\n",
    "in-a-quoted-value": b"A='x\x00y'\nB=\"p\x00q\"\nC=3\n",
    "in-a-key": b"A\x00B=1\nC=2\n",
    "alone-on-a-line": b"A=1\n\x00\nB=2\n",
    "in-a-reference": b"A=${B\x00}\nB=2\nC=${B}\n",
}


@pytest.mark.parametrize("name", sorted(NUL_FILES))
def test_a_nul_byte_loads_what_python_dotenv_loads_when_not_strict(name: str, tmp_path: Path) -> None:
    content = NUL_FILES[name]
    path = write(tmp_path, content)
    line = content[: content.index(b"\0")].count(b"\n") + 1
    expected = {
        k: v for k, v in dotenv_values(path).items() if v is not None and re.fullmatch(r"[A-Za-z_]\w*", k)
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = load_secrets(EnvFile(path, strict=False))
    said = [str(w.message) for w in caught if w.category is DotenvSyntaxWarning]
    assert any(f":{line}: " in w and "NUL" in w for w in said)
    with store:
        assert list(store) == list(expected)
        assert [k for k in store if store[k] != expected[k].encode()] == []
    with pytest.raises(DotenvSyntaxError, match="NUL") as info:
        load_secrets(EnvFile(path))
    assert info.value.line == line
    status, out = run_main("check", str(path))
    assert status == 1 and f"{path}:{line}: " in out and "NUL" in out


@HYPOTHESIS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_fail_cleanly(content: bytes) -> None:
    fd, name = tempfile.mkstemp(prefix="cc-envfile-")
    try:
        os.write(fd, content)
        os.close(fd)
        try:
            with DotenvFile(name) as f:
                names = f.keys()
                for key in names:
                    if f.has_value(key):
                        f.cell(key).wipe()
        except DotenvSyntaxError as err:
            assert err.path == name
            assert isinstance(err.line, int) and err.line >= 1
    finally:
        os.unlink(name)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="is a directory"):
        DotenvFile(str(tmp_path))
    with pytest.raises(ProviderError, match="is a directory"):
        load_secrets(EnvFile(tmp_path))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    """chmod 000 does not stop root; /proc/sys/vm/compact_memory (mode 0200)
    refuses reads even to root: the kernel checks its mode bits itself."""
    unreadable = "/proc/sys/vm/compact_memory"
    try:
        open(unreadable, "rb").close()
    except PermissionError:
        pass
    except OSError:
        pytest.skip(f"{unreadable} is not available here")
    else:
        pytest.skip(f"{unreadable} is readable here")
    with pytest.raises(ProviderError, match="permission denied"):
        DotenvFile(unreadable)
    with pytest.raises(ProviderError, match="permission denied"):
        load_secrets(EnvFile(unreadable, permissions="ignore"))


def test_a_dangling_symlink_is_refused_even_when_optional(tmp_path: Path) -> None:
    link = tmp_path / "link.env"
    link.symlink_to(tmp_path / "gone.env")
    with pytest.raises(ProviderError, match="symbolic link to a missing file"):
        DotenvFile(str(link))
    with pytest.raises(ProviderError, match="symbolic link to a missing file"):
        load_secrets(EnvFile(link, optional=True))


# ------------------------------------------------------------------ FIFOs


def test_a_fifo_is_read_like_python_dotenv_reads_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.env"
    content = b"".join(b"K%d='value %d'\n" % (i, i) for i in range(20_000))  # several buffer growths
    os.mkfifo(fifo, 0o600)
    writer = fifo_writer(fifo, content)
    with DotenvFile(str(fifo)) as f:
        writer.join(5)
        assert len(f.keys()) == 20_000
        assert f.cell("K19999") == b"value 19999"
    os.unlink(fifo)
    assert_same_as_oracle(write(tmp_path, content))


def test_a_fifo_over_max_size_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.env"
    os.mkfifo(fifo, 0o600)
    writer = fifo_writer(fifo, b"A=1\n" * 100_000)
    with pytest.raises(ProviderError, match="over max_size"):
        DotenvFile(str(fifo), max_size=100_000)
    writer.join(5)


# -------------------------------------------------- FIFOs: Ctrl-C (SIGINT)

FIFO_CHILD = """
import signal, sys
from cypher_cell._native import DotenvFile
print("ready", flush=True)
try:
    DotenvFile(sys.argv[1])
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
sys.exit(0)
"""


def _wait_for_open(pid: int, path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")):
                return
        time.sleep(0.05)
    raise AssertionError("the child never opened the FIFO")


def _interrupt(fifo: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    child = subprocess.Popen(
        list(argv) or [sys.executable, "-c", FIFO_CHILD, str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if argv:  # the command line: wait until it has the FIFO open
            _wait_for_open(child.pid, fifo)
        else:
            assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # into the blocking call
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_ctrl_c_interrupts_a_fifo_read_that_waits_for_data(tmp_path: Path) -> None:
    """A writer holds the FIFO open and never writes: the read blocks."""
    fifo = tmp_path / "pipe.env"
    os.mkfifo(fifo, 0o600)
    writer = os.open(fifo, os.O_RDWR)  # a writer that never writes or closes
    try:
        r = _interrupt(fifo)
    finally:
        os.close(writer)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "interrupted" in r.stdout


def test_ctrl_c_interrupts_a_fifo_open_that_waits_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.env"
    os.mkfifo(fifo, 0o600)
    r = _interrupt(fifo)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "interrupted" in r.stdout


def test_ctrl_c_ends_check_on_a_fifo_without_a_traceback(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.env"
    os.mkfifo(fifo, 0o600)
    writer = os.open(fifo, os.O_RDWR)
    try:
        r = _interrupt(fifo, sys.executable, "-m", "cypher_cell", "check", str(fifo))
    finally:
        os.close(writer)
    assert r.returncode == 130, r.stderr[-2000:]
    assert r.stderr == "cypher-cell check: interrupted\n"
