"""The matcher is not a leak: what it derives from a secret (the encoded
forms) lives in the cell's own tier of memory and is zeroed when the cell is
wiped. A child reads a secret from a file into a cell, uses redaction
(redact(), a stream, the log factory), and the test reads its whole memory
through /proc/PID/mem for the value (raw, UTF-16/32) and its base64 forms.
Controls: the same child with an unlocked cell shows the base64 forms (so
the scanner sees the matcher's copies when they are readable)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from support.child import start_child
from support.procfs import scan_memory, secret_forms

from cypher_cell._native import _probe


def base64_forms(secret: bytes) -> list[bytes]:
    """The base64 characters that depend on the secret alone, at each of the
    three alignments, standard and URL-safe alphabets."""
    out = []
    for align in range(3):
        first, last = -(-8 * align // 6), (8 * align + 8 * len(secret)) // 6
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            out.append(enc(b"\0" * align + secret)[first:last])
    return sorted(set(out))


USE = """
import logging
from cypher_cell import redact, install_log_redaction
from cypher_cell._native import RedactStream
cell = CypherCell(read_secret(sys.argv[1]), wipe_source=True, protection=sys.argv[2])
install_log_redaction()
logging.getLogger("app").warning("nothing secret here %s", 42)
assert redact(b"plain text, no secret in it " * 100).startswith(b"plain")
stream = RedactStream()
stream.feed(b"more plain text\\n" * 100)
stream.finish()
"""


def scan(secret: bytes, path: Path, protection: str, wipe: bool) -> tuple[int, int]:
    code = USE + ("cell.wipe()\n" if wipe else "") + "report(done=True)\nhold()\n"
    child = start_child(code, str(path), protection)
    try:
        raw = scan_memory(child.pid, secret_forms(secret)).copies
        encoded = scan_memory(child.pid, base64_forms(secret)).copies
        return raw, encoded
    finally:
        child.finish()


def test_control_readable_forms_are_seen(secret_file: tuple[bytes, Path]) -> None:
    secret, path = secret_file
    raw, encoded = scan(secret, path, "unlocked", wipe=False)
    assert raw >= 1
    assert encoded >= 3  # one per alignment at least


@pytest.mark.skipif(not _probe()["secretmem"]["available"], reason="the kernel has no memfd_secret")
def test_live_secretmem_cell_in_use_by_the_matcher_leaves_zero_readable_copies(
    secret_file: tuple[bytes, Path],
) -> None:
    secret, path = secret_file
    assert scan(secret, path, "secretmem", wipe=False) == (0, 0)


@pytest.mark.parametrize("protection", ["unlocked", "locked", "auto"])
def test_after_the_wipe_the_matcher_holds_nothing(secret_file: tuple[bytes, Path], protection: str) -> None:
    secret, path = secret_file
    assert scan(secret, path, protection, wipe=True) == (0, 0)
