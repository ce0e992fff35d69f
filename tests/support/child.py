"""A Python child for the tests to look at from outside: it runs a piece of
code after a small prelude, prints one JSON report, and waits (`hold()`)
until the parent closes its stdin, so the parent can read its memory through
/proc/PID/mem (support.procfs) before it exits.

The prelude puts tests/ on the child's sys.path, as pyproject's
`pythonpath` does for pytest, so a child can `from support.procfs import ...`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.procfs import random_secret

TESTS = str(Path(__file__).resolve().parent.parent)


@dataclass
class Child:
    """A Python child that runs `code`, prints one JSON line, then waits for
    stdin to close (so the parent can inspect it) before exiting."""

    proc: subprocess.Popen[str]
    report: dict[str, object]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def finish(self) -> str:
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err[-2000:]
        return out


CHILD_PRELUDE = f"""
import gc, json, os, sys, time
sys.path.insert(0, {TESTS!r})
from cypher_cell import CypherCell

def report(**kw):
    print(json.dumps(kw), flush=True)

def hold():
    sys.stdin.read()

def read_secret(path, times=1):
    # Straight from the file into a bytearray: no buffered copy, no temporaries.
    size = os.path.getsize(path)
    buf = bytearray(size * times)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        for i in range(times):
            f.seek(0)
            f.readinto(view[i * size : (i + 1) * size])
    view.release()
    return buf
"""


def start_child(code: str, *args: str, env: dict[str, str] | None = None, **popen: object) -> Child:
    script = CHILD_PRELUDE + textwrap.dedent(code)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **popen,  # type: ignore[call-overload]
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"child failed before reporting:\n{err[-3000:]}")
    return Child(proc, json.loads(line))


def run_child(code: str, *args: str, **kw: object) -> dict[str, object]:
    """Runs `code` in a child to completion and returns its JSON report."""
    child = start_child(code + "\nhold()\n", *args, **kw)  # type: ignore[arg-type]
    child.finish()
    return child.report


@pytest.fixture
def secret_file() -> Iterator[tuple[bytes, Path]]:
    """A new random secret, and a file holding it for a child to read (so
    the child obtains it itself, not from its arguments); removed after."""
    secret = random_secret()
    fd, path = tempfile.mkstemp(prefix="cc-secret-")
    os.write(fd, secret)
    os.close(fd)
    yield secret, Path(path)
    os.unlink(path)
