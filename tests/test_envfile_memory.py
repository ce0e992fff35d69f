"""Where a `.env` file's bytes and its cells live, by the kernel's own
accounts (/proc/self/smaps, VmLck in /proc/self/status, a child's
address-space limit) and the cycle collector's (`gc`), never by the
library's word: the file's buffer in locked, dump-excluded, wipe-on-fork
memory (a FIFO's in secretmem); the cells in right-sized secretmem; locked
memory given back after a big load; a forked child that cannot read the
parent's file; entries that no cycle keeps alive and that `gc` does not walk.
"""

from __future__ import annotations

import gc
import os
import resource
import textwrap
import weakref
from pathlib import Path

from support.child import run_child
from support.envfile import fifo_writer, write
from support.procfs import smaps, status_kib

from cypher_cell import CypherCell
from cypher_cell._native import DotenvFile, wipe_entries
from cypher_cell.providers import Entry


def test_the_file_buffer_is_locked_memory_and_the_cells_secretmem(tmp_path: Path) -> None:
    """Read from /proc/self/smaps and VmLck: the file's bytes go to mlocked,
    dump-excluded, wipe-on-fork memory, not secretmem (the kernel holds them
    in its page cache anyway, and secretmem's per-page cost is paid for
    nothing); the cells, which outlive the file, get secretmem."""
    content = b"".join(b"K%d=%s\n" % (i, b"v" * 40) for i in range(5000))
    path = write(tmp_path, content)
    before = {(m.start, m.end) for m in smaps()}
    locked_before = status_kib("VmLck")
    f = DotenvFile(str(path))
    try:
        new = [m for m in smaps() if (m.start, m.end) not in before]
        # Ours are the dump-excluded ones (malloc's and the heap's are not).
        big = [m for m in new if "dd" in m.flags and m.end - m.start >= len(content)]
        assert len(big) == 1, "one new mapping of ours holds the file"
        assert "secretmem" not in big[0].path
        assert {"lo", "dd", "wf"} <= big[0].flags
        assert status_kib("VmLck") - locked_before >= len(content) // 1024
        assert f.load(["K1"])["K1"].cell.protection == "secretmem"
    finally:
        f.close()
    assert (big[0].start, big[0].end) not in {(m.start, m.end) for m in smaps()}


def test_a_files_cells_are_mapped_at_once_in_right_sized_secretmem(tmp_path: Path) -> None:
    """Counted from /proc/self/smaps in a fresh child: 5,000 cells of 32
    bytes (40-byte slots, 102 a page) take ceil(5000 / 102) = 50 pages of
    secretmem in one mapping, not the 63 pages of six doubling arenas a
    cell-by-cell load maps."""
    path = write(tmp_path, b"".join(b"K%d=%s\n" % (i, b"%032x" % i) for i in range(5000)))
    report = run_child(
        textwrap.dedent(
            """
        from support.procfs import smaps
        from cypher_cell import load_secrets
        from cypher_cell.providers import EnvFile
        def secretmem():
            return [m.end - m.start for m in smaps() if "secretmem" in m.path]
        before = secretmem()
        store = load_secrets(EnvFile(sys.argv[1]))
        report(before=before, after=secretmem(), keys=len(store))
        """
        ),
        str(path),
    )
    assert report["before"] == [] and report["keys"] == 5000
    assert report["after"] == [50 * 4096]


def test_locked_memory_returns_to_the_kernel_after_a_big_load_closes(tmp_path: Path) -> None:
    """VmLck from /proc/self/status in a fresh child: a 20,000-key file in
    five size classes, loaded and closed, keeps at most one small spare
    arena per class locked, not the batch's right-sized arenas (secretmem
    charges the memory-lock limit for a whole mapping)."""
    sizes = (10, 30, 45, 60, 90)
    path = write(tmp_path, b"".join(b"K%d=%s\n" % (i, b"v" * sizes[i % 5]) for i in range(20_000)))
    report = run_child(
        textwrap.dedent(
            """
        from support.procfs import status_kib
        from cypher_cell import load_secrets
        from cypher_cell.providers import EnvFile
        before = status_kib("VmLck")
        store = load_secrets(EnvFile(sys.argv[1]))
        loaded = status_kib("VmLck")
        store.close()
        report(before=before, loaded=loaded, closed=status_kib("VmLck"))
        """
        ),
        str(path),
    )
    assert report["loaded"] - report["before"] >= 1024  # 20,000 cells: over 1 MiB while loaded
    assert report["closed"] - report["before"] <= 5 * 4  # a one-page spare per class at most


def test_a_file_of_blank_lines_parses_in_little_memory(tmp_path: Path) -> None:
    """64 MiB of newlines (within max_size) under a 1 GiB address-space
    limit: nothing is reserved for statements the file does not have, so
    no allocation fails (which would abort the process)."""
    path = write(tmp_path, b"\n" * (64 << 20))

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    report = run_child(
        "from cypher_cell._native import DotenvFile\n"
        "with DotenvFile(sys.argv[1]) as f:\n"
        "    report(keys=f.keys())\n",
        str(path),
        preexec_fn=limited,
    )
    assert report == {"keys": []}


def test_a_fifos_bytes_are_read_into_secretmem(tmp_path: Path) -> None:
    """From /proc/self/smaps: unlike a regular file's, a pipe's bytes are
    nowhere else once read (`<(sops -d .env)`), so its buffer gets the
    strongest tier, which even root cannot read through /proc/PID/mem."""
    fifo = tmp_path / "pipe.env"
    os.mkfifo(fifo, 0o600)
    writer = fifo_writer(fifo, b"".join(b"K%d=%s\n" % (i, b"v" * 40) for i in range(100)))
    before = {(m.start, m.end) for m in smaps()}
    with DotenvFile(str(fifo)) as f:
        writer.join(5)
        ours = [m for m in smaps() if (m.start, m.end) not in before and "dd" in m.flags]
        assert len(f.keys()) == 100
        assert ours and all("secretmem" in m.path for m in ours)


def test_a_forked_child_cannot_read_the_parents_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"A=1\n")
    report = run_child(
        """
from cypher_cell._native import DotenvFile
from cypher_cell.errors import ProviderError
f = DotenvFile(sys.argv[1])
pid = os.fork()
if pid == 0:
    try:
        f.cell("A")
        os._exit(1)
    except ProviderError:
        os._exit(0)
    except BaseException:
        os._exit(2)
_, status = os.waitpid(pid, 0)
report(child=os.waitstatus_to_exitcode(status), parent=f.cell("A") == b"1")
""",
        str(path),
    )
    assert report == {"child": 0, "parent": True}


def test_a_loaded_origin_is_an_exact_str_so_no_cycle_keeps_a_cell_alive() -> None:
    class Note(str):
        pass

    cell = CypherCell(b"x")
    alive = weakref.ref(cell)
    origin = Note("somewhere")
    entry = Entry(cell, origin)
    origin.entry = entry  # type: ignore[attr-defined]
    assert type(entry.origin) is str and entry.origin == "somewhere"
    del cell, entry, origin
    gc.collect()
    assert alive() is None


def test_loaded_entries_are_off_the_cycle_collector(tmp_path: Path) -> None:
    """A store of 100,000 keys must not make every collection walk 100,000
    cells: bulk-made entries and their cells are untracked (gc's own account)."""
    path = write(tmp_path, b"A=1\nB=2\n")
    with DotenvFile(str(path)) as f:
        loaded = f.load(["A", "B"])
        assert [gc.is_tracked(e) or gc.is_tracked(e.cell) for e in loaded.values()] == [False, False]
        wipe_entries(loaded.values())
        assert [e.cell.wiped for e in loaded.values()] == [True, True]
