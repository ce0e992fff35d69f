"""CypherCell's Python API: construction, reads, display, comparison, copying."""

from __future__ import annotations

import array
import copy
import logging
import pickle
import traceback
import weakref

import pytest
from support.procfs import cell_address

from cypher_cell import CellExpiredError, CellWipedError, CypherCell, CypherCellError


def ctypes_read(address: int, length: int) -> bytes:
    """Reads our own memory at `address` (the slot stays mapped: the class
    keeps a spare arena), bypassing the library."""
    import ctypes

    return ctypes.string_at(address, length)


SECRET = b"SK-7721-9904-1234"


@pytest.mark.parametrize(
    "data",
    [SECRET, bytearray(SECRET), memoryview(SECRET), memoryview(bytearray(SECRET)), SECRET.decode()],
    ids=["bytes", "bytearray", "memoryview", "memoryview-rw", "str"],
)
def test_accepts_bytes_like_and_str(data: object) -> None:
    cell = CypherCell(data)  # type: ignore[arg-type]
    assert cell.reveal() == SECRET


def test_accepts_any_buffer_as_raw_bytes() -> None:
    arr = array.array("I", [1, 2, 3])
    assert CypherCell(arr).reveal() == arr.tobytes()


def test_non_contiguous_buffer_is_copied_in_order() -> None:
    view = memoryview(b"a-b-c-d")[::2]
    assert CypherCell(view).reveal() == b"abcd"


def test_str_is_utf8() -> None:
    assert CypherCell("pässwörd").reveal() == "pässwörd".encode()


def test_empty_secret_is_allowed() -> None:
    cell = CypherCell(b"")
    assert cell.reveal() == b""
    assert cell.reveal_masked() == ""


@pytest.mark.parametrize("size", [1, 1024, 1025, 4096, 200_000])
def test_sizes_across_slot_classes_and_large_regions(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    cell = CypherCell(data)
    assert cell.reveal() == data
    cell.wipe()
    assert cell.wiped


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"data": 12345}, TypeError, "not int"),
        ({"data": None}, TypeError, "not NoneType"),
        ({"data": [1, 2]}, TypeError, "not list"),
        ({"data": b"x", "ttl_sec": 0}, ValueError, "greater than 0"),
        ({"data": b"x", "ttl_sec": -1.5}, ValueError, "greater than 0"),
        ({"data": b"x", "ttl_sec": float("nan")}, ValueError, "finite"),
        ({"data": b"x", "ttl_sec": float("inf")}, ValueError, "finite"),
        ({"data": b"x", "ttl_sec": 1e300}, ValueError, "at most 1e"),
        ({"data": b"x", "ttl_sec": "10"}, TypeError, "ttl_sec"),
        ({"data": b"x", "ttl_sec": True}, TypeError, "ttl_sec"),
        ({"data": b"x", "protection": "fort-knox"}, ValueError, "protection"),
        ({"data": b"x", "protection": 3}, TypeError, "protection"),
        ({"data": b"x", "volatile": 1}, TypeError, "volatile"),
        ({"data": b"x", "wipe_source": True}, TypeError, "writable"),
        ({"data": "text", "wipe_source": True}, TypeError, "writable"),
    ],
)
def test_bad_arguments_fail_clearly_before_allocating(
    kwargs: dict[str, object], exc: type, words: str
) -> None:
    from cypher_cell._native import _pool_stats

    before = _pool_stats()["live_cells"]
    with pytest.raises(exc, match=words):
        CypherCell(**kwargs)  # type: ignore[arg-type]
    assert _pool_stats()["live_cells"] == before


def test_positional_options_are_refused() -> None:
    with pytest.raises(TypeError):
        CypherCell(b"x", True)  # type: ignore[misc]


def test_wipe_source_zeroes_a_writable_source() -> None:
    source = bytearray(SECRET)
    cell = CypherCell(source, wipe_source=True)
    assert source == bytearray(len(SECRET))
    assert cell.reveal() == SECRET


def test_wipe_source_through_a_memoryview_zeroes_the_underlying_buffer() -> None:
    backing = bytearray(b"xx" + SECRET + b"yy")
    CypherCell(memoryview(backing)[2:-2], wipe_source=True)
    assert backing == b"xx" + bytes(len(SECRET)) + b"yy"


def test_source_is_left_alone_by_default() -> None:
    source = bytearray(SECRET)
    CypherCell(source)
    assert source == SECRET


@pytest.mark.parametrize(
    "text", [str, repr, lambda c: f"{c}", lambda c: f"{c!r}", lambda c: f"{c:>20}", format]
)
def test_display_is_redacted_without_bytes_or_length(text: object) -> None:
    shown = text(CypherCell(SECRET))  # type: ignore[operator]
    assert "[REDACTED]" in shown
    assert "7721" not in shown
    assert str(len(SECRET)) not in shown


def test_redacted_in_containers_logging_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    cell = CypherCell(SECRET)
    assert "1234" not in str([cell]) + str({"k": cell})
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("token=%s", cell)
    assert "token=[REDACTED]" in caplog.text
    try:
        raise RuntimeError(cell)
    except RuntimeError:
        assert "1234" not in traceback.format_exc()


def test_reveal_masked_matches_the_documented_example() -> None:
    assert CypherCell(SECRET).reveal_masked(suffix_len=4) == "*************1234"
    assert CypherCell(SECRET).reveal_masked() == "*************1234"


@pytest.mark.parametrize(("suffix", "shown"), [(0, "*****"), (2, "***cd"), (5, "*****"), (50, "*****")])
def test_a_suffix_as_long_as_the_secret_reveals_nothing(suffix: int, shown: str) -> None:
    assert CypherCell(b"abccd").reveal_masked(suffix_len=suffix) == shown


def test_reveal_masked_rejects_negative_suffix() -> None:
    with pytest.raises(ValueError, match="suffix_len"):
        CypherCell(SECRET).reveal_masked(suffix_len=-1)


def test_reveal_masked_takes_any_int_and_prints_none_in_full() -> None:
    cell = CypherCell(b"abcdef")
    for huge in (2**63, 2**64, 10**30, 10**5000):
        assert cell.reveal_masked(huge) == "******"
    for negative in (-(2**63) - 1, -(10**30), -(10**5000)):
        with pytest.raises(ValueError, match="0 or more, got a negative int beyond 64 bits"):
            cell.reveal_masked(negative)
    for wrong in (True, 1.5, "3", None):
        with pytest.raises(TypeError, match="suffix_len must be an int, not"):
            cell.reveal_masked(wrong)  # type: ignore[arg-type]
    assert cell.reveal_masked() == "**cdef"


def test_reads_after_wipe_raise_value_error_subclass() -> None:
    cell = CypherCell(SECRET)
    cell.wipe()
    cell.wipe()  # idempotent
    assert cell.wiped
    for read in (cell.reveal, cell.reveal_masked, cell.expose):
        with pytest.raises(CellWipedError):
            read()
    assert issubclass(CellWipedError, ValueError)
    assert issubclass(CellExpiredError, CellWipedError)
    assert issubclass(CellWipedError, CypherCellError)


def test_context_manager_wipes_on_exit_even_on_error() -> None:
    with CypherCell(SECRET) as cell:
        assert cell.reveal() == SECRET
    assert cell.wiped
    with pytest.raises(KeyError), CypherCell(SECRET) as other:
        raise KeyError("boom")
    assert other.wiped


def test_expose_gives_a_read_only_view_in_place() -> None:
    cell = CypherCell(SECRET)
    with cell.expose() as view:
        assert isinstance(view, memoryview)
        assert view.readonly
        assert view == SECRET
        with pytest.raises(TypeError):
            view[0] = 0  # type: ignore[index]
    with pytest.raises(ValueError, match="released"):
        len(view)
    assert cell.reveal() == SECRET


def test_expose_refuses_writable_export() -> None:
    import ctypes

    from support.procfs import _get_buffer, _PyBuffer

    cell = CypherCell(SECRET)
    exposure = cell.expose()
    with exposure as view:
        assert view.readonly
        py_buf_writable = 0x0001
        with pytest.raises(BufferError, match="read-only"):
            _get_buffer(exposure, ctypes.byref(_PyBuffer()), py_buf_writable)


def test_an_exposure_is_readable_only_inside_its_block() -> None:
    cell = CypherCell(SECRET)
    exposure = cell.expose()
    with pytest.raises(BufferError, match="only inside"):
        memoryview(exposure)  # made but not entered
    with exposure as view:
        assert len(view) == len(SECRET)
    with pytest.raises(BufferError, match="only inside"):
        memoryview(exposure)  # after the block
    with pytest.raises(RuntimeError, match="opens once"), exposure:
        pass


def test_an_unentered_or_finished_exposure_does_not_hold_up_the_ttl() -> None:
    import time

    cell = CypherCell(SECRET, ttl_sec=0.1, protection="locked")
    address = cell_address(cell)
    unentered = cell.expose()
    finished = cell.expose()
    with finished:
        pass
    time.sleep(0.3)
    assert cell.wiped
    with pytest.raises(CellExpiredError):
        unentered.__enter__()
    assert ctypes_read(address, len(SECRET)) == bytes(len(SECRET))
    del unentered, finished


def test_a_volatile_cell_is_burned_by_entering_not_by_making_the_exposure() -> None:
    otp = CypherCell(b"492817", volatile=True)
    made = otp.expose()
    assert not otp.wiped
    assert otp.reveal() == b"492817"  # the one read
    with pytest.raises(CellWipedError):
        made.__enter__()
    del made


def test_an_abandoned_open_exposure_is_collected_and_releases_the_cell() -> None:
    import gc

    from cypher_cell._native import _pool_stats

    before = _pool_stats()["live_cells"]
    for _ in range(200):
        cell = CypherCell(SECRET)
        cell.expose().__enter__()  # entered, never exited, dropped
        del cell
    gc.collect()
    assert _pool_stats()["live_cells"] <= before


def test_volatile_burns_after_one_reveal() -> None:
    otp = CypherCell(b"492817", volatile=True)
    assert otp.volatile
    assert otp == b"492817"  # comparing does not burn
    assert otp.reveal_masked(suffix_len=2) == "****17"  # masked display does not burn
    assert otp.reveal() == b"492817"
    assert otp.wiped
    with pytest.raises(CellWipedError, match="burned"):
        otp.reveal()


def test_volatile_burns_after_one_exposure() -> None:
    otp = CypherCell(b"492817", volatile=True)
    with otp.expose() as view:
        assert view == b"492817"
        with pytest.raises(CellWipedError):
            otp.reveal()
        with pytest.raises(CellWipedError):
            otp.expose()
    assert otp.wiped


RELEASED = "operation forbidden on released memoryview object"


def test_every_view_made_inside_the_block_dies_with_it() -> None:
    cell = CypherCell(SECRET)
    exposure = cell.expose()
    with exposure as view:
        views = {
            "slice": view[:],
            "part": view[3:9],
            "memoryview": memoryview(view),
            "cast": view.cast("c"),
            "direct": memoryview(exposure),  # a second export of the exposure
            "nested": memoryview(view[:])[1:],
        }
        assert all(len(v) > 0 for v in views.values())
    for name, kept in views.items():
        with pytest.raises(ValueError, match=RELEASED):
            kept.tobytes()
        with pytest.raises(ValueError, match=RELEASED):
            bytes(kept)
        assert name
    assert cell == SECRET


@pytest.mark.parametrize("protection", ["secretmem", "locked"])
def test_a_view_exported_again_outlives_the_block_and_is_zeroed_by_wipe(protection: str) -> None:
    """The documented exception: a view another object holds a buffer of
    (here a PickleBuffer; a NumPy array is another) cannot be released, so it
    keeps reading the cell's bytes after the block; `wipe()` zeroes them in
    place, and the memory stays mapped until that object lets go."""
    import os

    from support.procfs import maps, read_memory

    cell = CypherCell(SECRET, protection=protection)  # type: ignore[arg-type]
    address = cell_address(cell)
    with cell.expose() as view:
        held = pickle.PickleBuffer(view[:])
    assert cell == memoryview(held)
    cell.wipe()
    stale = memoryview(held)
    assert stale.tobytes() == bytes(len(SECRET))
    assert any(address in m and m.perms.startswith("r") for m in maps()), "still mapped"
    if protection == "locked":  # the kernel's view (secretmem is unreadable through /proc)
        assert read_memory(os.getpid(), address, len(SECRET)) == bytes(len(SECRET))
    stale.release()
    del held


def test_views_kept_past_a_burn_are_released() -> None:
    otp = CypherCell(b"492817", volatile=True)
    with otp.expose() as view:
        kept = view[:]  # a second view of the same export
        held = pickle.PickleBuffer(view[:])
    with pytest.raises(ValueError, match=RELEASED):
        kept.tobytes()
    assert memoryview(held).tobytes() == bytes(6), "burned: zeros, not freed memory"
    del held


def test_equality_is_by_value_and_typed() -> None:
    a, b = CypherCell(SECRET), CypherCell(SECRET)
    assert a == b
    assert a == a  # noqa: PLR0124 - a cell equals itself
    assert a == SECRET
    assert a == bytearray(SECRET)
    assert a == memoryview(SECRET)
    assert a == SECRET.decode()
    assert a != CypherCell(b"other")
    assert a != SECRET + b"5"
    assert a != SECRET[:-1] + b"5"
    assert (a == 1234) is False
    assert a != 1234
    assert a != None  # noqa: E711


def test_comparing_a_wiped_cell_raises() -> None:
    a = CypherCell(SECRET)
    a.wipe()
    with pytest.raises(CellWipedError):
        _ = a == SECRET


def test_unhashable_unpicklable_uncopyable() -> None:
    cell = CypherCell(SECRET)
    with pytest.raises(TypeError, match="unhashable"):
        hash(cell)
    with pytest.raises(TypeError):
        {cell}  # noqa: B018
    for dump in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            dump(cell)
    with pytest.raises(TypeError):
        pickle.dumps(cell, protocol=0)


def test_final_class_and_weakrefs() -> None:
    with pytest.raises(TypeError):

        class Sub(CypherCell):  # type: ignore[misc]
            pass

    cell = CypherCell(SECRET)
    ref = weakref.ref(cell)
    assert ref() is cell


def test_protection_reports_the_tier_asked_for() -> None:
    for tier in ("secretmem", "locked", "unlocked"):
        assert CypherCell(SECRET, protection=tier).protection == tier  # type: ignore[arg-type]
    assert CypherCell(SECRET).protection in ("secretmem", "locked")


def test_ttl_expires_reads() -> None:
    import time

    cell = CypherCell(SECRET, ttl_sec=0.05)
    assert cell.ttl_sec == 0.05
    assert cell.reveal() == SECRET
    time.sleep(0.1)
    with pytest.raises(CellExpiredError):
        cell.reveal()
    assert cell.wiped


BAD_TTLS = {
    "1e308": (1e308, ValueError, "got 1e+308"),
    "-1e308": (-1e308, ValueError, "got -1e+308"),
    "just-over": (1e12 + 1, ValueError, "got 1000000000001.0"),
    "int-1e20": (10**20, ValueError, "got 1e+20"),
    "int--1e20": (-(10**20), ValueError, "got -1e+20"),
    "int-1e400": (10**400, ValueError, "got an int too large for a float"),
    "int-1e5000": (10**5000, ValueError, "got an int too large for a float"),  # past str()'s limit
    "nan": (float("nan"), ValueError, "got nan"),
    "inf": (float("inf"), ValueError, "got inf"),
    "-inf": (float("-inf"), ValueError, "got -inf"),
    "-5": (-5, ValueError, "got -5"),
    "0": (0, ValueError, "got 0"),
    "-0.0": (-0.0, ValueError, "got -0.0"),
    "bool": (True, TypeError, "not bool"),
    "str": ("10", TypeError, "not str"),
    "bytes": (b"10", TypeError, "not bytes"),
}


@pytest.mark.parametrize(("ttl", "exc", "shown"), BAD_TTLS.values(), ids=BAD_TTLS.keys())
def test_a_bad_ttl_gets_one_short_message_from_policy_and_cell(ttl: object, exc: type, shown: str) -> None:
    import re

    from cypher_cell import Policy

    with pytest.raises(exc) as from_policy:
        Policy(ttl_sec=ttl)  # type: ignore[arg-type]
    with pytest.raises(exc) as from_cell:
        CypherCell(b"x", ttl_sec=ttl)  # type: ignore[arg-type]
    message = str(from_cell.value)
    assert str(from_policy.value) == "Policy." + message, "the same rule and words on both sides"
    assert message.startswith("ttl_sec must be")
    assert shown in message
    assert len(message) < 160
    assert re.search(r"\d{17}", message) is None


def test_the_largest_ttl_is_accepted_by_policy_and_cell() -> None:
    from cypher_cell import Policy

    for ttl in (1e12, 10**12, 5e-324):  # the smallest float: expired at once, but valid
        assert Policy(ttl_sec=ttl).ttl_sec == ttl
        cell = CypherCell(b"x", ttl_sec=ttl)
        assert cell.ttl_sec == ttl
        assert cell.wiped is (ttl < 1)


def test_errors_never_carry_the_secret() -> None:
    cell = CypherCell(SECRET, volatile=True)
    cell.reveal()
    messages = []
    for action in (cell.reveal, cell.expose, lambda: cell == SECRET, lambda: cell.reveal_masked(1)):
        with pytest.raises(CellWipedError) as info:
            action()
        messages.append(str(info.value) + repr(info.value))
    assert all(b"7721" not in m.encode() and "1234" not in m for m in messages)


def test_a_str_that_is_not_valid_unicode_is_refused_without_carrying_it() -> None:
    text = "PLANTED-SURROGATE-7\udcff"
    for attempt in (lambda: CypherCell(text), lambda: CypherCell(b"x") == text):
        with pytest.raises(ValueError, match="lone surrogate") as info:
            attempt()
        exc = info.value
        carried = "PLANTED" in repr(exc.args) + repr(exc) + repr(exc.__cause__) + repr(exc.__context__)
        assert not carried, "the error must not carry the string"


def test_one_native_policy_is_what_every_constructor_takes() -> None:
    """`Policy` is the native type: checked once when made, and taken as it
    is by `CypherCell(policy=...)` and the providers' native halves."""
    from cypher_cell import Policy, _native

    assert Policy is _native.Policy
    cell = CypherCell(b"x", policy=Policy(ttl_sec=30, volatile=True, protection="unlocked"))
    assert (cell.volatile, cell.ttl_sec, cell.protection) == (True, 30, "unlocked")
    with pytest.raises(TypeError, match="not both"):
        CypherCell(b"x", policy=Policy(), volatile=True)
    with pytest.raises(TypeError, match="not both"):
        CypherCell(b"x", policy=Policy(), ttl_sec=5)
    with pytest.raises(TypeError):
        CypherCell(b"x", policy={"volatile": True})  # type: ignore[arg-type]
    match Policy(5, True):
        case Policy(ttl, volatile, protection):
            assert (ttl, volatile, protection) == (5, True, "auto")
    assert Policy(ttl_sec=1.5).describe() == "ttl 1.5s" and Policy().describe() == "default"
    assert Policy(5) == Policy(5.0) and hash(Policy(5)) == hash(Policy(5.0))
