"""`cypher-cell doctor` against the kernel's own accounts.

The doctor's word is compared with what this test reads itself: /proc/self/status,
`resource.getrlimit` (inherited by the child), /proc/swaps, and an independent
memfd_secret probe made with ctypes and the mmap module.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import resource
import shutil
import subprocess
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.privileges import CAP_IPC_LOCK, CAP_SETPCAP, holds_capability, without_memlock

from cypher_cell import CypherCell, _native, cli, doctor

SYS_MEMFD_SECRET = 447  # x86_64 and aarch64
STATUS_WORDS = {"ok", "warn", "fail"}


# --- independent readings ------------------------------------------------------


def own_status() -> dict[str, str]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def own_vmlck_bytes() -> int:
    kb, unit = own_status()["VmLck"].split()
    assert unit == "kB"
    return int(kb) * 1024


def unlimited_as_none(limit: tuple[int, int]) -> list[int | None]:
    return [None if v == resource.RLIM_INFINITY else v for v in limit]


def memfd_secret_errno() -> int:
    """0 when a memfd_secret page can be created, mapped and touched; else the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(SYS_MEMFD_SECRET, 0)
    if fd < 0:
        return ctypes.get_errno()
    try:
        os.ftruncate(fd, mmap.PAGESIZE)
        page = mmap.mmap(fd, mmap.PAGESIZE, flags=mmap.MAP_SHARED)
    except OSError as exc:
        return exc.errno or -1
    finally:
        os.close(fd)
    page[0] = 1
    page.close()
    return 0


def needs_cap_drop() -> None:
    if holds_capability(CAP_IPC_LOCK) and not holds_capability(CAP_SETPCAP):
        pytest.skip("holds CAP_IPC_LOCK but cannot drop it (no CAP_SETPCAP)")


def run_json(preexec: Callable[[], None] | None = None) -> tuple[int, dict[str, Any]]:
    proc = run_cli("doctor", "--json", preexec=preexec)
    assert proc.stderr == ""
    return proc.returncode, json.loads(proc.stdout)


# --- the real machine, through the command line ---------------------------------


def test_json_agrees_with_the_kernel() -> None:
    rc, report = run_json()

    assert [report["memlock"]["soft"], report["memlock"]["hard"]] == unlimited_as_none(
        resource.getrlimit(resource.RLIMIT_MEMLOCK)
    )
    assert [report["core_dumps"]["soft"], report["core_dumps"]["hard"]] == unlimited_as_none(
        resource.getrlimit(resource.RLIMIT_CORE)
    )
    # A child started by root keeps the parent's effective capabilities.
    assert report["memlock"]["cap_ipc_lock"] == holds_capability(CAP_IPC_LOCK)

    swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    assert len(report["swap"]["areas"]) == len(swaps)
    assert report["swap"]["total_bytes"] == sum(int(line.split()[-3]) * 1024 for line in swaps)

    assert report["core_dumps"]["core_pattern"] == Path("/proc/sys/kernel/core_pattern").read_text().strip()
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    assert report["ptrace_scope"] == (int(scope.read_text()) if scope.exists() else None)

    secretmem = memfd_secret_errno()
    assert report["tiers"]["secretmem"]["available"] == (secretmem == 0)
    if secretmem:
        assert report["tiers"]["secretmem"]["errno"] == secretmem
        assert report["tiers"]["secretmem"]["error"] == os.strerror(secretmem)
    else:
        assert report["auto_tier"] == "secretmem"
        assert rc == 0
    assert report["ok"] is (rc == 0)
    assert rc == (0 if report["auto_tier"] in ("secretmem", "locked") else 1)


def test_no_memlock_and_no_cap_ipc_lock_falls_back_to_unlocked() -> None:
    needs_cap_drop()
    preexec = without_memlock(0, 0)

    # Control: the kernel confirms the child really lacks CAP_IPC_LOCK.
    control = subprocess.run(
        ["/bin/cat", "/proc/self/status"],
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        check=True,
    )
    cap_eff = next(line for line in control.stdout.splitlines() if line.startswith("CapEff:"))
    assert not int(cap_eff.split()[1], 16) >> CAP_IPC_LOCK & 1

    rc, report = run_json(preexec)
    assert rc == 1
    assert report["ok"] is False
    assert report["auto_tier"] == "unlocked"
    assert report["memlock"] == {
        "soft": 0,
        "hard": 0,
        "soft_after_probe": 0,
        "cap_ipc_lock": False,
        "locked_bytes": 0,
    }
    assert report["tiers"]["locked"]["available"] is False
    assert report["tiers"]["locked"]["errno"] == errno.EPERM
    assert report["tiers"]["secretmem"]["available"] is False  # its pages count as locked
    assert report["tiers"]["unlocked"]["available"] is True
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["auto tier"] == "fail"
    assert statuses["mlock"] == "fail"

    text = run_cli("doctor", preexec=preexec)
    assert text.returncode == 1
    assert any(line.startswith("auto tier") and " fail " in line for line in text.stdout.splitlines())


def test_reports_the_soft_limit_it_inherited_not_the_one_the_probe_raised() -> None:
    needs_cap_drop()
    hard = 8 * 1024 * 1024
    rc, report = run_json(without_memlock(0, hard))
    assert (report["memlock"]["soft"], report["memlock"]["hard"]) == (0, hard)
    # The library raises the soft limit to the hard one when a lock needs it.
    assert report["memlock"]["soft_after_probe"] == hard
    assert report["tiers"]["locked"]["available"] is True
    assert report["auto_tier"] in ("secretmem", "locked")
    assert rc == 0


def test_human_output_has_one_aligned_line_per_check() -> None:
    _, report = run_json()
    proc = run_cli("doctor")
    lines = proc.stdout.splitlines()
    assert proc.returncode == (0 if report["ok"] else 1)
    assert len(lines) == len(report["checks"]) == 9
    status_columns = set()
    for line, check in zip(lines, report["checks"], strict=True):
        assert line.startswith(check["name"] + " ")
        words = line[len(check["name"]) :].split()
        assert words[0] == check["status"]
        assert words[0] in STATUS_WORDS
        status_columns.add(line.index(f" {check['status']} ", len(check["name"])))
        assert check["fact"] in line
        assert check["meaning"] in line
    assert len(status_columns) == 1


def test_console_script() -> None:
    script = Path(sysconfig.get_path("scripts")) / "cypher-cell"
    path = str(script) if script.exists() else shutil.which("cypher-cell")
    if path is None:
        pytest.skip("cypher-cell is not on PATH (pip install -e .)")
    proc = subprocess.run([path, "doctor", "--json"], capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1)
    assert report["auto_tier"] == run_json()[1]["auto_tier"]


# --- in this process: VmLck while a locked cell is held -------------------------


def test_locked_bytes_is_this_process_vmlck() -> None:
    with CypherCell(b"x" * 32, protection="locked") as cell:
        assert cell.protection == "locked"
        before = own_vmlck_bytes()
        report = doctor.collect()
        after = own_vmlck_bytes()
    assert before == after >= mmap.PAGESIZE
    assert report.memlock.locked_bytes == before
    assert report.memlock.cap_ipc_lock == holds_capability(CAP_IPC_LOCK)


def test_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == (0 if report["ok"] else 1)
    assert list(report) == [
        "tiers",
        "wipe_on_fork",
        "memlock",
        "core_dumps",
        "swap",
        "ptrace_scope",
        "auto_tier",
        "ok",
        "page_size",
        "checks",
    ]


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["nonsense"]) == 2
    assert cli.main(["--help"]) == 0
    assert "doctor" in capsys.readouterr().out


# --- pure readers, with literal text ----------------------------------------------

STATUS_TEXT = """\
Name:\tpython3
Umask:\t0022
State:\tR (running)
VmPeak:\t   20000 kB
VmLck:\t      12 kB
VmPin:\t       0 kB
CapInh:\t0000000000000000
CapPrm:\t000001fffeffffff
CapEff:\t000001fffeffbfff
CapBnd:\t000001fffeffffff
"""


def test_parse_proc_status() -> None:
    status = doctor.parse_proc_status(STATUS_TEXT)
    assert status["State"] == "R (running)"
    assert doctor.locked_bytes(status) == 12 * 1024
    assert doctor.cap_effective(status) == 0x1FFFEFFBFFF
    assert doctor.has_capability(status, CAP_IPC_LOCK) is False
    assert doctor.has_capability(status, CAP_SETPCAP) is True
    full = doctor.parse_proc_status(STATUS_TEXT.replace("feffbfff\n", "feffffff\n"))
    assert doctor.has_capability(full, CAP_IPC_LOCK) is True
    # A kernel thread has neither field.
    assert doctor.locked_bytes({}) is None
    assert doctor.has_capability({}, CAP_IPC_LOCK) is None
    assert doctor.cap_effective({"CapEff": "zz"}) is None


def test_parse_swaps() -> None:
    header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    assert doctor.parse_swaps(header) == []
    assert doctor.parse_swaps("") == []
    text = (
        header + "/dev/sda2                               partition\t8388604\t\t1024\t\t-2\n"
        "/swap\\040file                            file\t\t1048576\t\t0\t\t-3\n"
    )
    areas = doctor.parse_swaps(text)
    assert [(a.name, a.kind, a.size_bytes, a.used_bytes) for a in areas] == [
        ("/dev/sda2", "partition", 8388604 * 1024, 1024 * 1024),
        ("/swap\\040file", "file", 1048576 * 1024, 0),
    ]


def test_parse_ptrace_scope() -> None:
    assert doctor.parse_ptrace_scope(None) is None
    assert doctor.parse_ptrace_scope("1\n") == 1
    assert doctor.parse_ptrace_scope("3") == 3
    assert doctor.parse_ptrace_scope("garbage") is None


def test_core_dumps_possible() -> None:
    assert doctor.core_dumps_possible(0, True, "core") is False
    assert doctor.core_dumps_possible(None, True, "core") is True
    assert doctor.core_dumps_possible(4096, True, "/var/crash/core.%p") is True
    assert doctor.core_dumps_possible(None, False, "core") is False
    # A pipe handler gets the dump whatever RLIMIT_CORE says, except 1.
    pipe = "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h"
    assert doctor.core_dumps_possible(0, True, pipe) is True
    assert doctor.core_dumps_possible(1, True, pipe) is False


def probe(secretmem: int | None, locked: int | None, unlocked: int | None) -> dict[str, object]:
    def tier(code: int | None) -> dict[str, object]:
        return {"available": code is None, "errno": code}

    return {
        "secretmem": tier(secretmem),
        "locked": tier(locked),
        "unlocked": tier(unlocked),
        "memlock_limit": (0, 0),
        "core_limit": (None, None),
        "dumpable": True,
        "page_size": 4096,
    }


def fake_proc(tmp_path: Path, *, swaps: str, core_pattern: str, ptrace_scope: str | None) -> Path:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text(STATUS_TEXT)
    (tmp_path / "swaps").write_text(swaps)
    (tmp_path / "sys" / "kernel").mkdir(parents=True)
    (tmp_path / "sys" / "kernel" / "core_pattern").write_text(core_pattern + "\n")
    if ptrace_scope is not None:
        (tmp_path / "sys" / "kernel" / "yama").mkdir()
        (tmp_path / "sys" / "kernel" / "yama" / "ptrace_scope").write_text(ptrace_scope + "\n")
    return tmp_path


def test_a_machine_without_locking(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        swaps="Filename Type Size Used Priority\n/dev/zram0 partition 4096 0 100\n",
        core_pattern="|/usr/lib/systemd/systemd-coredump %P",
        ptrace_scope="1",
    )
    report = doctor.collect(
        probe=lambda: probe(errno.ENOSYS, errno.EPERM, None),
        proc=proc,
        getrlimit=lambda _: (0, 0),
    )
    assert report.auto_tier == "unlocked"
    assert report.ok is False
    assert doctor.exit_status(report) == 1
    assert report.tiers["secretmem"].error == os.strerror(errno.ENOSYS)
    assert report.wipe_on_fork is True
    assert report.memlock.cap_ipc_lock is False
    assert report.memlock.locked_bytes == 12 * 1024
    assert report.core_dumps.pipe is True
    assert report.core_dumps.possible is True
    assert report.swap.total_bytes == 4096 * 1024
    assert report.ptrace_scope == 1
    statuses = {c.name: c.status for c in doctor.checks(report)}
    assert statuses == {
        "secretmem": "warn",
        "mlock": "fail",
        "wipe-on-fork": "ok",
        "memlock": "fail",
        "locked now": "ok",
        "core dumps": "warn",
        "swap": "warn",
        "ptrace": "ok",
        "auto tier": "fail",
    }
    assert len(doctor.render_text(report).splitlines()) == len(statuses)
    assert json.loads(doctor.render_json(report))["auto_tier"] == "unlocked"


def test_a_machine_where_nothing_works(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, swaps="Filename\n", core_pattern="core", ptrace_scope=None)
    report = doctor.collect(
        probe=lambda: probe(errno.ENOSYS, errno.EINVAL, errno.EINVAL),
        proc=proc,
        getrlimit=lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
    )
    assert report.auto_tier is None
    assert doctor.exit_status(report) == 1
    assert report.wipe_on_fork is False  # EINVAL: MADV_WIPEONFORK unknown
    assert (report.memlock.soft, report.memlock.hard) == (None, None)
    assert report.ptrace_scope is None
    assert report.core_dumps.possible is True  # RLIMIT_CORE unlimited, file pattern
    statuses = {c.name: c.status for c in doctor.checks(report)}
    assert statuses["auto tier"] == "fail"
    assert statuses["wipe-on-fork"] == "fail"
    assert statuses["ptrace"] == "warn"


def test_auto_tier_order() -> None:
    def tiers(*available: str) -> dict[str, doctor.TierProbe]:
        return {
            name: doctor.TierProbe(available=name in available, errno=None, error=None)
            for name in doctor.TIERS
        }

    assert doctor.auto_tier(tiers("secretmem", "locked", "unlocked")) == "secretmem"
    assert doctor.auto_tier(tiers("locked", "unlocked")) == "locked"
    assert doctor.auto_tier(tiers("unlocked")) == "unlocked"
    assert doctor.auto_tier(tiers()) is None


def test_format_bytes() -> None:
    assert doctor.format_bytes(None) == "unlimited"
    assert doctor.format_bytes(0) == "0"
    assert doctor.format_bytes(8 << 20) == "8 MiB"
    assert doctor.format_bytes(65536) == "64 KiB"
    assert doctor.format_bytes(1536) == "1.5 KiB"
    assert doctor.format_bytes(100) == "100 bytes"


@pytest.mark.parametrize(("nth", "tier", "check"), [(1, "secretmem", "secretmem"), (2, "locked", "mlock")])
def test_a_refused_mapping_is_not_blamed_on_the_memory_lock_limit(nth: int, tier: str, check: str) -> None:
    """The probe's Nth mmap (secretmem's reservation, then the locked tier's)
    refused with ENOMEM, as under RLIMIT_AS: the doctor names mmap and the
    address space, as MemoryLockError does, not RLIMIT_MEMLOCK."""
    _native._fault_arm("mmap", nth, errno.ENOMEM, False)
    try:
        report = doctor.collect()
    finally:
        _native._fault_disarm()
    assert report.tiers[tier].available is False
    assert report.tiers[tier].call == "mmap"
    found = {c.name: c for c in doctor.checks(report)}[check]
    assert "not reached: mmap failed" in found.fact
    assert "address space" in found.meaning
    assert "RLIMIT_MEMLOCK" not in found.meaning
