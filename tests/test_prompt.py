"""Prompt, through real pseudo-terminals.

Most tests run a child Python whose controlling terminal is the slave side
of a pty (a new session, then TIOCSCTTY), while the test plays the person at
the keyboard on the master side: it waits for each prompt, then types. The
kernel's own view of the terminal (tcgetattr on the master reports the
slave's modes) shows echo off while the prompt waits. The contract tests run
in this process, with `tty_path` naming a pty that a thread answers.

Typed values never appear in an assertion message: what the terminal showed
is reported with every typed value replaced by ``<typed>``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.child import CHILD_PRELUDE
from support.procfs import random_secret, scan_memory, secret_forms
from support.provider_contract import ProviderContract, value_in_traceback

from cypher_cell import CellWipedError, Policy, ProviderUnavailableError, _native, load_secrets
from cypher_cell.providers import Prompt, Provider

TIMEOUT = 30.0

CHILD_SETUP = """
import fcntl, termios
from cypher_cell import Policy, load_secrets, _native
from cypher_cell.errors import ProviderUnavailableError
from cypher_cell.providers import Entry, Prompt, Provider

if sys.argv[1] != "-":
    # A session leader (start_new_session) takes the pty as its controlling
    # terminal; it becomes the terminal's foreground process group. The
    # descriptor stays open: with no slave open, the master reads EIO.
    fcntl.ioctl(int(sys.argv[1]), termios.TIOCSCTTY, 0)

def tty_attrs():
    fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    try:
        return termios.tcgetattr(fd)
    finally:
        os.close(fd)

def expected(i=2):
    return read_secret(sys.argv[i])

class Fixed(Provider):
    # An earlier source that already has some keys.
    kind = "fixed"

    def __init__(self, keys):
        self.keys = keys

    def offered_keys(self):
        return self.keys

    def load(self, keys, policy):
        return {k: Entry(CypherCell(b"from-fixed"), "fixed") for k in keys}
"""


@dataclass
class Keyboard:
    """The person at a pty's master side: reads what is shown, types."""

    master: int
    # repr=False: a failing test's traceback must not print what was typed.
    shown: bytearray = field(default_factory=bytearray, repr=False)
    typed: list[bytes] = field(default_factory=list, repr=False)

    def shows_typed(self, *pieces: bytes) -> bool:
        """Whether any typed line (or one of `pieces`) was shown: a bool, so
        a failing assertion prints no value."""
        lines = [part for keys in self.typed for part in keys.split(b"\r") if len(part) > 2]
        return any(piece in self.shown for piece in [*lines, *pieces])

    def redacted(self) -> bytes:
        out = bytes(self.shown)
        for keys in sorted(self.typed, key=len, reverse=True):
            for part in keys.split(b"\r"):
                if len(part) > 2:
                    out = out.replace(part.rstrip(b"\n"), b"<typed>")
        return out

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: no process has the terminal open any more
            chunk = b""
        self.shown += chunk
        return bool(chunk)

    def wait_for(self, text: bytes) -> None:
        deadline = time.monotonic() + TIMEOUT
        while text not in self.shown:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError(f"{text!r} never shown; the terminal showed {self.redacted()!r}")

    def wait_for_prompt(self, text: bytes) -> None:
        """Waits for `text` as the last thing shown: the prompt now waiting."""
        self.wait_for(text)
        if not self.shown.endswith(text):
            raise AssertionError(f"{text!r} is not the last thing shown: {self.redacted()!r}")

    def type(self, keys: bytes) -> None:
        self.typed.append(keys)
        os.write(self.master, keys)

    def drain(self, quiet_for: float = 0.2) -> bytes:
        """Reads until nothing arrives for `quiet_for` seconds or the terminal closes."""
        while select.select([self.master], [], [], quiet_for)[0] and self._read(0):
            pass
        return bytes(self.shown)

    def echo_on(self) -> bool:
        return bool(termios.tcgetattr(self.master)[3] & termios.ECHO)


@dataclass
class TtyChild:
    proc: subprocess.Popen[str]
    keyboard: Keyboard

    def finish(self) -> str:
        out, err = self.proc.communicate(input="", timeout=TIMEOUT)
        assert self.proc.returncode == 0, err[-3000:]
        self.keyboard.drain()
        return out

    def report(self) -> dict[str, object]:
        """Lets the child finish and returns its JSON report."""
        return dict(json.loads(self.finish().strip().splitlines()[-1]))

    def first_report(self) -> dict[str, object]:
        """The child's report while it keeps running (it holds until stdin closes)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        assert ready, "the child did not report"
        line = self.proc.stdout.readline()
        assert line, "the child ended without reporting"
        return dict(json.loads(line))


Start = Callable[..., TtyChild]


@pytest.fixture
def tty_child() -> Iterator[Start]:
    started: list[TtyChild] = []

    def start(code: str, *files: Path, terminal: bool = True) -> TtyChild:
        master, slave = os.openpty()
        script = CHILD_PRELUDE + CHILD_SETUP + textwrap.dedent(code)
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(slave) if terminal else "-", *map(str, files)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(slave,) if terminal else (),
            start_new_session=True,
        )
        os.close(slave)
        child = TtyChild(proc, Keyboard(master))
        started.append(child)
        return child

    yield start
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.communicate(timeout=TIMEOUT)
        os.close(child.keyboard.master)


# --- through the controlling terminal -------------------------------------


def test_the_answer_goes_into_the_cell_and_is_never_shown(tty_child: Start, tmp_path: Path) -> None:
    secret = random_secret()  # a local, not a fixture: pytest prints fixture values on failure
    path = tmp_path / "expected"
    path.write_bytes(secret)
    child = tty_child(
        """
        before = tty_attrs()
        store = load_secrets(Prompt(["API_KEY"]))
        report(
            equal=store["API_KEY"] == expected(),
            source=store.source("API_KEY"),
            same_attrs=tty_attrs() == before,
        )
        """,
        path,
    )
    keys = child.keyboard
    keys.wait_for_prompt(b"API_KEY: ")
    assert not keys.echo_on()
    keys.type(secret + b"\r")  # Enter sends "\r"; ICRNL makes it "\n"
    report = child.report()
    assert report == {"equal": True, "source": "prompt (terminal)", "same_attrs": True}
    assert keys.echo_on()
    assert not keys.shows_typed()
    assert keys.redacted() == b"API_KEY: \r\n"  # the prompt, then the newline echo did not show


def test_line_editing_works_with_echo_off(tty_child: Start) -> None:
    child = tty_child(
        """
        cell = _native.prompt_cell("Password: ")
        report(edited=cell == b"right-value", empty=_native.prompt_cell("Empty: ") == b"")
        """
    )
    keys = child.keyboard
    keys.wait_for_prompt(b"Password: ")
    keys.type(b"wrong" + b"\x7f" * 5 + b"right-value\r")  # DEL is VERASE
    keys.wait_for_prompt(b"Empty: ")
    keys.type(b"\r")
    assert child.report() == {"edited": True, "empty": True}
    assert not keys.shows_typed(b"wrong", b"right")


def test_carriage_return_before_the_newline_is_stripped(tty_child: Start) -> None:
    child = tty_child(
        """
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        attrs = termios.tcgetattr(fd)
        attrs[0] &= ~termios.ICRNL  # "\\r" now arrives as itself
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        os.close(fd)
        before = tty_attrs()
        cell = _native.prompt_cell("K: ")
        report(stripped=cell == b"value", same_attrs=tty_attrs() == before)
        """
    )
    child.keyboard.wait_for_prompt(b"K: ")
    child.keyboard.type(b"value\r\n")
    assert child.report() == {"stripped": True, "same_attrs": True}


def test_ctrl_c_raises_keyboard_interrupt_with_the_terminal_restored(tty_child: Start) -> None:
    child = tty_child(
        """
        made = []
        real = _native.prompt_cell
        def recording(*args, **kwargs):
            made.append(real(*args, **kwargs))
            return made[-1]
        _native.prompt_cell = recording

        before = tty_attrs()
        try:
            load_secrets(Prompt(["FIRST", "SECOND"]))
            outcome = "returned"
        except KeyboardInterrupt:
            outcome = "KeyboardInterrupt"
        same_attrs = tty_attrs() == before
        after = real("AFTER: ")
        report(
            outcome=outcome,
            same_attrs=same_attrs,
            first_made_and_wiped=len(made) == 1 and made[0].wiped,
            half_typed_discarded=after == b"after",
        )
        """
    )
    keys = child.keyboard
    keys.wait_for_prompt(b"FIRST: ")
    keys.type(b"first-value\r")
    keys.wait_for_prompt(b"SECOND: ")
    assert not keys.echo_on()
    keys.type(b"half-typed")
    time.sleep(0.1)
    keys.type(b"\x03")  # Ctrl-C: VINTR, SIGINT to the foreground process group
    keys.wait_for_prompt(b"AFTER: ")
    keys.type(b"after\r")
    assert child.report() == {
        "outcome": "KeyboardInterrupt",
        "same_attrs": True,
        "first_made_and_wiped": True,
        "half_typed_discarded": True,
    }
    assert keys.echo_on()


def test_an_over_long_answer_is_discarded_and_named_by_its_limit(tty_child: Start) -> None:
    child = tty_child(
        """
        before = tty_attrs()
        try:
            _native.prompt_cell("K: ", max_len=8)
            message = None
        except ValueError as exc:
            message = str(exc)
        same_attrs = tty_attrs() == before
        report(message=message, same_attrs=same_attrs, next_answer=_native.prompt_cell("AGAIN: ") == b"short")
        """
    )
    keys = child.keyboard
    keys.wait_for_prompt(b"K: ")
    typed = b"0123456789abcdef-overlong"
    keys.type(typed + b"\r")
    keys.wait_for_prompt(b"AGAIN: ")
    keys.type(b"short\r")
    report = child.report()
    message = str(report.pop("message"))
    assert report == {"same_attrs": True, "next_answer": True}  # the rest of the line was not left over
    leaked = typed[:8].decode() in message or typed[-8:].decode() in message
    assert not leaked  # checked first: a failing `in` would print the message
    assert "max_len=8" in message
    assert not keys.shows_typed(b"0123")


def test_a_line_the_kernel_may_have_cut_short_is_refused(tty_child: Start) -> None:
    """n_tty keeps 4095 bytes of a line and drops the rest silently: a line
    that long is refused, one byte shorter is accepted."""
    child = tty_child(
        """
        try:
            _native.prompt_cell("LONG: ")
            message = None
        except ValueError as exc:
            message = str(exc)
        cell = _native.prompt_cell("LONGEST: ")
        with cell.expose() as view:
            report(message=message, longest=len(view))
        """
    )
    keys = child.keyboard
    keys.wait_for_prompt(b"LONG: ")
    keys.type(b"x" * 5000 + b"\r")
    keys.wait_for_prompt(b"LONGEST: ")
    keys.type(b"y" * 4094 + b"\r")
    report = child.report()
    assert report["longest"] == 4094
    leaked = "xxxx" in str(report["message"])
    assert not leaked
    assert "longer than 4094 bytes" in str(report["message"])


def test_ctrl_d_before_an_answer_is_eof_naming_the_key(tty_child: Start) -> None:
    child = tty_child(
        """
        before = tty_attrs()
        try:
            load_secrets(Prompt(["TOKEN"]))
            message = None
        except EOFError as exc:
            message = str(exc)
        report(message=message, same_attrs=tty_attrs() == before)
        """
    )
    child.keyboard.wait_for_prompt(b"TOKEN: ")
    child.keyboard.type(b"\x04")
    report = child.report()
    assert report["same_attrs"] is True
    assert "end of input" in str(report["message"]) and "TOKEN" in str(report["message"])


def test_prompt_without_keys_asks_only_the_required_keys_still_missing(tty_child: Start) -> None:
    child = tty_child(
        """
        store = load_secrets(Prompt(), required=["A", "B"], keys=["A", "B", "C"])
        report(keys=list(store), a=store["A"] == b"a-answer", b=store["B"] == b"b-answer")
        """
    )
    keys = child.keyboard
    keys.wait_for_prompt(b"A: ")
    keys.type(b"a-answer\r")
    keys.wait_for_prompt(b"B: ")
    keys.type(b"b-answer\r")
    assert child.report() == {"keys": ["A", "B"], "a": True, "b": True}
    assert b"C: " not in keys.redacted()


@pytest.mark.parametrize(("earlier", "asked"), [(["A", "B"], []), (["A"], [b"B: "])])
def test_prompt_asks_nothing_an_earlier_source_supplied(
    tty_child: Start, earlier: list[str], asked: list[bytes]
) -> None:
    child = tty_child(
        f"""
        store = load_secrets(Fixed({earlier!r}), Prompt(), required=["A", "B"], keys=["A", "B", "C"])
        report(sources={{k: store.source(k) for k in store}})
        """
    )
    keys = child.keyboard
    for prompt in asked:
        keys.wait_for_prompt(prompt)
        keys.type(b"typed-answer\r")
    sources = child.report()["sources"]
    assert sources == {k: "fixed" if k in earlier else "prompt (terminal)" for k in ["A", "B"]}
    keys.drain()
    assert keys.redacted() == b"".join(p + b"\r\n" for p in asked)


def test_no_controlling_terminal_is_provider_unavailable(tty_child: Start) -> None:
    child = tty_child(
        """
        outcomes = []
        for attempt in (lambda: load_secrets(Prompt(), required=["DB_PASSWORD"]),
                        lambda: _native.prompt_cell("K: ")):
            try:
                attempt()
                outcomes.append(None)
            except ProviderUnavailableError as exc:
                outcomes.append(str(exc))
        report(outcomes=outcomes)
        """,
        terminal=False,
    )
    load_message, native_message = child.report()["outcomes"]  # type: ignore[misc]
    assert load_message.startswith("prompt: no controlling terminal (/dev/tty: open failed:")
    assert load_message.endswith("; asking for DB_PASSWORD")
    assert native_message.startswith("prompt: no controlling terminal")
    assert child.keyboard.drain() == b""


def test_the_gil_is_released_while_waiting_for_the_answer(tty_child: Start) -> None:
    child = tty_child(
        """
        import threading
        ticks = []
        done = threading.Event()
        def tick():
            while not done.wait(0.01):
                ticks.append(1)
        threading.Thread(target=tick).start()
        cell = _native.prompt_cell("K: ")
        done.set()
        report(ticks=len(ticks))
        """
    )
    child.keyboard.wait_for_prompt(b"K: ")
    time.sleep(0.5)
    child.keyboard.type(b"x\r")
    assert int(child.report()["ticks"]) >= 10  # type: ignore[call-overload]


def test_prompts_from_two_threads_take_turns(tty_child: Start) -> None:
    """Interleaved, the second prompt would save the first's echo-off modes
    as the ones to restore, leaving echo off for good."""
    child = tty_child(
        """
        import threading
        before = tty_attrs()
        results = {}
        def ask(name):
            results[name] = _native.prompt_cell(f"{name}: ") == f"{name}-answer".encode()
        threads = [threading.Thread(target=ask, args=(name,)) for name in ("P1", "P2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report(results=results, same_attrs=tty_attrs() == before)
        """
    )
    keys = child.keyboard
    keys.wait_for(b": ")
    keys.drain(0.3)
    first, second = (b"P1", b"P2") if keys.redacted().startswith(b"P1") else (b"P2", b"P1")
    assert keys.redacted() == first + b": "  # the other thread waits for its turn
    keys.type(first + b"-answer\r")
    keys.wait_for_prompt(second + b": ")
    keys.type(second + b"-answer\r")
    assert child.report() == {"results": {"P1": True, "P2": True}, "same_attrs": True}
    assert keys.echo_on()


@pytest.mark.parametrize("protection", ["locked", "unlocked"])
@pytest.mark.parametrize("ending", ["closed", "control-store-open", "control-reveal-kept"])
def test_nothing_is_left_behind(tty_child: Start, protection: str, ending: str) -> None:
    """The child answers a random secret through the terminal, closes the
    store, then holds still while this process scans its memory. Controls:
    the cell itself is found while the store is open (the scan reads the
    cell's tier), and `reveal()`'s bytes are found when the child keeps them."""
    secret = random_secret()
    child = tty_child(
        f"""
        policy = {{"TOKEN": Policy(protection={protection!r})}}
        store = load_secrets(Prompt(), required=["TOKEN"], policy=policy)
        with store["TOKEN"].expose() as view:
            length = len(view)
        kept = store["TOKEN"].reveal() if {ending!r} == "control-reveal-kept" else None
        if {ending!r} != "control-store-open":
            store.close()
        gc.collect()
        report(length=length, wiped=store["TOKEN"].wiped)
        hold()
        """
    )
    keys = child.keyboard
    keys.wait_for_prompt(b"TOKEN: ")
    keys.type(secret + b"\r")
    report = child.first_report()
    copies = scan_memory(child.proc.pid, secret_forms(secret)).copies
    child.finish()
    assert report == {"length": len(secret), "wiped": ending != "control-store-open"}
    if ending == "closed":
        assert copies == 0
    elif ending == "control-store-open":
        assert copies == 1  # the cell, and nothing else
    else:
        assert copies >= 1
    assert not keys.shows_typed()


# --- in this process, through tty_path -------------------------------------


class Typist:
    """Answers prompts on a pty from a thread (the pty is opened by path,
    so it is not this process's controlling terminal)."""

    def __init__(self, answers: Mapping[str, bytes], template: str = "{key}: ") -> None:
        master, self._slave = os.openpty()
        self.keyboard = Keyboard(master)
        self.path = os.ttyname(self._slave)
        self._answers = {template.format(key=k).encode(): v for k, v in answers.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.keyboard._read(0.02):
                return
            for prompt, value in self._answers.items():
                if self.keyboard.shown.endswith(prompt):
                    self.keyboard.type(value + b"\r")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        os.close(self._slave)
        os.close(self.keyboard.master)


class TestPromptContract(ProviderContract):
    enumerable = True

    @pytest.fixture(autouse=True)
    def _typists(self) -> Iterator[None]:
        self.typists: list[Typist] = []
        yield
        for typist in self.typists:
            typist.close()
            assert not typist.keyboard.shows_typed()

    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        typist = Typist(planted)
        self.typists.append(typist)
        return Prompt(list(planted), tty_path=typist.path)


@pytest.fixture
def typist() -> Iterator[Typist]:
    t = Typist({"K": b"value"})
    yield t
    t.close()


def test_policy_reaches_the_cell(typist: Typist) -> None:
    store = load_secrets(
        Prompt(["K"], tty_path=typist.path), policy={"K": Policy(volatile=True, protection="locked")}
    )
    cell = store["K"]
    assert (cell.volatile, cell.protection, store.source("K")) == (True, "locked", f"prompt ({typist.path})")
    assert cell.reveal() == b"value"
    with pytest.raises(CellWipedError):
        cell.reveal()


def test_a_custom_prompt_template_is_shown() -> None:
    typist = Typist({"K": b"value"}, template="Enter {key}? ")
    try:
        prompt = Prompt(["K"], prompt="Enter {key}? ", tty_path=typist.path)
        assert prompt.load(["K"], lambda key: Policy())["K"].cell == b"value"
    finally:
        typist.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"max_len": 0}, {"max_len": -1}, {"policy": "locked"}, {"policy": {"ttl_sec": 1}}],
)
def test_bad_arguments_are_refused_before_the_terminal_is_touched(
    typist: Typist, kwargs: dict[str, object]
) -> None:
    attrs = termios.tcgetattr(typist.keyboard.master)
    with pytest.raises((ValueError, TypeError)):
        _native.prompt_cell("K: ", tty_path=typist.path, **kwargs)  # type: ignore[arg-type]
    time.sleep(0.05)  # the typist thread reads whatever is shown
    assert bytes(typist.keyboard.shown) == b""
    assert termios.tcgetattr(typist.keyboard.master) == attrs


@pytest.mark.parametrize(
    ("path", "says"),
    [("/dev/null", "/dev/null is not a terminal"), ("/nonexistent/tty", "no terminal at /nonexistent/tty")],
)
def test_what_is_not_a_terminal_is_provider_unavailable(path: str, says: str) -> None:
    with pytest.raises(ProviderUnavailableError, match=says):
        load_secrets(Prompt(["K"], tty_path=path))


def test_constructor_checks() -> None:
    with pytest.raises(TypeError):
        Prompt("DB_PASSWORD")
    with pytest.raises(TypeError):
        Prompt(["A", ""])
    with pytest.raises(ValueError, match="only field is"):
        Prompt(prompt="{name}: ")
    with pytest.raises(ValueError, match="only field is"):
        Prompt(prompt="{}: ")
    asking = Prompt()
    assert asking.offered_keys() is None and asking.interactive
    listed = Prompt(["B", "A", "B"])
    assert listed.offered_keys() == ("B", "A") and not listed.interactive
    assert repr(listed) == "<Prompt prompt (terminal)>"


def test_an_answer_refused_after_reading_leaves_no_value_in_traceback_locals() -> None:
    """An over-long answer is read, then refused: the error's traceback, as
    a reporter capturing locals records it, holds no piece of the answer."""
    secret = random_secret()
    typist = Typist({"K": secret * 100})  # 4,700 bytes: over the 4,094-byte line limit
    try:
        error = _refusal(Prompt(["K"], tty_path=typist.path))
    finally:
        typist.close()
    assert isinstance(error, ValueError) and "longer than 4094 bytes" in str(error)
    places = value_in_traceback(error, secret)
    assert places == []


def _refusal(prompt: Prompt) -> BaseException:
    try:
        load_secrets(prompt)
    except BaseException as exc:
        return exc
    raise AssertionError("the answer was accepted")
