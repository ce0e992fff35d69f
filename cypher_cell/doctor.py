"""`cypher-cell doctor`: what this machine and process offer for keeping secrets.

`collect()` asks the native probe (which really maps a page of each tier) and
reads the kernel's own accounts under /proc; `checks()` turns the report into
one line per check: the fact, a status word, and what it means for secrets.

In the JSON form a limit of `null` means unlimited. Nothing here is secret.
"""

from __future__ import annotations

import dataclasses
import errno as errno_codes
import json
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cypher_cell import _native

Status = Literal["ok", "warn", "fail"]
TierName = Literal["secretmem", "locked", "unlocked"]
TIERS: tuple[TierName, ...] = ("secretmem", "locked", "unlocked")

CAP_IPC_LOCK = 14
# Below this the locked tier runs out after a handful of pages (the old
# kernel default was 64 KiB; it has been 8 MiB since Linux 5.16).
LOW_MEMLOCK_BYTES = 64 * 1024

Limit = tuple[int | None, int | None]  # (soft, hard); None means unlimited


@dataclass(frozen=True)
class TierProbe:
    available: bool
    errno: int | None
    error: str | None  # os.strerror(errno)
    call: str | None = None  # the OS call that failed, as the engine names it
    why: str | None = None  # the engine's reading of that failure (its MemoryLockError's words)


@dataclass(frozen=True)
class Memlock:
    soft: int | None  # as this process started, before the probe
    hard: int | None
    soft_after_probe: int | None  # the probe raises soft to hard when a lock needs it
    cap_ipc_lock: bool | None  # None: /proc/self/status unreadable
    locked_bytes: int | None  # VmLck of this process


@dataclass(frozen=True)
class CoreDumps:
    soft: int | None
    hard: int | None
    dumpable: bool | None
    core_pattern: str | None
    pipe: bool  # core_pattern hands the dump to a program
    possible: bool


@dataclass(frozen=True)
class SwapArea:
    name: str
    kind: str
    size_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class Swap:
    areas: list[SwapArea]
    total_bytes: int


@dataclass(frozen=True)
class Report:
    tiers: dict[str, TierProbe]
    wipe_on_fork: bool | None  # None: could not tell
    memlock: Memlock
    core_dumps: CoreDumps
    swap: Swap
    ptrace_scope: int | None  # None: Yama not enabled
    auto_tier: TierName | None  # None: no tier works at all
    ok: bool
    page_size: int


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    fact: str
    meaning: str


# --- pure readers: text in, values out ------------------------------------


def parse_proc_status(text: str) -> dict[str, str]:
    """`Key:\\tvalue` lines of /proc/PID/status as a dict of stripped strings."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def cap_effective(status: dict[str, str]) -> int | None:
    """The CapEff bit mask, or None when the field is missing or malformed."""
    try:
        return int(status["CapEff"], 16)
    except (KeyError, ValueError):
        return None


def has_capability(status: dict[str, str], cap: int) -> bool | None:
    mask = cap_effective(status)
    return None if mask is None else bool(mask >> cap & 1)


def locked_bytes(status: dict[str, str]) -> int | None:
    """VmLck in bytes (the kernel reports kB), or None when absent."""
    parts = status.get("VmLck", "").split()
    if len(parts) != 2 or parts[1] != "kB" or not parts[0].isdigit():
        return None
    return int(parts[0]) * 1024


def parse_swaps(text: str) -> list[SwapArea]:
    """The areas listed in /proc/swaps; the first line is a header."""
    areas = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        # Name first (spaces in it appear as \040), then type, size, used, priority.
        *name, kind, size_kb, used_kb, _priority = fields
        try:
            size, used = int(size_kb) * 1024, int(used_kb) * 1024
        except ValueError:
            continue
        areas.append(SwapArea(name=" ".join(name), kind=kind, size_bytes=size, used_bytes=used))
    return areas


def parse_ptrace_scope(text: str | None) -> int | None:
    """Yama's ptrace_scope; None when the file is absent (Yama not enabled)."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def core_dumps_possible(soft: int | None, dumpable: bool | None, pattern: str | None) -> bool:
    """Whether a crash of this process would hand its memory to a core dump."""
    if dumpable is False:
        return False
    if pattern is not None and pattern.startswith("|"):
        # The kernel ignores RLIMIT_CORE for a pipe, except the value 1, which
        # aborts the dump; the handler may apply the limit itself.
        return soft != 1
    return soft is None or soft > 0


def auto_tier(tiers: dict[str, TierProbe]) -> TierName | None:
    """The tier `protection="auto"` gets: the first of TIERS that works."""
    for name in TIERS:
        probe = tiers.get(name)
        if probe is not None and probe.available:
            return name
    return None


def wipe_on_fork_supported(tiers: dict[str, TierProbe]) -> bool | None:
    """The locked and unlocked probes apply MADV_WIPEONFORK; EINVAL means the
    kernel does not know it (before Linux 4.14)."""
    if any(tiers[name].available for name in ("locked", "unlocked") if name in tiers):
        return True
    unlocked = tiers.get("unlocked")
    if unlocked is not None and unlocked.errno == errno_codes.EINVAL:
        return False
    return None


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unlimited"
    if n == 0:
        return "0"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} bytes"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# --- the native probe's untyped dict, narrowed -----------------------------


def _tier_probe(value: object) -> TierProbe:
    if not isinstance(value, dict):
        return TierProbe(available=False, errno=None, error="not probed")
    available = value.get("available") is True
    code = value.get("errno")
    code = code if isinstance(code, int) else None
    call, why = value.get("call"), value.get("why")
    return TierProbe(
        available=available,
        errno=code,
        error=None if code is None else os.strerror(code),
        call=call if isinstance(call, str) else None,
        why=why if isinstance(why, str) else None,
    )


def _limit(value: object) -> Limit | None:
    if not (isinstance(value, tuple) and len(value) == 2):
        return None
    soft, hard = value
    if all(v is None or isinstance(v, int) for v in (soft, hard)):
        return (soft, hard)
    return None


def _rlimit(resource_id: int, getrlimit: Callable[[int], tuple[int, int]]) -> Limit:
    def conv(v: int) -> int | None:
        return None if v == resource.RLIM_INFINITY else v

    soft, hard = getrlimit(resource_id)
    return (conv(soft), conv(hard))


# --- the report -------------------------------------------------------------


def collect(
    *,
    probe: Callable[[], dict[str, object]] = _native._probe,
    proc: Path = Path("/proc"),
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
) -> Report:
    """Probes the tiers and reads the kernel's accounts under `proc`."""
    # Read before probing: a probe that needs more than the soft limit raises
    # it to the hard limit, and the report should show what the process had.
    memlock_at_start = _rlimit(resource.RLIMIT_MEMLOCK, getrlimit)
    found = probe()
    tiers: dict[str, TierProbe] = {name: _tier_probe(found.get(name)) for name in TIERS}

    # After the probe: its pages are unmapped again, so VmLck shows what the
    # process itself holds.
    status = parse_proc_status(_read_text(proc / "self" / "status") or "")
    after = _limit(found.get("memlock_limit"))
    memlock = Memlock(
        soft=memlock_at_start[0],
        hard=memlock_at_start[1],
        soft_after_probe=after[0] if after is not None else None,
        cap_ipc_lock=has_capability(status, CAP_IPC_LOCK),
        locked_bytes=locked_bytes(status),
    )

    core = _limit(found.get("core_limit")) or _rlimit(resource.RLIMIT_CORE, getrlimit)
    dumpable = found.get("dumpable")
    dumpable = dumpable if isinstance(dumpable, bool) else None
    pattern_text = _read_text(proc / "sys" / "kernel" / "core_pattern")
    pattern = pattern_text.strip() if pattern_text is not None else None
    core_dumps = CoreDumps(
        soft=core[0],
        hard=core[1],
        dumpable=dumpable,
        core_pattern=pattern,
        pipe=pattern is not None and pattern.startswith("|"),
        possible=core_dumps_possible(core[0], dumpable, pattern),
    )

    areas = parse_swaps(_read_text(proc / "swaps") or "")
    swap = Swap(areas=areas, total_bytes=sum(a.size_bytes for a in areas))

    tier = auto_tier(tiers)
    page_size = found.get("page_size")
    return Report(
        tiers=tiers,
        wipe_on_fork=wipe_on_fork_supported(tiers),
        memlock=memlock,
        core_dumps=core_dumps,
        swap=swap,
        ptrace_scope=parse_ptrace_scope(_read_text(proc / "sys" / "kernel" / "yama" / "ptrace_scope")),
        auto_tier=tier,
        ok=tier in ("secretmem", "locked"),
        page_size=page_size if isinstance(page_size, int) else resource.getpagesize(),
    )


def exit_status(report: Report) -> int:
    """0 when `protection="auto"` gets a locking tier, 1 otherwise."""
    return 0 if report.ok else 1


# --- what it means ------------------------------------------------------------


def _errno_text(probe: TierProbe, call: str | None = None) -> str:
    """`failed: <strerror> (<ERRNO>)`, naming the call that failed when it is
    not `call`, the one the check is about (`mlock` not reached: `mmap` failed)."""
    if probe.errno is None:
        return "failed"
    said = f"{probe.error} ({errno_codes.errorcode.get(probe.errno, probe.errno)})"
    if call is not None and probe.call is not None and probe.call != call:
        return f"not reached: {probe.call} failed: {said}"
    return f"failed: {said}"


def _secretmem_check(probe: TierProbe) -> Check:
    if probe.available:
        return Check(
            "secretmem",
            "ok",
            "memfd_secret works",
            "cell pages leave the kernel's direct map: not even root can read them via /proc/PID/mem "
            "or ptrace",
        )
    # The engine names the call that failed and what that means (native/
    # errors.rs `why`, the one place those explanations are written).
    hint = probe.why or "the kernel refused it"
    return Check(
        "secretmem",
        "warn",
        f"memfd_secret {_errno_text(probe, 'memfd_secret')}",
        f"{hint}; root can read cells",
    )


def _mlock_check(locked: TierProbe, unlocked: TierProbe) -> Check:
    if locked.available:
        return Check("mlock", "ok", "mlock works", "locked cells are never written to swap")
    if not unlocked.available:
        return Check(
            "mlock",
            "fail",
            f"locked page {_errno_text(locked)}",
            "even a plain guarded mapping fails, so mlock could not be tried; no cell can be created",
        )
    if locked.call not in (None, "mlock"):
        # mlock was never reached: the mapping itself failed (address space,
        # data limit, mappings), which no memory-lock limit explains.
        why = locked.why or f"{locked.call} failed before mlock was tried"
    elif locked.errno == errno_codes.EPERM:
        why = "RLIMIT_MEMLOCK is 0 and the process lacks CAP_IPC_LOCK"
    else:
        why = "RLIMIT_MEMLOCK is too small even after raising the soft limit to the hard one"
    return Check(
        "mlock", "fail", f"mlock {_errno_text(locked, 'mlock')}", f"{why}; cells could be written to swap"
    )


def _wipe_on_fork_check(supported: bool | None) -> Check:
    if supported:
        return Check(
            "wipe-on-fork",
            "ok",
            "MADV_WIPEONFORK and MADV_DONTDUMP work",
            "a forked child sees zeros where cells were; cells are left out of core dumps",
        )
    if supported is False:
        return Check(
            "wipe-on-fork",
            "fail",
            "MADV_WIPEONFORK unknown to this kernel (before Linux 4.14)",
            "forked children would inherit copies of every cell",
        )
    return Check("wipe-on-fork", "warn", "not probed", "no anonymous mapping could be made to try it")


def _memlock_check(m: Memlock, page_size: int) -> Check:
    fact = f"RLIMIT_MEMLOCK soft {format_bytes(m.soft)}, hard {format_bytes(m.hard)}"
    if m.soft_after_probe != m.soft:
        fact += f" (soft raised to {format_bytes(m.soft_after_probe)} by the probe)"
    cap = {True: "yes", False: "no", None: "unknown"}[m.cap_ipc_lock]
    fact += f"; CAP_IPC_LOCK {cap}"
    if m.cap_ipc_lock:
        return Check("memlock", "ok", fact, "the limit does not apply: any amount can be locked")
    if m.hard is None:
        return Check("memlock", "ok", fact, "any amount can be locked")
    pages = m.hard // page_size
    reach = f"at most {format_bytes(m.hard)} ({pages} pages) of cells can be locked"
    if m.hard < page_size:
        return Check("memlock", "fail", fact, "not one page can be locked: cells fall back to unlocked")
    if m.hard < LOW_MEMLOCK_BYTES:
        return Check("memlock", "warn", fact, f"{reach}; beyond that cells fall back to unlocked")
    return Check("memlock", "ok", fact, f"{reach} (the soft limit is raised to the hard one when needed)")


def _locked_now_check(m: Memlock) -> Check:
    if m.locked_bytes is None:
        return Check("locked now", "warn", "VmLck unreadable", "cannot tell how much memory is locked")
    return Check(
        "locked now",
        "ok",
        f"VmLck {format_bytes(m.locked_bytes)} in this process",
        "memory this process holds locked right now (RLIMIT_MEMLOCK caps it unless CAP_IPC_LOCK)",
    )


def _core_dumps_check(c: CoreDumps) -> Check:
    dumpable = {True: "yes", False: "no", None: "unknown"}[c.dumpable]
    pattern = "unreadable" if c.core_pattern is None else json.dumps(c.core_pattern)
    fact = (
        f"RLIMIT_CORE soft {format_bytes(c.soft)}, hard {format_bytes(c.hard)}; "
        f"dumpable {dumpable}; core_pattern {pattern}"
    )
    anyway = "cell pages are left out of dumps anyway (MADV_DONTDUMP)"
    if not c.possible:
        raisable = c.dumpable is not False and (c.hard is None or c.hard > 0)
        later = " (the process could raise the soft limit)" if raisable else ""
        return Check("core dumps", "ok", fact, f"a crash writes no core dump{later}; {anyway}")
    handler = "; the dump goes to a program, RLIMIT_CORE is not enforced for it" if c.pipe else ""
    return Check(
        "core dumps",
        "warn",
        fact,
        f"a crash writes a core dump{handler}; {anyway}, "
        "but copies your code makes (reveal()) would be in it",
    )


def _swap_check(s: Swap, tier: TierName | None) -> Check:
    if not s.areas:
        return Check("swap", "ok", "no swap", "nothing in memory can be written to swap")
    fact = f"{len(s.areas)} swap area(s), {format_bytes(s.total_bytes)}"
    if tier == "unlocked":
        return Check("swap", "warn", fact, "auto gives unlocked cells, and those may be written to swap")
    return Check(
        "swap",
        "ok",
        fact,
        "locked and secretmem cells never go to swap; unlocked cells (and reveal() copies) may",
    )


def _ptrace_check(scope: int | None) -> Check:
    if scope is None:
        return Check(
            "ptrace",
            "warn",
            "Yama not enabled",
            "any process of the same user may read this process's memory, except secretmem pages",
        )
    meanings: dict[int, tuple[Status, str]] = {
        0: ("warn", "any process of the same user may read this process's memory, except secretmem pages"),
        1: ("ok", "only this process's ancestors (and root) may read its memory, except secretmem pages"),
        2: ("ok", "only root (CAP_SYS_PTRACE) may read this process's memory, except secretmem pages"),
        3: ("ok", "no process may attach with ptrace, not even root"),
    }
    status, meaning = meanings.get(scope, ("warn", "unknown value"))
    return Check("ptrace", status, f"Yama ptrace_scope {scope}", meaning)


def _auto_check(tier: TierName | None) -> Check:
    fact = f'protection="auto" gets {tier or "nothing"}'
    if tier == "secretmem":
        return Check("auto tier", "ok", fact, "cells get the strongest protection this machine offers")
    if tier == "locked":
        return Check("auto tier", "ok", fact, "cells stay out of swap, but root can read them")
    if tier == "unlocked":
        return Check(
            "auto tier",
            "fail",
            fact,
            "cells may be written to swap; raise `ulimit -l` or grant CAP_IPC_LOCK",
        )
    return Check("auto tier", "fail", fact, "no tier works: creating a cell fails")


def checks(report: Report) -> list[Check]:
    """One check per line of the human output, in order."""
    t = report.tiers
    return [
        _secretmem_check(t["secretmem"]),
        _mlock_check(t["locked"], t["unlocked"]),
        _wipe_on_fork_check(report.wipe_on_fork),
        _memlock_check(report.memlock, report.page_size),
        _locked_now_check(report.memlock),
        _core_dumps_check(report.core_dumps),
        _swap_check(report.swap, report.auto_tier),
        _ptrace_check(report.ptrace_scope),
        _auto_check(report.auto_tier),
    ]


def to_json(report: Report) -> dict[str, object]:
    data = dataclasses.asdict(report)
    data["checks"] = [dataclasses.asdict(c) for c in checks(report)]
    return data


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2)


def render_text(report: Report) -> str:
    rows = checks(report)
    width = max(len(c.name) for c in rows)
    status_width = max(len(s) for s in ("ok", "warn", "fail"))
    lines = [f"{c.name:<{width}}  {c.status:<{status_width}}  {c.fact} -> {c.meaning}" for c in rows]
    return "\n".join(lines)
