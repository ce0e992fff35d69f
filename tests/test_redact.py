"""cypher_cell.redact() and RedactStream: every live cell's value, in every
listed form, replaced by [REDACTED]; short values, other text and binary
bytes untouched; a wiped, burned or expired cell forgotten; streams masked
whole however they are split. Secrets here are random per test (never
literals that another test's cell could also hold)."""

from __future__ import annotations

import base64
import json
import secrets
import textwrap
import threading
import time
import urllib.parse
from typing import AnyStr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cypher_cell import CypherCell
from cypher_cell._native import RedactStream, redact

R = "[REDACTED]"


def token(n: int = 24) -> str:
    """A random secret of letters and digits (no character a form escapes)."""
    return secrets.token_urlsafe(n)[:n].replace("-", "x").replace("_", "y")


def same(actual: AnyStr, expected: AnyStr) -> None:
    """`actual == expected`, failing without showing either (they hold
    secret values): the lengths and the first differing offset only."""
    if actual != expected:
        at = next((i for i, (x, y) in enumerate(zip(actual, expected, strict=False)) if x != y), None)
        raise AssertionError(f"output differs: lengths {len(actual)}, {len(expected)}; first at {at}")


def absent(text: AnyStr, value: AnyStr) -> None:
    if value in text:
        raise AssertionError(f"a secret value is in the output, at {text.index(value)}")


def test_raw_value_in_str_and_bytes_same_type_back() -> None:
    value = token()
    with CypherCell(value):
        out = redact(f"connect password={value} ok")
        same(out, f"connect password={R} ok")
        assert isinstance(out, str)
        outb = redact(f"x{value}y".encode())
        same(outb, f"x{R}y".encode())
        assert isinstance(outb, bytes)
        same(redact(bytearray(f"[{value}]".encode())), bytearray(f"[{R}]".encode()))


def test_text_without_secrets_is_returned_unchanged() -> None:
    with CypherCell(token()):
        text = "nothing to see here, 2026-12-01 INFO ok " * 10
        assert redact(text) is text  # no copy when nothing matched
        same(redact(b"\xff\xfe\x00binary"), b"\xff\xfe\x00binary")


@pytest.mark.parametrize("prefix", [b"", b"u", b"us", b"user:", b"admin:x", b"ab"])
def test_base64_at_every_alignment_std_and_urlsafe(prefix: bytes) -> None:
    # Bytes that make '+', '/', '-', '_' appear in the encodings.
    value = secrets.token_bytes(30) + b"\xfb\xff\xbf"
    with CypherCell(value):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            full = enc(prefix + value)
            for text in (full, full.rstrip(b"=")):
                out = redact(b"Authorization: Basic " + text + b" end")
                assert R.encode() in out
                # What stays of the encoding: at most the prefix's characters
                # and one mixed character at each end, plus padding.
                left = out[len(b"Authorization: Basic ") : out.index(R.encode())]
                right = out[out.index(R.encode()) + len(R) : -len(b" end")]
                assert len(left) <= (len(prefix) * 4 + 2) // 3 + 1
                assert len(right.rstrip(b"=")) <= 1


def test_percent_encoding_json_and_repr_escaping() -> None:
    value = 'p@ss w/rd"\\\t' + token(12) + "é'"
    with CypherCell(value):
        quoted = [
            urllib.parse.quote(value, safe=""),
            urllib.parse.quote(value),
            urllib.parse.quote_plus(value),
        ]
        for q in quoted:
            same(redact(f"GET /login?pw={q}&x=1"), f"GET /login?pw={R}&x=1")
        for dumped in (json.dumps({"pw": value}), json.dumps({"pw": value}, ensure_ascii=False)):
            same(redact(dumped), json.dumps({"pw": R}))
        same(redact(repr({"pw": value})), repr({"pw": R}))
        same(redact(repr([value.encode()])), f"[b'{R}']")
        same(redact(str((value,))), f"('{R}',)")


def test_repr_quote_choice() -> None:
    for value in ("it's-" + token(10), 'say "' + token(10) + '"', "both'\"" + token(8)):
        with CypherCell(value):
            same(redact(repr(value)), repr(value)[0] + R + repr(value)[0])
            same(redact(repr(value.encode())), "b" + repr(value.encode())[1] + R + repr(value.encode())[1])


def test_each_line_of_a_multiline_secret() -> None:
    lines = ["-----BEGIN TEST KEY-----", token(40), token(40), "-----END TEST KEY-----"]
    pem = "\n".join(lines) + "\n"
    with CypherCell(pem):
        same(redact(pem), R)
        # One line logged on its own, and the key with CRLF line ends.
        same(redact(f"line: {lines[1]}!"), f"line: {R}!")
        crlf = "\r\n".join(lines)
        absent(redact(crlf), lines[1])
        absent(redact(crlf), lines[2])
        same(redact(json.dumps(pem)), f'"{R}"')


def test_overlapping_matches_merge_adjacent_ones_do_not() -> None:
    a = token(16)
    b = a[8:] + token(10)  # b starts inside a
    with CypherCell(a), CypherCell(b):
        same(redact(f"<{a[:8]}{b}>"), f"<{R}>")
        same(redact(f"<{a}{b}>"), f"<{R}{R}>")
        same(redact(f"<{a}{a}>"), f"<{R}{R}>")


def test_values_below_the_minimum_length_are_not_masked() -> None:
    short, edge = token(5), token(6)
    with CypherCell(short), CypherCell(edge):
        same(redact(f"a {short} b"), f"a {short} b")
        same(redact(f"a {edge} b"), f"a {R} b")


def test_wiped_burned_and_expired_cells_are_forgotten() -> None:
    wiped, burned, expiring, dropped = token(), token(), token(), token()
    c1 = CypherCell(wiped)
    c2 = CypherCell(burned, volatile=True)
    c3 = CypherCell(expiring, ttl_sec=0.2)
    c4 = CypherCell(dropped)
    for v in (wiped, burned, expiring, dropped):
        same(redact(v), R)
    c1.wipe()
    c2.reveal()
    del c4
    time.sleep(0.4)  # the reaper expires c3 without any read
    for v in (wiped, burned, expiring, dropped):
        same(redact(f"<{v}>"), f"<{v}>")
    assert c3.wiped


def test_cells_made_before_first_use_are_masked() -> None:
    # A child process: the first redaction call of the process comes after
    # the cell exists.
    from support.child import run_child

    report = run_child(
        textwrap.dedent(
            """
        import secrets
        from cypher_cell._native import redact
        value = secrets.token_hex(16)
        cell = CypherCell(value)
        report(masked=redact("v=" + value) == "v=[REDACTED]")
        """
        )
    )
    assert report["masked"] is True


def test_str_with_lone_surrogate_and_wrong_types() -> None:
    value = token()
    with CypherCell(value):
        same(redact(f"\udc80{value}\udc81"), f"\udc80{R}\udc81")
    with pytest.raises(TypeError, match="str or bytes, not int"):
        redact(3)  # type: ignore[call-overload]


def test_binary_bytes_pass_through_except_secrets() -> None:
    value = secrets.token_bytes(20)
    noise = bytes(range(256)) * 4
    with CypherCell(value):
        same(redact(noise + value + noise), noise + R.encode() + noise)


def test_thread_churn_never_crashes_and_still_masks() -> None:
    """Cells created and wiped from other threads while redact() runs."""
    stable = token()
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            while not stop.is_set():
                cells = [CypherCell(token()) for _ in range(50)]
                for c in cells[::2]:
                    c.wipe()
                del cells
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    text = ("log line with nothing in it\n" * 2000 + "{0}\n") * 8
    with CypherCell(stable):
        threads = [threading.Thread(target=churn) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 2
            rounds = 0
            while time.monotonic() < deadline:
                out = redact(text.format(stable))
                assert out.count(R) == 8
                absent(out, stable)
                rounds += 1
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert not errors
    assert rounds > 5


# --- streams ---


def stream_all(pieces: list[bytes]) -> bytes:
    s = RedactStream()
    out = b"".join(s.feed(p) for p in pieces)
    return out + s.finish()


def test_stream_holds_only_a_partial_match() -> None:
    value = token().encode()
    with CypherCell(value):
        s = RedactStream()
        same(s.feed(b"hello "), b"hello ")
        assert not s.pending()
        same(s.feed(b"pw=" + value[:10]), b"pw=")
        assert s.pending()
        same(s.feed(value[10:] + b" done\n"), R.encode() + b" done\n")
        assert not s.pending()
        same(s.finish(), b"")


def test_stream_flush_masks_the_held_part_and_swallows_the_rest() -> None:
    value = token().encode()
    with CypherCell(value):
        s = RedactStream()
        out = s.feed(b"pw=" + value[:5])
        out += s.flush()  # a pause: the held part goes out as [REDACTED]
        assert not s.pending()
        out += s.feed(value[5:15])
        out += s.flush()
        out += s.feed(value[15:] + b"\n")
        out += s.finish()
        same(out, b"pw=" + R.encode() + b"\n")


def test_stream_finish_masks_an_unfinished_secret() -> None:
    value = token().encode()
    with CypherCell(value):
        same(stream_all([b"x " + value[:-3]]), b"x " + R.encode())


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_stream_split_anywhere_equals_whole(data: st.DataObject) -> None:
    value = token(20).encode()
    with CypherCell(value):
        b64 = base64.b64encode(b"user:" + value)
        text = b"a " + value + b" b " + b64 + b" " + value + value + b" \xff\xfe " + value[:7]
        whole = stream_all([text])
        absent(whole, value)
        assert whole.count(R.encode()) == 5
        cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        same(stream_all(pieces), whole)


def test_stream_every_single_byte_split() -> None:
    value = token(20).encode()
    with CypherCell(value):
        text = b"k=" + value + b";" + base64.urlsafe_b64encode(value) + b"."
        whole = stream_all([text])
        for i in range(len(text) + 1):
            same(stream_all([text[:i], text[i:]]), whole)
        same(stream_all([bytes([c]) for c in text]), whole)


def test_a_secret_that_cuts_a_character_leaves_a_replacement_character() -> None:
    # Bytes of a secret may end inside a character of the text: the cut
    # character becomes U+FFFD, the str stays valid.
    value = b"\xa9" + token(10).encode()
    with CypherCell(value):
        text = "(\u00a9" + value[1:].decode() + ")"
        same(redact(text), "(\ufffd" + R + ")")


@settings(max_examples=60, deadline=None)
@given(noise=st.binary(min_size=0, max_size=300), cuts=st.lists(st.integers(0, 400), max_size=5))
def test_stream_of_binary_bytes_passes_through_except_secrets(noise: bytes, cuts: list[int]) -> None:
    value = secrets.token_bytes(16)
    with CypherCell(value):
        text = noise + value + noise[::-1]
        same(redact(text), noise + R.encode() + noise[::-1])
        bounds = sorted(min(c, len(text)) for c in cuts)
        pieces = [text[i:j] for i, j in zip([0, *bounds], [*bounds, len(text)], strict=True)]
        whole = stream_all([text])
        same(stream_all(pieces), whole)
        probe = RedactStream()
        probe.feed(text)
        if not probe.pending():  # no trailing partial match: exactly redact()'s output
            same(whole, redact(text))
