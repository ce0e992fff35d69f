"""Soak: minutes of mixed work, with the process's memory sampled each second.

Not a CI test (it takes ten minutes by default). Run from the repository
root with cypher_cell installed::

    python bench/soak.py                    # 600 s, 4 worker threads
    python bench/soak.py --seconds 60       # a shorter look
    python bench/soak.py --json soak.json   # every sample, for plotting

What runs at once:

- worker threads, each keeping a bounded, changing set of live cells:
  create (16 B to 64 KiB, so both pool slots and cells with a region of
  their own), `reveal()`, `expose()`, constant-time compare, `wipe()`;
  some cells carry a short TTL (the reaper wipes them), some are volatile
  (burned by their one read);
- a loader thread: `load_secrets(EnvFile(...))` of a 200-key file, then
  `close()`, over and over;
- the main thread forks once a second; the child checks that an inherited
  cell refuses to be read, makes and reads a cell of its own, and exits.
  A child that hangs (5 s) or fails counts as a failure.

Each second the kernel's accounts are sampled: VmRSS and VmLck from
``/proc/self/status`` and the number of mappings in ``/proc/self/maps``.
After the warm-up, the median of the first third of the samples is compared
with the median of the last third: the run is flat when neither RSS
(2 MiB or 2%), VmLck (256 KiB) nor the mapping count (8) grew by more than
that. ``--check`` exits 1 when a figure is not flat or any fork failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench_cell import map_count  # this directory: run as python bench/soak.py

from cypher_cell import CellExpiredError, CellWipedError, CypherCell, Policy, load_secrets
from cypher_cell.doctor import locked_bytes, parse_proc_status
from cypher_cell.providers import EnvFile

RSS_SLACK_KIB = 2048
RSS_SLACK_FRACTION = 0.02
VMLCK_SLACK_KIB = 256
MAPS_SLACK = 8
LIVE_PER_THREAD = 400
ENV_KEYS = 200


@dataclass
class Sample:
    t: float
    rss_kib: int
    vmlck_kib: int
    maps: int


@dataclass
class Counts:
    created: int = 0
    revealed: int = 0
    exposed: int = 0
    wiped: int = 0
    expired_seen: int = 0
    burned_seen: int = 0
    env_loads: int = 0
    forks: int = 0
    fork_failures: int = 0
    errors: list[str] = field(default_factory=list)


def status_kib() -> tuple[int, int]:
    """VmRSS and VmLck of this process in kB, as the kernel accounts them
    (read by the doctor's parser, the one the benchmarks share)."""
    with open("/proc/self/status") as f:
        status = parse_proc_status(f.read())
    rss = status.get("VmRSS", "0 kB").split()
    locked = locked_bytes(status)
    return int(rss[0]), 0 if locked is None else locked // 1024


def sample(t0: float) -> Sample:
    rss_kib, vmlck_kib = status_kib()
    return Sample(round(time.monotonic() - t0, 2), rss_kib, vmlck_kib, map_count())


def one_cell(rng: random.Random, local: Counts) -> CypherCell:
    """Makes a cell of a random kind and size and uses it the ways a service would."""
    size = rng.choice((16, 32, 64, 200, 1000, 4096, 65536)) if rng.random() < 0.05 else 32
    secret = secrets.token_bytes(size)
    roll = rng.random()
    if roll < 0.15:
        cell = CypherCell(secret, ttl_sec=rng.uniform(0.005, 0.3))
    elif roll < 0.30:
        cell = CypherCell(secret, volatile=True)
    else:
        cell = CypherCell(secret)
    local.created += 1
    try:
        if cell.reveal() != secret:
            local.errors.append("reveal() returned other bytes")
        local.revealed += 1
        if cell.volatile:
            cell.reveal()
    except CellExpiredError:
        local.expired_seen += 1
    except CellWipedError:
        local.burned_seen += 1
    if not cell.volatile and rng.random() < 0.3:
        try:
            with cell.expose() as view:
                if len(view) != size:
                    local.errors.append("expose() gave a view of another length")
            local.exposed += 1
        except CellWipedError:
            local.expired_seen += 1
    return cell


def worker(seed: int, stop: threading.Event, counts: Counts, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    live: list[CypherCell] = []
    local = Counts()
    try:
        while not stop.is_set():
            live.append(one_cell(rng, local))
            if len(live) > LIVE_PER_THREAD:
                victim = live.pop(rng.randrange(len(live)))
                if rng.random() < 0.5:
                    victim.wipe()
                    local.wiped += 1
                # else: dropped, and wiped by deallocation
    finally:
        for cell in live:
            cell.wipe()
        with lock:
            for name in ("created", "revealed", "exposed", "wiped", "expired_seen", "burned_seen"):
                setattr(counts, name, getattr(counts, name) + getattr(local, name))
            counts.errors.extend(local.errors[:5])


def loader(path: Path, stop: threading.Event, counts: Counts, lock: threading.Lock) -> None:
    n = 0
    try:
        while not stop.is_set():
            with load_secrets(EnvFile(path), policy={"K1*": Policy(ttl_sec=0.05)}) as store:
                if len(store) != ENV_KEYS:
                    with lock:
                        counts.errors.append(f"loaded {len(store)} keys instead of {ENV_KEYS}")
            n += 1
    finally:
        with lock:
            counts.env_loads += n


def fork_once(inherited: CypherCell) -> bool:
    """Forks; the child must refuse the inherited cell and make its own."""
    pid = os.fork()
    if pid == 0:  # the child: no Python-level cleanup, just a status
        code = 1
        try:
            try:
                inherited.reveal()
            except CellWipedError:
                own = CypherCell(secrets.token_bytes(32))
                code = 0 if len(own.reveal()) == 32 else 3
                own.wipe()
            else:
                code = 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def write_env(directory: Path) -> Path:
    path = directory / ".env"
    lines = [f"K{i}={secrets.token_hex(16)}" for i in range(ENV_KEYS)]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def growth(values: list[int]) -> tuple[float, float]:
    """Medians of the first and last third of `values`."""
    third = max(1, len(values) // 3)
    return statistics.median(values[:third]), statistics.median(values[-third:])


def verdicts(samples: list[Sample], warmup: float) -> dict[str, dict[str, float | bool]]:
    steady = [s for s in samples if s.t >= warmup]
    out: dict[str, dict[str, float | bool]] = {}
    for name, slack in (("rss_kib", None), ("vmlck_kib", VMLCK_SLACK_KIB), ("maps", MAPS_SLACK)):
        values = [getattr(s, name) for s in steady]
        if len(values) < 3:
            out[name] = {"flat": False, "first": 0.0, "last": 0.0, "min": 0.0, "max": 0.0}
            continue
        first, last = growth(values)
        allowed = slack if slack is not None else max(RSS_SLACK_KIB, RSS_SLACK_FRACTION * first)
        out[name] = {
            "first": first,
            "last": last,
            "min": float(min(values)),
            "max": float(max(values)),
            "allowed_growth": float(allowed),
            "flat": last - first <= allowed,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--warmup", type=float, default=None, help="default: 10%% of the run, at least 5 s")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--check", action="store_true", help="exit 1 unless flat and every fork succeeded")
    args = ap.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(5.0, args.seconds / 10)

    counts, lock, stop = Counts(), threading.Lock(), threading.Event()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory() as tmp:
        env_path = write_env(Path(tmp))
        threads = [
            threading.Thread(target=worker, args=(i, stop, counts, lock), daemon=True)
            for i in range(args.threads)
        ]
        threads.append(threading.Thread(target=loader, args=(env_path, stop, counts, lock), daemon=True))
        inherited = CypherCell(secrets.token_bytes(32))
        t0 = time.monotonic()
        for t in threads:
            t.start()
        next_tick = t0
        while (now := time.monotonic()) - t0 < args.seconds:
            if now >= next_tick:
                samples.append(sample(t0))
                counts.forks += 1
                if not fork_once(inherited):
                    counts.fork_failures += 1
                next_tick += 1.0
            time.sleep(max(0.0, min(0.05, next_tick - time.monotonic())))
        stop.set()
        for t in threads:
            t.join(timeout=30)
        inherited.wipe()
        after = sample(t0)

    result = verdicts(samples, warmup)
    flat = all(v["flat"] for v in result.values())
    print(f"soak: {args.seconds:g} s, {args.threads} worker threads + 1 loader, warm-up {warmup:g} s")
    print(
        f"  cells created {counts.created:,}, revealed {counts.revealed:,}, exposed {counts.exposed:,}, "
        f"wiped {counts.wiped:,}, expired seen {counts.expired_seen:,}, burned seen {counts.burned_seen:,}"
    )
    print(f"  .env loads ({ENV_KEYS} keys) {counts.env_loads:,}")
    print(f"  forks {counts.forks}, failed or hung {counts.fork_failures}")
    print(f"  {'figure':<10}{'first third':>14}{'last third':>14}{'min':>10}{'max':>10}{'allowed':>10}  flat")
    for name, v in result.items():
        print(
            f"  {name:<10}{v['first']:>14,.0f}{v['last']:>14,.0f}{v['min']:>10,.0f}{v['max']:>10,.0f}"
            f"{v.get('allowed_growth', 0):>10,.0f}  {'yes' if v['flat'] else 'NO'}"
        )
    print(f"  after stopping: VmRSS {after.rss_kib:,} kB, VmLck {after.vmlck_kib:,} kB, maps {after.maps}")
    for err in counts.errors:
        print(f"  error: {err}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "warmup": warmup,
                    "counts": asdict(counts),
                    "verdicts": result,
                    "after": asdict(after),
                    "samples": [asdict(s) for s in samples],
                },
                indent=1,
            )
        )
    ok = flat and counts.fork_failures == 0 and not counts.errors
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
