"""install_log_redaction(): every record of every logger reaches every
handler masked. Each scenario runs in a child process (the LogRecord factory
and sys.stdout are process-wide), once with the redaction installed and once
without it, so each test shows that it sees the leak it guards against.
The child reads the secret from a file; the parent counts occurrences of the
value and its base64 form in what the child wrote, and never prints them."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.child import TESTS

PRELUDE = f"""
import io, logging, sys, warnings
sys.path.insert(0, {TESTS!r})
from cypher_cell import CypherCell, install_log_redaction
secret_path, install = sys.argv[1], sys.argv[2] == "1"
with open(secret_path, "rb") as f:
    cell = CypherCell(f.read())
value = cell.reveal().decode()
"""


def run(tmp_path: Path, code: str, install: bool) -> str:
    """Runs `code` (after PRELUDE) in a child; returns its stdout + stderr."""
    value = "sk_" + secrets.token_urlsafe(24)
    (tmp_path / "secret").write_text(value)
    script = PRELUDE + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "secret"), "1" if install else "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": ""},
    )
    if proc.returncode != 0:
        # stderr may hold the value in the unmasked runs: show its length only.
        raise AssertionError(f"child exited {proc.returncode} ({len(proc.stderr)} bytes on stderr)")
    out = proc.stdout + proc.stderr
    leaks = out.count(value) + out.count(base64.b64encode(value.encode()).decode()[:-4])
    return f"{leaks} {out.count('[REDACTED]')}"


def check(tmp_path: Path, code: str, redacted_at_least: int = 1) -> None:
    leaked, shown = (int(x) for x in run(tmp_path, code, install=True).split())
    assert leaked == 0, "a value reached the output"
    assert shown >= redacted_at_least
    leaked_without, _ = (int(x) for x in run(tmp_path, code, install=False).split())
    assert leaked_without > 0, "the scenario does not expose the value without redaction"


def test_percent_args_fstrings_and_extra(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s %(user)s")
        if install:
            install_log_redaction()
        log = logging.getLogger("app")
        log.info("connecting with %s", value, extra={"user": "u"})
        log.info(f"dsn=postgres://app:{value}@db/x", extra={"user": "u"})
        log.info("dict %r", {"token": value}, extra={"user": "u"})
        log.info("extra field", extra={"user": value})
        """,
        redacted_at_least=4,
    )


def test_exception_tracebacks_and_stack_info(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO)
        if install:
            install_log_redaction()
        log = logging.getLogger("app")
        try:
            raise ValueError(f"bad token {value}")
        except ValueError:
            log.exception("failed")
            log.error("again", exc_info=True)
        """,
        redacted_at_least=2,
    )


def test_stack_info(tmp_path: Path) -> None:
    # The stack text shows source lines: one of them holds the value (the
    # child writes that module itself, from the value it read).
    check(
        tmp_path,
        f"""
        logging.basicConfig(level=logging.INFO)
        if install:
            install_log_redaction()
        import importlib, os
        line = "    logging.getLogger('a').info('x', stack_info=True)  # " + value
        with open(os.path.join({str(tmp_path)!r}, "where.py"), "w") as f:
            f.write("import logging\\ndef here():\\n" + line + "\\n")
        sys.path.insert(0, {str(tmp_path)!r})
        importlib.import_module("where").here()
        """,
    )


def test_capture_warnings(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO)
        if install:
            install_log_redaction()
        logging.captureWarnings(True)
        warnings.warn(f"deprecated key {value}", stacklevel=1)
        """,
    )


def test_handlers_added_later_force_config_and_non_propagating_loggers(tmp_path: Path) -> None:
    check(
        tmp_path,
        """
        if install:
            install_log_redaction()
            install_log_redaction()  # idempotent
        logging.basicConfig(level=logging.INFO, force=True, format="root %(message)s")
        quiet = logging.getLogger("quiet")
        quiet.propagate = False
        own = logging.StreamHandler(sys.stdout)
        own.setFormatter(logging.Formatter("own %(message)s"))
        quiet.addHandler(own)
        quiet.setLevel(logging.INFO)
        quiet.info("secret is %s", value)
        logging.getLogger("x.y").warning("and %s", value)
        """,
        redacted_at_least=2,
    )


def test_installed_once_even_if_called_twice(tmp_path: Path) -> None:
    value = secrets.token_hex(8)
    (tmp_path / "s").write_text(value)
    code = """
    install_log_redaction(); first = logging.getLogRecordFactory()
    install_log_redaction(); print(first is logging.getLogRecordFactory())
    """
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), str(tmp_path / "s"), "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == "True"


def test_broken_format_args_do_not_raise_or_leak(tmp_path: Path) -> None:
    # logging's own error report prints a record's args; they are gone.
    check(
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO)
        if install:
            install_log_redaction()
        logging.getLogger("app").info("two %s %s", value)
        """,
        redacted_at_least=0,
    )


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_stdio_wrapping(tmp_path: Path, stream: str) -> None:
    check(
        tmp_path,
        f"""
        if install:
            install_log_redaction(stdio=True)
        out = sys.{stream}
        print("token:", value, file=out)
        half = len(value) // 2
        out.write(value[:half])
        out.write(value[half:] + "\\n")
        out.write("pem " + value[:5])
        out.flush()
        out.write(value[5:] + " end\\n")
        """,
        redacted_at_least=3,
    )


def test_import_cypher_cell_does_not_import_logging() -> None:
    # redact and install_log_redaction are exported by the package, but
    # logging is imported only when install_log_redaction() runs.
    code = "import sys, cypher_cell; print('logging' in sys.modules, callable(cypher_cell.redact))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "True"]


def test_stdio_masks_an_uncaught_traceback_and_keeps_the_stream_interface(tmp_path: Path) -> None:
    leaked, shown = (int(x) for x in run(tmp_path, UNCAUGHT, install=True).split())
    assert (leaked, shown) == (0, 1)
    leaked_without, _ = (int(x) for x in run(tmp_path, UNCAUGHT, install=False).split())
    assert leaked_without > 0


UNCAUGHT = """
if install:
    install_log_redaction(stdio=True)
assert sys.stdout.isatty() == sys.__stdout__.isatty() and sys.stderr.fileno() == 2
assert sys.stdout.encoding == sys.__stdout__.encoding
def hook(kind, err, tb):
    sys.__excepthook__(kind, err, tb)
    sys.stderr.flush()
    raise SystemExit(0)
sys.excepthook = hook
raise RuntimeError("token " + value)
"""
