"""Running the command line: `run_cli` as a user runs it (a subprocess),
`run_main` in this process (for tests that look at what it prints only)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cypher_cell.cli import main


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`python -m cypher_cell ARGS`; `env` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "cypher_cell", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec,  # limits and capabilities must be set before exec
    )


def run_main(*argv: str) -> tuple[int, str]:
    """`cypher_cell.cli.main(argv)` here: its exit status, and its stdout and stderr joined."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue() + err.getvalue()
