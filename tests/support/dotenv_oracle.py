"""python-dotenv as the oracle of the `.env` parser: what `dotenv_values()`
gives for a file, and how many statements it warned about, compared with
DotenvFile key by key. Values are compared by `==` on cells; only key names
and counts can reach an assertion message.

The oracle is required, not optional: the test extra pins the release the
parser follows, and a missing oracle stops the run (conftest.py) rather than
skipping the comparisons.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from cypher_cell._native import DotenvFile


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def oracle(path: Path, **kw: Any) -> tuple[dict[str, str | None], int]:
    """python-dotenv's dict and how many statements it warned about."""
    handler = _Collect()
    logger = logging.getLogger("dotenv")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = dict(dotenv_values(path, **kw))
    finally:
        logger.removeHandler(handler)
    parse_warnings = [r for r in handler.records if "could not parse" in r.getMessage()]
    return values, len(parse_warnings) + len(caught)


def value_matches(f: DotenvFile, key: str, expected: str | None) -> bool:
    if expected is None:
        return not f.has_value(key)
    if not f.has_value(key):
        return False
    cell = f.cell(key)
    try:
        return cell == expected.encode("utf-8", "surrogateescape")
    finally:
        cell.wipe()


def differences(path: Path, **kw: Any) -> tuple[list[str], list[str], int, int]:
    """(python-dotenv's keys, our keys, python-dotenv's warning count, our
    problem count) and asserts every value matches, naming keys only."""
    expected, warned = oracle(path, **kw)
    with DotenvFile(str(path), **kw) as f:
        keys = set(f.keys())
        wrong = [k for k, v in expected.items() if k in keys and not value_matches(f, k, v)]
        assert wrong == [], "values differ for these keys"
        return list(expected), f.keys(), warned, len(f.problems())


def assert_same_as_oracle(path: Path, **kw: Any) -> None:
    theirs, ours, warned, problems = differences(path, **kw)
    assert warned == 0, "the corpus case makes python-dotenv warn: move it to WARNED"
    assert ours == theirs
    assert problems == 0
