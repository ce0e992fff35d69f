"""What the `.env` tests share: writing a file, the environment the
interpolation cases refer to, a FIFO's writer, hypothesis' settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

#: The environment the interpolation cases see (`interpolation_environment`).
ENV = {"CC_TEST_EXT": "ext-value", "CC_TEST_EMPTY": ""}

HYPOTHESIS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def write(directory: Path, content: str | bytes, name: str = ".env", mode: int = 0o600) -> Path:
    """`content` (a str is written as UTF-8) in `directory/name`, with `mode`."""
    path = directory / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)
    return path


@contextmanager
def interpolation_environment() -> Iterator[None]:
    """os.environ holds ENV inside the block and what it held before after it."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        yield


def fifo_writer(path: Path, data: bytes) -> threading.Thread:
    """A thread that opens the FIFO at `path`, writes `data` and closes it
    (a reader that stops early is fine)."""

    def run() -> None:
        try:
            with open(path, "wb") as f:
                f.write(data)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
