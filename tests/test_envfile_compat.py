"""The `.env` parser against python-dotenv itself, the oracle.

A fixed corpus of tricky files and hypothesis-generated ones must give
exactly what ``dotenv_values()`` of python-dotenv 1.2.4 gives (keys, order,
values, None for keys without ``=``) whenever python-dotenv parses them
without a warning; the statements it warns about are skipped as it skips
them. The comparison itself is support/dotenv_oracle.py.

Values never appear in assertion messages: cells are compared with ``==``
inside helpers that return key names or booleans.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dotenv.version import __version__ as DOTENV_VERSION
from hypothesis import assume, given
from hypothesis import strategies as st
from support.dotenv_oracle import assert_same_as_oracle, differences, oracle
from support.envfile import HYPOTHESIS, interpolation_environment, write

from cypher_cell import load_secrets
from cypher_cell.errors import DotenvSyntaxWarning
from cypher_cell.providers import EnvFile


@pytest.fixture(autouse=True, scope="module")
def _environment() -> Iterator[None]:
    with interpolation_environment():
        yield


# ---------------------------------------------------------------- corpus

CORPUS: dict[str, bytes] = {
    "plain": b"A=1\nB=two\n",
    # Found by the differential fuzzer: quoted, it is a value, not armour.
    "quoted-value-starting-like-armour": b"Y=\"-----BEGIN \"\nZ='-----BEGIN X'\nW=1\n",
    "export": b"export A=1\nexport\tB=2\n",
    "export-alone-is-a-key": b"export\n",
    "export-as-key-name": b"export=1\nexportX=2\n",
    "export-then-comment": b"export # only a comment\nA=1\n",
    "export-unicode-blank": "export\u00a0A=1\n".encode(),
    "spaces-around": b"  A  =  spaced value  \n",
    "empty-values": b"A=\nB=''\nC=\"\"\nD= \n",
    "keys-without-equals": b"A\nB # comment\n  C  \n",
    "comments": b"# full\n  # indented\nA=1 # inline\nB=1#not\nC='q' # c\nD=\"q\"#c\n",
    "hash-at-value-start": b"A=#x\nB= #x\nC=\t#x\n",
    "hash-right-after-equals-is-the-value": b"A=#x\nB=#x #c\nC=#'q'\nD =#\n",
    "hash-after-blanks-is-a-comment": "A= #x 'y\nB=\u00a0#c\nC = #\nD=  # \"open\nE=\t\x0b#\nF=2\n".encode(),
    "hash-after-blanks-quoted-or-later": b"A= '#q'\nB= \"#q\"\nC= x #c\nD= x#y\n",
    "unicode-whitespace": "A=a\u00a0#c\nB=b\x0b# c\nC=c\u3000\nD=\u2003d\nE\u00a0=1\nF=g\x1c\n".encode(),
    "single-quotes": b"A='single'\nB='with \"double\" inside'\nC='it\\'s'\n"
    b"D='back\\\\slash'\nE='\\n stays'\n",
    "double-quotes": b'A="double"\nB="with \'single\' inside"\nC="say \\"hi\\""\n',
    "double-escapes": b'A="\\a\\b\\f\\n\\r\\t\\v\\\\\\\'\\""\nB="\\x41\\u00e9\\0\\q\\$"\n',
    "escaped-backslash-then-closing-quote": b"A='x\\\\'\nB='y'\nC=\"z\\\\\" # c\nD='\\\\\\\\'\n",
    "escaped-quotes-and-backslashes": b"A='a\\\\\\'b'\nB=\"\\\\\\\"\\\\\"\nC='\\'\\''\n",
    "backslash-takes-any-character": "A='a\\\nb\\q\\\u00e9'\nB=\"\\\n\\$\\\u00e9\"\n".encode(),
    "multiline-double": b'A="line one\nline two\n  line three"\nB=after\n',
    "multiline-single": b"A='one\n\ntwo'\nB=after\n",
    "multiline-with-escaped-quote": b"A='a\\'b\n'\nB=1\n",
    "quoted-keys": b"'quoted key'=1\n'k=v'=2\n\"dq\"=3\n'multi\nline'=4\n",
    "odd-keys": "a.b=1\nk-y=2\nk/y=3\n\u00e9t\u00e9=4\nK:Y=5\n$X=6\n".encode(),
    "crlf": b"A=1\r\nB='x\r\ny'\r\nC=3\r\n",
    "cr-only": b'A=1\rB="x\ry"\rC=3',
    "mixed-line-ends": b"A=1\r\nB=2\nC=3\rD=4",
    "no-trailing-newline": b"A=1\nB=2",
    "bom-dropped-from-first-key": b"\xef\xbb\xbfA=1\nB=2\n",
    "bom-before-comment": b"\xef\xbb\xbf# comment\nA=1\n",
    "second-bom-kept-in-first-key": b"\xef\xbb\xbf\xef\xbb\xbfA=1\n",
    "bom-only-at-the-start": b"A=\xef\xbb\xbf\n\xef\xbb\xbfB=2\n",
    "interpolation": b"A=1\nB=${A}\nC=pre-${A}-post\nD=\"${A}\"\nE='${A}'\n",
    "interpolation-defaults": b"A=${NOPE:-default}\nB=${NOPE:-}\nC=${NOPE}\n"
    b"D=${CC_TEST_EXT:-unused}\nE=${:-e}\n",
    "file-wins-over-environment": b"A0=${CC_TEST_EXT}\nCC_TEST_EXT=from-file\nA=${CC_TEST_EXT}\n",
    "empty-environment-value-beats-default": b"A=${CC_TEST_EMPTY:-d}\n",
    "key-without-value-expands-empty": b"A\nB=${A:-d}\nC=${A}\n",
    "self-reference": b"A=${A}x\nCC_TEST_EXT=${CC_TEST_EXT}-more\n",
    "reference-sees-earlier-value": b"A=1\nB=${A}\nA=2\nC=${A}\n",
    "reference-odd-shapes": b"A=$A ${A\nB=${A:b}\nC=${X${Y}}\nD=$${CC_TEST_EXT}\nE=${A:-x:-y}}\nF=${NOPE:-\n",
    "reference-with-escapes": b'A="${NOPE:-a\\tb}"\nB="${CC_TEST_EXT}\\n"\nC="${CC_TEST_EXT:-\\"}"\n',
    "reference-spans-lines": b'A="${NOPE:-one\ntwo}"\nB=1\n',
    "duplicates-last-value-first-position": b"A=1\nB=2\nA=3\nA\nB=4\n",
    "hash-inside-quotes": b"A='#not a comment'\nB=\"a # b\"\nC=x'#'y\n",
    "quotes-inside-unquoted": b"A=it's\nB=say \"hi\"\nC=a'b'c\n",
    "blanks-after-closing-quote": b"A='x'   \nB=\"y\"\t\n",
    "equals-in-value": b"A=b=c\nB='=='\nC===\n",
    "blank-lines-and-indent": b"\n\n   \n\tA=1\n\n\n  B=2\n\n",
    "unicode-values": "A=h\u00e9llo w\u00f6rld\nB='\u65e5\u672c\u8a9e'\nC=\"emoji \U0001f389\"\n".encode(),
    "dollars-and-braces": b"A=$\nB=$$\nC=${\nD=}\nE={}\n",
    "form-feed-and-vertical-tab-blanks": b"A\x0c=\x0b1\n\x0cB=2\n",
    "empty-file": b"",
    "only-blank-lines": b"\n\r\n\r\n  \n",
    "long-value": b"A=" + b"x" * 100_000 + b"\nB='" + b"y\\'" * 20_000 + b"'\n",
    "many-keys": b"".join(b"K%d=v%d\n" % (i, i) for i in range(2000)),
}

#: Files python-dotenv warns about: it skips the statement and goes on.
WARNED: dict[str, bytes] = {
    "no-key": b"=x\nA=1\n",
    "text-after-key": b"A B\nC=1\n",
    "unclosed-single-value": b"A='unterminated\nB=1\n",
    "unclosed-double-value": b'A="unterminated\nB=1\n',
    "text-after-closing-quote": b'A="v" junk\nB=1\n',
    "export-without-key": b"export \nA=1\n",
    "unclosed-quoted-key": b"'k\nB=1\n",
    "empty-quoted-key": b"''=1\nB=2\n",
    "skip-runs-to-where-it-stopped": b"A='x\ny' junk\nB=1\n",
    "single-escaped-quote-does-not-close": b"A='ends with backslash\\'\nB=2\n",
    "double-escaped-quote-does-not-close": b'A="x\\"\nB=2\n',
    "escaped-quote-at-end-of-file": b"A=1\nB='x\\'",
    "backslash-at-end-of-file": b'A=1\nB="x\\',
    "blank-lines-before-the-problem": b"\n\n  A B\nC=1",
    "several": b"=1\nA=ok\nB C\nD='x\nE=2\n",
}


#: The python-dotenv release whose behaviour the parser reproduces exactly.
#: 1.2.2 differed: it kept a leading BOM in the first key, let a quoted value
#: end at the quote of an escaped quote (backtracking), and read `A= #c` as
#: the value "#c".
ORACLE_VERSION = "1.2.4"


def test_the_oracle_is_the_version_this_parser_follows() -> None:
    assert DOTENV_VERSION == ORACLE_VERSION, "install the test extra: pip install -e '.[test]'"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_matches_python_dotenv(name: str, tmp_path: Path) -> None:
    assert_same_as_oracle(write(tmp_path, CORPUS[name]))


@pytest.mark.parametrize(
    "name", ["bom-dropped-from-first-key", "bom-before-comment", "second-bom-kept-in-first-key", "plain"]
)
def test_utf8_sig_drops_a_bom_before_python_dotenv_drops_one(name: str, tmp_path: Path) -> None:
    assert_same_as_oracle(write(tmp_path, CORPUS[name]), encoding="utf-8-sig")


@pytest.mark.parametrize("name", ["interpolation", "interpolation-defaults", "reference-odd-shapes"])
def test_without_interpolation_references_stay_as_written(name: str, tmp_path: Path) -> None:
    assert_same_as_oracle(write(tmp_path, CORPUS[name]), interpolate=False)


@pytest.mark.parametrize("name", sorted(WARNED))
def test_statements_python_dotenv_warns_about_are_skipped_the_same_way(name: str, tmp_path: Path) -> None:
    path = write(tmp_path, WARNED[name])
    theirs, ours, warned, problems = differences(path)
    assert warned >= 1
    assert problems == warned
    assert ours == theirs
    expected, _ = oracle(path)
    with pytest.warns(DotenvSyntaxWarning):
        store = load_secrets(EnvFile(path, strict=False))
    with store:
        assert list(store) == [k for k, v in expected.items() if v is not None]
        wrong = [k for k in store if store[k] != (expected[k] or "").encode()]
        assert wrong == []


def test_corpus_case_count() -> None:
    assert len(CORPUS) >= 40


# ------------------------------------------------------------ hypothesis

BLANK = st.sampled_from(["", " ", "  ", "\t", "\x0b", "\x0c", "\u00a0", "\u3000", "\x1c"])
NAME = st.sampled_from(["A", "B", "KEY_1", "export", "CC_TEST_EXT", "CC_TEST_EMPTY", "a.b", "k-y", "\u00e9"])
REFERENCES = [
    "${A}",
    "${B:-d}",
    "${NOPE}",
    "${CC_TEST_EXT}",
    "${CC_TEST_EMPTY:-x}",
    "${A:b}",
    "${",
    "}",
    "$",
    ":-",
]
SYNTAX = ["#", " #", "'", '"', "\\", "\\'", '\\"', "\\n", "\\t", "\\\\", "=", " ", "\t", "x", "\u00e9", "\n"]
FRAGMENT = st.sampled_from([*REFERENCES, *SYNTAX])
PIECE = st.text(alphabet=st.sampled_from(list("ab $#{}:-'\"\\=\t\u00a0\u00e9\n")), max_size=8)
BODY = st.lists(st.one_of(FRAGMENT, PIECE), max_size=6).map("".join)
VALUE = st.one_of(
    BODY.map(lambda s: s.replace("\n", "")),
    BODY.map(lambda s: f"'{s}'"),
    BODY.map(lambda s: f'"{s}"'),
)
KEY = st.one_of(NAME, NAME.map(lambda n: f"'{n}'"), PIECE.filter(bool))
COMMENT = st.sampled_from(["", "#", " # c", "\t#x y", " #'\"", "#${A}"])
EXPORT = st.sampled_from(["", "", "export ", "export\t"])
JUNK = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
STATEMENT = st.one_of(
    st.builds(
        lambda b1, e, k, b2, b3, v, b4, c: f"{b1}{e}{k}{b2}={b3}{v}{b4}{c}",
        BLANK,
        EXPORT,
        KEY,
        BLANK,
        BLANK,
        VALUE,
        BLANK,
        COMMENT,
    ),
    st.builds(lambda b, k, c: f"{b}{k}{c}", BLANK, KEY, COMMENT),
    COMMENT,
    st.just(""),
    JUNK,
)
NEWLINE = st.sampled_from(["\n", "\n", "\r\n", "\r"])


@st.composite
def env_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(STATEMENT, NEWLINE), max_size=8))
    text = "".join(s + nl for s, nl in lines)
    if lines and draw(st.booleans()):
        text = text[: -len(lines[-1][1])]
    bom = "\ufeff" * max(0, draw(st.integers(0, 9)) - 7)
    return (bom + text).encode()


def _generated(content: bytes, **kw: Any) -> tuple[list[str], list[str], int, int]:
    fd, name = tempfile.mkstemp(prefix="cc-envfile-")
    try:
        os.write(fd, content)
        os.close(fd)
        return differences(Path(name), **kw)
    finally:
        os.unlink(name)


@HYPOTHESIS
@given(env_files(), st.booleans(), st.sampled_from(["utf-8", "utf-8-sig"]))
def test_generated_files_python_dotenv_parses_cleanly_match(
    content: bytes, interpolate: bool, encoding: str
) -> None:
    theirs, ours, warned, problems = _generated(content, interpolate=interpolate, encoding=encoding)
    assume(warned == 0)
    assert problems == 0
    assert ours == theirs


@HYPOTHESIS
@given(env_files())
def test_generated_files_with_problems_are_skipped_like_python_dotenv(content: bytes) -> None:
    theirs, ours, warned, problems = _generated(content)
    assert problems == warned
    assert ours == theirs
