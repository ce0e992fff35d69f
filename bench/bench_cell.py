"""Benchmark CypherCell against its anchors, measured in the same run.

Run from the repository root (cypher_cell must be importable, e.g. after
``pip install -e .``; the anchors need Debian's ``libsodium23`` and
``pip install pydantic``, and are reported as skipped when missing)::

    python bench/bench_cell.py                  # full run, about 7 s
    python bench/bench_cell.py --quick          # smoke run for tests, about 1 s
    python bench/bench_cell.py --json out.json  # also write the figures as JSON
    python bench/bench_cell.py --check          # exit 1 when a target FAILs

What it measures (the anchors recorded earlier are in bench/README.md):

1. Per-operation cost of "create + reveal + wipe" of a 32-byte secret:
   ``CypherCell(secret)`` (protection "auto") and ``protection="locked"``;
   libsodium ``sodium_malloc`` + copy in + ``string_at`` + ``sodium_free``
   through ctypes; pydantic ``SecretStr(text).get_secret_value()`` (no
   protection at all). Batches of ops timed with ``perf_counter_ns``, the
   contenders interleaved batch by batch, GC off; the median batch is reported
   per op, plus a rough breakdown of our cost (create / reveal / wipe alone).
2. Capacity, from the kernel's own accounts: VmLck (``/proc/self/status``)
   and the number of mappings (``/proc/self/maps``) added by 100,000 live
   32-byte cells, beside ``cypher_cell._native._pool_stats()``; then libsodium
   ``sodium_malloc(32)`` in a loop until it returns NULL (or the same count).
3. Targets, printed as PASS/FAIL lines: median <= 1 us; >= 20x faster than
   libsodium; 100,000 live cells within 8 MiB of VmLck and <= 64 added
   mappings. Informational unless ``--check`` is given.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cypher_cell import CypherCell, __version__, _native
from cypher_cell.doctor import locked_bytes, parse_proc_status

SECRET_LEN = 32
MIB = 1024 * 1024

# Targets (the project's issues).
TARGET_MEDIAN_US = 1.0
TARGET_SPEEDUP = 20.0
TARGET_VMLCK_MIB = 8.0
TARGET_MAPS = 64

# The anchors recorded earlier on this machine (bench/README.md), printed for reference only.
DOC_ANCHORS = {"libsodium": "25.5 us", "pydantic": "0.18 us", "libsodium_live": "16,368"}

perf_ns = time.perf_counter_ns
LoopFn = Callable[[int], int]


# --------------------------------------------------------------------------- kernel accounts


def vmlck_kib() -> int:
    """VmLck of this process in kB, as the kernel accounts it (read by the
    doctor's parser, the one the benchmarks share)."""
    with open("/proc/self/status") as f:
        locked = locked_bytes(parse_proc_status(f.read()))
    return 0 if locked is None else locked // 1024


def map_count() -> int:
    """Number of mappings (VMAs) of this process: lines of /proc/self/maps."""
    n = 0
    with open("/proc/self/maps", "rb", buffering=0) as f:
        while chunk := f.read(1 << 16):
            n += chunk.count(b"\n")
    return n


def maps_lines() -> set[bytes]:
    with open("/proc/self/maps", "rb") as f:
        return set(f.read().splitlines())


def classify_new_maps(before: set[bytes], after: set[bytes]) -> dict[str, int]:
    """Kinds of the mappings present after but not before (a rough split, not a count delta)."""
    kinds: Counter[str] = Counter()
    for line in after - before:
        fields = line.split()
        perms, path = fields[1], b" ".join(fields[5:])
        if b"secretmem" in path:
            kinds["secretmem"] += 1
        elif perms.startswith(b"---"):
            kinds["PROT_NONE guard"] += 1
        elif path == b"[heap]":
            kinds["[heap] (brk grew)"] += 1
        elif not path:
            kinds["anonymous rw (locked tier or interpreter heap)"] += 1
        else:
            kinds[path.decode(errors="replace")] += 1
    return dict(kinds)


def max_map_count() -> int | None:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- anchors


@dataclass
class Sodium:
    lib: ctypes.CDLL
    version: str

    @classmethod
    def load(cls) -> Sodium | None:
        path = ctypes.util.find_library("sodium")
        if path is None:
            return None
        lib = ctypes.CDLL(path, use_errno=True)
        lib.sodium_init.restype = ctypes.c_int
        if lib.sodium_init() < 0:
            return None
        lib.sodium_malloc.argtypes = [ctypes.c_size_t]
        lib.sodium_malloc.restype = ctypes.c_void_p
        lib.sodium_free.argtypes = [ctypes.c_void_p]
        lib.sodium_free.restype = None
        lib.sodium_version_string.restype = ctypes.c_char_p
        return cls(lib, lib.sodium_version_string().decode())


def load_secretstr() -> tuple[Any, str] | None:
    try:
        import pydantic
        from pydantic import SecretStr
    except ImportError:
        return None
    return SecretStr, pydantic.VERSION


# --------------------------------------------------------------------------- timed loops
# Each loop runs n operations inline (no per-op function call) and returns ns.


def loop_empty(n: int) -> int:
    t0 = perf_ns()
    for _ in range(n):
        pass
    return perf_ns() - t0


def make_loop_ours(secret: bytes, protection: Literal["secretmem", "locked", "unlocked"] | None) -> LoopFn:
    cell_cls = CypherCell

    if protection is None:  # exactly the user's default call

        def loop(n: int) -> int:
            t0 = perf_ns()
            for _ in range(n):
                c = cell_cls(secret)
                c.reveal()
                c.wipe()
            return perf_ns() - t0

        return loop

    def loop_prot(n: int) -> int:
        t0 = perf_ns()
        for _ in range(n):
            c = cell_cls(secret, protection=protection)
            c.reveal()
            c.wipe()
        return perf_ns() - t0

    return loop_prot


def make_loop_sodium(sodium: Sodium, secret: bytes) -> LoopFn:
    malloc = sodium.lib.sodium_malloc
    free = sodium.lib.sodium_free
    memmove = ctypes.memmove
    string_at = ctypes.string_at
    size = len(secret)

    def loop(n: int) -> int:
        t0 = perf_ns()
        for _ in range(n):
            p = malloc(size)
            if p is None:
                raise MemoryError("sodium_malloc returned NULL")
            memmove(p, secret, size)
            string_at(p, size)
            free(p)
        return perf_ns() - t0

    return loop


def make_loop_secretstr(secret_str_cls: Any, text: str) -> LoopFn:
    def loop(n: int) -> int:
        t0 = perf_ns()
        for _ in range(n):
            s = secret_str_cls(text)
            s.get_secret_value()
        return perf_ns() - t0

    return loop


def breakdown_batch(secret: bytes, n: int) -> dict[str, int]:
    """One batch of our operations timed one kind at a time, n cells live at once."""
    cell_cls = CypherCell
    cells: list[Any] = [None] * n
    rng = range(n)
    tr = perf_ns()
    for _ in rng:
        c = cell_cls(secret)  # the previous cell is dropped (wiped on drop): its slot is reused
    del c
    t0 = perf_ns()
    for i in rng:
        cells[i] = cell_cls(secret)
    t1 = perf_ns()
    for c in cells:
        c.reveal()
    t2 = perf_ns()
    for c in cells:
        c.wipe()
    t3 = perf_ns()
    for c in cells:
        c.wiped  # noqa: B018  (a native property read: the PyO3 call floor)
    t4 = perf_ns()
    for i in rng:
        cells[i] = None  # drop of a wiped cell
    t5 = perf_ns()
    for i in rng:
        cells[i] = secret  # loop + store floor for the create/drop loops
    t6 = perf_ns()
    return {
        "create+drop, slot reused": t0 - tr,
        "create, n cells kept live": t1 - t0,
        "c.reveal()": t2 - t1,
        "c.wipe()": t3 - t2,
        "drop of a wiped cell": t5 - t4,
        "c.wiped (PyO3 call floor)": t4 - t3,
        "loop + list store (floor)": t6 - t5,
    }


# --------------------------------------------------------------------------- results


@dataclass
class Timing:
    name: str
    what: str
    batch_ops: int
    per_op_ns: list[float] = field(default_factory=list)
    doc_anchor: str | None = None

    @property
    def median_us(self) -> float:
        return statistics.median(self.per_op_ns) / 1000

    def summary(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "batch_ops": self.batch_ops,
            "batches": len(self.per_op_ns),
            "median_us": self.median_us,
            "min_us": min(self.per_op_ns) / 1000,
            "max_us": max(self.per_op_ns) / 1000,
            "doc_anchor": self.doc_anchor,
        }


@dataclass
class Capacity:
    name: str
    requested: int
    live: int
    vmlck_delta_kib: int
    maps_delta: int
    seconds: float
    stop: str
    after_free_vmlck_delta_kib: int
    after_free_maps_delta: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def vmlck_delta_mib(self) -> float:
        return self.vmlck_delta_kib / 1024


@dataclass
class Target:
    label: str
    value: str
    ok: bool | None  # None: could not be measured (SKIP)

    @property
    def verdict(self) -> str:
        return "SKIP" if self.ok is None else ("PASS" if self.ok else "FAIL")


# --------------------------------------------------------------------------- phases


def run_timings(contenders: list[Timing], loops: list[LoopFn], batches: int) -> None:
    """Interleave the contenders batch by batch so drift hits all of them alike."""
    for t, loop in zip(contenders, loops, strict=True):  # warm-up, discarded
        loop(max(1, t.batch_ops // 10))
    gc.collect()
    gc.disable()
    try:
        for _ in range(batches):
            for t, loop in zip(contenders, loops, strict=True):
                t.per_op_ns.append(loop(t.batch_ops) / t.batch_ops)
    finally:
        gc.enable()


def run_breakdown(secret: bytes, n: int, batches: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    breakdown_batch(secret, max(1, n // 10))  # warm-up
    gc.collect()
    gc.disable()
    try:
        for _ in range(batches):
            for k, ns in breakdown_batch(secret, n).items():
                samples.setdefault(k, []).append(ns / n)
    finally:
        gc.enable()
    return {k: statistics.median(v) / 1000 for k, v in samples.items()}


def capacity_ours(secret: bytes, n: int) -> Capacity:
    cells: list[Any] = [None] * n  # allocated before the baseline is taken
    cell_cls = CypherCell
    gc.collect()
    pool0 = _native._pool_stats()
    lines0 = maps_lines()
    lck0, maps0 = vmlck_kib(), map_count()
    t0 = time.perf_counter()
    for i in range(n):
        cells[i] = cell_cls(secret)
    seconds = time.perf_counter() - t0
    lck1, maps1 = vmlck_kib(), map_count()
    new_maps = classify_new_maps(lines0, maps_lines())
    pool1 = _native._pool_stats()
    tiers = Counter(c.protection for c in cells)
    for i in range(n):
        cells[i] = None
    del cells
    gc.collect()
    lck2, maps2 = vmlck_kib(), map_count()
    pool2 = _native._pool_stats()
    return Capacity(
        name="cypher_cell",
        requested=n,
        live=n,
        vmlck_delta_kib=lck1 - lck0,
        maps_delta=maps1 - maps0,
        seconds=seconds,
        stop="all created",
        after_free_vmlck_delta_kib=lck2 - lck0,
        after_free_maps_delta=maps2 - maps0,
        extra={
            "tiers": dict(tiers),
            "new_maps": new_maps,
            "pool_before": pool0,
            "pool_live": pool1,
            "pool_after_free": pool2,
        },
    )


def capacity_sodium(sodium: Sodium, secret: bytes, cap: int) -> Capacity:
    malloc = sodium.lib.sodium_malloc
    free = sodium.lib.sodium_free
    memmove = ctypes.memmove
    size = len(secret)
    ptrs = (ctypes.c_void_p * cap)()  # allocated before the baseline is taken
    gc.collect()
    lck0, maps0 = vmlck_kib(), map_count()
    live = 0
    stop = f"reached {cap:,}"
    ctypes.set_errno(0)
    t0 = time.perf_counter()
    for i in range(cap):
        p = malloc(size)
        if p is None:
            err = ctypes.get_errno()
            stop = f"NULL ({errno.errorcode.get(err, err)})" if err else "NULL"
            break
        memmove(p, secret, size)
        ptrs[i] = p
        live += 1
    seconds = time.perf_counter() - t0
    lck1, maps1 = vmlck_kib(), map_count()
    for i in range(live):
        free(ptrs[i])
    lck2, maps2 = vmlck_kib(), map_count()
    return Capacity(
        name="libsodium",
        requested=cap,
        live=live,
        vmlck_delta_kib=lck1 - lck0,
        maps_delta=maps1 - maps0,
        seconds=seconds,
        stop=stop,
        after_free_vmlck_delta_kib=lck2 - lck0,
        after_free_maps_delta=maps2 - maps0,
        extra={"maps_before": maps0, "max_map_count": max_map_count()},
    )


def evaluate(timings: dict[str, Timing], caps: dict[str, Capacity], n_cells: int) -> list[Target]:
    ours = timings["ours_auto"].median_us
    targets = [
        Target(
            f"create+reveal+wipe median <= {TARGET_MEDIAN_US:g} us",
            f"{ours:.3f} us",
            ours <= TARGET_MEDIAN_US,
        )
    ]
    if "libsodium" in timings:
        ratio = timings["libsodium"].median_us / ours
        targets.append(
            Target(f">= {TARGET_SPEEDUP:g}x faster than libsodium", f"{ratio:.1f}x", ratio >= TARGET_SPEEDUP)
        )
    else:
        targets.append(Target(f">= {TARGET_SPEEDUP:g}x faster than libsodium", "libsodium missing", None))
    cap = caps["cypher_cell"]
    targets.append(
        Target(
            f"{n_cells:,} live cells: VmLck delta <= {TARGET_VMLCK_MIB:g} MiB",
            f"{cap.vmlck_delta_mib:.2f} MiB",
            cap.vmlck_delta_mib <= TARGET_VMLCK_MIB,
        )
    )
    targets.append(
        Target(
            f"{n_cells:,} live cells: <= {TARGET_MAPS} added mappings",
            f"{cap.maps_delta}",
            cap.maps_delta <= TARGET_MAPS,
        )
    )
    return targets


# --------------------------------------------------------------------------- report


def environment(sodium: Sodium | None, pyd: tuple[Any, str] | None) -> dict[str, Any]:
    uname = os.uname()
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{uname.sysname} {uname.release} {uname.version}",
        "machine": uname.machine,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "cypher_cell": __version__,
        "libsodium": sodium.version if sodium else None,
        "pydantic": pyd[1] if pyd else None,
        "max_map_count": max_map_count(),
        "euid": os.geteuid(),
        "probe": _native._probe(),
    }


@dataclass
class Report:
    env: dict[str, Any]
    timings: dict[str, Timing]
    breakdown: dict[str, float]
    caps: dict[str, Capacity]
    targets: list[Target]
    quick: bool
    check: bool


def print_report(r: Report) -> None:
    p = print
    env, timings, breakdown, caps, targets = r.env, r.timings, r.breakdown, r.caps, r.targets
    auto_tier = caps["cypher_cell"].extra["tiers"]
    p("cypher_cell benchmark: create + reveal + wipe, and capacity, beside anchors measured in this run")
    p(
        f"  Python  {env['python']}   cypher_cell {env['cypher_cell']}   "
        f"libsodium {env['libsodium'] or 'missing'}   pydantic {env['pydantic'] or 'missing'}"
    )
    p(f"  Kernel  {env['kernel']}  ({env['machine']})")
    p(
        f"  CPU     {env['cpu']} x {env['cpus']}   vm.max_map_count {env['max_map_count']}   "
        f"euid {env['euid']}   RLIMIT_MEMLOCK {env['probe'].get('memlock_limit')}"
    )
    p(
        f"  protection='auto' achieved: {', '.join(f'{k} x {v:,}' for k, v in auto_tier.items())}"
        f"{'   [--quick]' if r.quick else ''}"
    )
    p()

    any_t = next(iter(timings.values()))
    p(
        f"1. Per operation, 32-byte secret: median of {len(any_t.per_op_ns)} batches "
        f"(interleaved, GC off); us per op"
    )
    ours = timings["ours_auto"].median_us
    head = (
        f"   {'contender':<14}{'operation':<52}{'ops/batch':>10}{'median':>9}{'min':>9}{'max':>9}"
        f"{'vs ours':>9}  recorded"
    )
    p(head)
    p("   " + "-" * (len(head) - 3))
    for t in timings.values():
        s = t.summary()
        p(
            f"   {t.name:<14}{t.what:<52}{t.batch_ops:>10,}{s['median_us']:>9.3f}{s['min_us']:>9.3f}"
            f"{s['max_us']:>9.3f}{s['median_us'] / ours:>8.2f}x  {t.doc_anchor or ''}"
        )
    if "libsodium" in timings:
        lib = timings["libsodium"].median_us
        p(f"   ratio libsodium / ours(auto)   = {lib / ours:7.1f}x")
        p(f"   ratio libsodium / ours(locked) = {lib / timings['ours_locked'].median_us:7.1f}x")
    if "pydantic" in timings:
        p(
            f"   ratio ours(auto) / SecretStr   = {ours / timings['pydantic'].median_us:7.2f}x "
            "(the price of protection over a plain wrapper)"
        )
    p()
    p("   Breakdown of ours (protection='auto'), each kind of op timed alone over a batch; median us per op")
    for k, v in breakdown.items():
        p(f"     {k:<36}{v:>8.3f}")
    kept = sum(breakdown[k] for k in list(breakdown)[1:5])
    p(f"     {'sum create(kept)+reveal+wipe+drop':<36}{kept:>8.3f}")
    p()

    p("2. Capacity: live 32-byte secrets, from the kernel's accounts (/proc/self/status, /proc/self/maps)")
    head = (
        f"   {'contender':<14}{'requested':>10}{'live':>10}{'VmLck delta':>13}{'maps added':>12}"
        f"{'fill ms':>9}{'after free (VmLck, maps)':>27}  stop"
    )
    p(head)
    p("   " + "-" * (len(head) - 3))
    for c in caps.values():
        after = f"{c.after_free_vmlck_delta_kib / 1024:.2f} MiB, {c.after_free_maps_delta:+d}"
        p(
            f"   {c.name:<14}{c.requested:>10,}{c.live:>10,}{c.vmlck_delta_mib:>9.2f} MiB{c.maps_delta:>12,}"
            f"{c.seconds * 1000:>9.1f}{after:>27}  {c.stop}"
        )
    ours_cap = caps["cypher_cell"]
    for label in ("pool_before", "pool_live", "pool_after_free"):
        st = ours_cap.extra[label]
        p(f"   cypher_cell _pool_stats() {label[5:]:<10} " + "  ".join(f"{k}={v:,}" for k, v in st.items()))
    p(
        "   cypher_cell mappings new while live, by kind (the kernel's count includes the interpreter's "
        "own heap):"
    )
    p("     " + ", ".join(f"{k} {v}" for k, v in ours_cap.extra["new_maps"].items()))
    if "libsodium" in caps:
        sod = caps["libsodium"]
        p(
            f"   libsodium: maps before the fill {sod.extra['maps_before']:,}, vm.max_map_count "
            f"{sod.extra['max_map_count']}, {sod.maps_delta / max(sod.live, 1):.2f} mappings per secret; "
            f"recorded anchor {DOC_ANCHORS['libsodium_live']} live"
        )
    p()

    p("3. Targets" + ("" if r.check else " (informational; --check makes a FAIL exit 1)"))
    for tg in targets:
        p(f"   {tg.verdict}  {tg.label:<46}{tg.value:>14}")


def to_json(r: Report) -> dict[str, Any]:
    timings = r.timings
    ours = timings["ours_auto"].median_us
    ratios: dict[str, float] = {}
    if "libsodium" in timings:
        ratios["libsodium_over_ours_auto"] = timings["libsodium"].median_us / ours
        ratios["libsodium_over_ours_locked"] = (
            timings["libsodium"].median_us / timings["ours_locked"].median_us
        )
    if "pydantic" in timings:
        ratios["ours_auto_over_secretstr"] = ours / timings["pydantic"].median_us
    return {
        "quick": r.quick,
        "environment": r.env,
        "per_op": {k: t.summary() for k, t in timings.items()},
        "ratios": ratios,
        "breakdown_us": r.breakdown,
        "capacity": {k: {**asdict(c), "vmlck_delta_mib": c.vmlck_delta_mib} for k, c in r.caps.items()},
        "targets": [{"label": t.label, "value": t.value, "verdict": t.verdict} for t in r.targets],
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fast smoke run: few small batches, 10,000 cells")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target FAILs")
    ap.add_argument("--batches", type=int, help="timed batches per contender (default 21, quick 5)")
    ap.add_argument(
        "--cells", type=int, help="live cells for the capacity test (default 100,000, quick 10,000)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    batches = args.batches or (5 if args.quick else 21)
    n_cells = args.cells or (10_000 if args.quick else 100_000)
    fast_ops = 2_000 if args.quick else 10_000  # ops per batch, sub-microsecond contenders
    slow_ops = 200 if args.quick else 10_000  # ops per batch, libsodium (~25 us each)

    secret = os.urandom(SECRET_LEN)
    text = os.urandom(SECRET_LEN // 2).hex()  # a 32-character str for SecretStr
    sodium = Sodium.load()
    pyd = load_secretstr()

    # Capacity first, while the pool is fresh; ours before libsodium fills the map table.
    caps = {"cypher_cell": capacity_ours(secret, n_cells)}
    if sodium:
        caps["libsodium"] = capacity_sodium(sodium, secret, n_cells)

    contenders = [
        Timing("cypher_cell", "CypherCell(s); c.reveal(); c.wipe()  [auto]", fast_ops),
        Timing("cypher_cell", "... protection='locked'", fast_ops),
    ]
    loops: list[LoopFn] = [make_loop_ours(secret, None), make_loop_ours(secret, "locked")]
    keys = ["ours_auto", "ours_locked"]
    if sodium:
        contenders.append(
            Timing(
                "libsodium",
                "sodium_malloc; memmove in; string_at; sodium_free",
                slow_ops,
                doc_anchor=DOC_ANCHORS["libsodium"],
            )
        )
        loops.append(make_loop_sodium(sodium, secret))
        keys.append("libsodium")
    if pyd:
        contenders.append(
            Timing(
                "pydantic",
                "SecretStr(t).get_secret_value()  [no protection]",
                fast_ops,
                doc_anchor=DOC_ANCHORS["pydantic"],
            )
        )
        loops.append(make_loop_secretstr(pyd[0], text))
        keys.append("pydantic")
    contenders.append(Timing("(floor)", "empty for-loop", fast_ops))
    loops.append(loop_empty)
    keys.append("empty_loop")
    run_timings(contenders, loops, batches)
    timings = dict(zip(keys, contenders, strict=True))

    breakdown = run_breakdown(secret, fast_ops, batches)
    targets = evaluate(timings, caps, n_cells)
    report = Report(environment(sodium, pyd), timings, breakdown, caps, targets, args.quick, args.check)
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(report), f, indent=2, default=str)
            f.write("\n")
    if args.check and any(t.ok is False for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
