"""What the kernel says about a cell's memory: locked pages (VmLck), VMA flags
(smaps VmFlags `lo` locked, `dd` dont-dump, `wf` wipe-on-fork, `dc`
dont-copy), guard pages (/proc/self/maps), and unreadability of secretmem
pages through /proc/PID/mem.

Each test runs in a fresh child so the allocator starts empty and the
kernel's counters move only because of the cells the test creates.
"""

from __future__ import annotations

import pytest
from support.child import run_child, start_child
from support.procfs import random_secret, read_memory, scan_memory, secret_forms

PAGE = 4096

# Runs inside the child: the VMA holding an address and its neighbours.
VMA_HELPERS = """
from support.procfs import cell_address, mapping_of, maps, status_kib

def guarded(addr):
    ms = maps()
    i = next(i for i, m in enumerate(ms) if m.start <= addr < m.end)
    lo = i
    # The data window may be split in two (locked prefix, unlocked rest).
    while ms[lo - 1].end == ms[lo].start and ms[lo - 1].perms[:3] == "rw-":
        lo -= 1
    hi = i
    while ms[hi + 1].start == ms[hi].end and ms[hi + 1].perms[:3] == "rw-":
        hi += 1
    before, after = ms[lo - 1], ms[hi + 1]
    return (before.end == ms[lo].start and before.perms.startswith("---")
            and after.start == ms[hi].end and after.perms.startswith("---"))
"""


def child_code(body: str) -> str:
    return VMA_HELPERS + body


@pytest.mark.parametrize(
    ("protection", "flags"),
    [("locked", {"lo", "dd", "wf"}), ("secretmem", {"lo", "dd", "dc"})],
)
def test_vma_flags_of_a_small_cell(protection: str, flags: set[str]) -> None:
    r = run_child(
        child_code(f"""
before = status_kib("VmLck")
cell = CypherCell(b"x" * 32, protection={protection!r})
addr = cell_address(cell)
m = mapping_of(addr)
report(flags=sorted(m.flags), path=m.path, locked_kib=m.fields.get("Locked"),
       vmlck_delta=status_kib("VmLck") - before, guarded=guarded(addr))
""")
    )
    assert flags <= set(r["flags"]), r["flags"]  # type: ignore[arg-type]
    assert r["guarded"] is True
    assert r["vmlck_delta"] >= PAGE // 1024  # type: ignore[operator]
    assert r["locked_kib"] >= PAGE // 1024  # type: ignore[operator]
    if protection == "secretmem":
        assert "secretmem" in str(r["path"])


def test_unlocked_tier_is_still_undumpable_and_wiped_on_fork() -> None:
    r = run_child(
        child_code("""
cell = CypherCell(b"x" * 32, protection="unlocked")
m = mapping_of(cell_address(cell))
report(flags=sorted(m.flags))
""")
    )
    assert {"dd", "wf"} <= set(r["flags"])  # type: ignore[arg-type]
    assert "lo" not in r["flags"]  # type: ignore[operator]


@pytest.mark.parametrize("protection", ["locked", "secretmem"])
def test_vmlck_grows_by_the_locked_pages_of_a_large_cell(protection: str) -> None:
    r = run_child(
        child_code(f"""
before = status_kib("VmLck")
cell = CypherCell(bytes(100_000), protection={protection!r})
addr = cell_address(cell)
during = status_kib("VmLck")
m = mapping_of(addr)
was_guarded = guarded(addr)
cell.wipe()
del cell
gc.collect()
report(delta=during - before, after=status_kib("VmLck") - before, flags=sorted(m.flags),
       size=m.end - m.start, guarded=was_guarded)
""")
    )
    pages = -(-(100_000 + 8) // PAGE)
    assert r["delta"] == pages * PAGE // 1024
    assert r["size"] == pages * PAGE
    assert r["after"] == 0, "a large cell's pages are unlocked and unmapped when it is freed"
    assert {"lo", "dd"} <= set(r["flags"])  # type: ignore[arg-type]
    assert r["guarded"] is True


def test_locked_pages_track_live_cells_and_never_drop_a_neighbour() -> None:
    r = run_child(
        child_code("""
base = status_kib("VmLck")
per_page = 4096 // 40                      # 32-byte class: 40-byte slots
cells = [CypherCell(b"s" * 32, protection="locked") for _ in range(per_page * 3)]
full = status_kib("VmLck") - base          # 3 pages: a 1-page and a 2-page arena
addrs = [cell_address(c) for c in cells]
# Free all but the last cell of the first page: that page must stay locked.
for c in cells[: per_page - 1]:
    c.wipe()
one_left = status_kib("VmLck") - base
survivor_flags = sorted(mapping_of(addrs[per_page - 1]).flags)
for c in cells:
    c.wipe()
report(full=full, one_left=one_left, survivor_flags=survivor_flags,
       empty=status_kib("VmLck") - base)
""")
    )
    assert r["full"] == 12
    assert r["one_left"] == 12
    assert "lo" in r["survivor_flags"]  # type: ignore[operator]
    # The spare arena keeps one slack page locked; the rest is released.
    assert r["empty"] == 4


def test_many_small_cells_share_pages_and_mappings() -> None:
    r = run_child(
        child_code("""
before_maps = len(maps())
before = status_kib("VmLck")
cells = [CypherCell(b"k" * 32) for _ in range(10_000)]
report(vmlck=status_kib("VmLck") - before, maps=len(maps()) - before_maps)
""")
    )
    # 10,000 x 40-byte slots = 98 pages of data; doubling arenas may overshoot to 127.
    assert 98 * 4 <= r["vmlck"] <= 127 * 4  # type: ignore[operator]
    assert r["maps"] <= 8 * 3  # eight arenas of three mappings each


def test_secretmem_cell_cannot_be_read_through_proc_mem() -> None:
    secret = random_secret()
    child = start_child(
        child_code("""
buf = read_secret(sys.argv[1])
cell = CypherCell(buf, wipe_source=True, protection="secretmem")
report(addr=cell_address(cell), len=len(buf))
hold()
"""),
        str(_write_tmp(secret)),
    )
    try:
        assert read_memory(child.pid, child.report["addr"], 8) is None  # type: ignore[arg-type]
        scan = scan_memory(child.pid, secret_forms(secret))
        assert scan.copies == 0
        assert scan.unreadable_regions >= 1
        assert any("secretmem" in p for p in scan.unreadable_paths)
    finally:
        child.finish()


def test_locked_cell_is_readable_by_root_through_proc_mem_control() -> None:
    """Control for the scanner: the locked tier does not hide a live secret
    from a privileged reader, so a scan must find it."""
    secret = random_secret()
    child = start_child(
        child_code("""
buf = read_secret(sys.argv[1])
cell = CypherCell(buf, wipe_source=True, protection="locked")
report(addr=cell_address(cell))
hold()
"""),
        str(_write_tmp(secret)),
    )
    try:
        assert read_memory(child.pid, child.report["addr"], len(secret)) == secret  # type: ignore[arg-type]
        assert scan_memory(child.pid, secret_forms(secret)).copies == 1
    finally:
        child.finish()


def _write_tmp(data: bytes) -> object:
    import os
    import tempfile

    fd, path = tempfile.mkstemp(prefix="cc-secret-")
    os.write(fd, data)
    os.close(fd)
    return path
