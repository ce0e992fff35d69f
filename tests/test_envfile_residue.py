"""Nothing of a `.env` file is left behind: a child loads a random secret
through EnvFile, closes the store, and its whole memory is scanned through
/proc/PID/mem (support.procfs) while the store is open and after it closed.
A control does the same with python-dotenv and finds copies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.child import start_child
from support.envfile import write
from support.privileges import without_memlock
from support.procfs import random_secret, scan_memory, secret_forms

LOAD_AND_CLOSE = """
import warnings
warnings.simplefilter("ignore")
from cypher_cell import load_secrets
from cypher_cell.providers import EnvFile
store = load_secrets(EnvFile(sys.argv[1]))
report(keys=list(store), tiers=sorted({store[k].protection for k in store}))
sys.stdin.readline()
store.close()
del store
gc.collect()
report(closed=True)
hold()
"""


def _secret_file(directory: Path, secret: bytes) -> Path:
    s = secret.decode()
    # One value as written (copied from the file's buffer), one with an
    # escape and one through ${...} (both built in a second buffer).
    content = f'SECRET={s}\nQUOTED="{s}\\t"\nDERIVED=pre-${{SECRET}}\nOTHER=1\n'
    return write(directory, content.encode())


def _scan_load_and_close(path: Path, secret: bytes, **popen: Any) -> tuple[dict[str, Any], int, int]:
    child = start_child(LOAD_AND_CLOSE, str(path), **popen)
    try:
        loaded = scan_memory(child.pid, secret_forms(secret)).copies
        assert child.proc.stdin is not None and child.proc.stdout is not None
        child.proc.stdin.write("\n")
        child.proc.stdin.flush()
        assert child.proc.stdout.readline().strip() == '{"closed": true}'
        closed = scan_memory(child.pid, secret_forms(secret)).copies
        return child.report, loaded, closed
    finally:
        child.finish()


def test_residue_every_buffer_readable_three_cells_then_zero(tmp_path: Path) -> None:
    secret = random_secret()
    # Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK 0 every buffer falls back
    # to unlocked memory, which /proc/PID/mem can read, so the scan sees the
    # parser's own buffers (secretmem pages it cannot).
    report, loaded, closed = _scan_load_and_close(
        _secret_file(tmp_path, secret), secret, preexec_fn=without_memlock(0, 0)
    )
    assert report["tiers"] == ["unlocked"]
    assert report["keys"] == ["SECRET", "QUOTED", "DERIVED", "OTHER"]
    # While the store is open: exactly the three cells, so the file's
    # buffers were already wiped when load_secrets returned.
    assert loaded == 3
    assert closed == 0


def test_residue_default_protection_zero_after_close(tmp_path: Path) -> None:
    secret = random_secret()
    _, _, closed = _scan_load_and_close(_secret_file(tmp_path, secret), secret)
    assert closed == 0


def test_residue_control_python_dotenv_leaves_copies(tmp_path: Path) -> None:
    secret = random_secret()
    path = _secret_file(tmp_path, secret)
    child = start_child(
        "from dotenv import dotenv_values\nkept = dotenv_values(sys.argv[1])\nreport(done=True)\nhold()\n",
        str(path),
    )
    try:
        assert scan_memory(child.pid, secret_forms(secret)).copies >= 1
    finally:
        child.finish()
