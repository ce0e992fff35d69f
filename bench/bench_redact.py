"""Benchmark cypher_cell.redact() against what a Python user or a CI runner
would do, measured in the same run.

Run from the repository root (cypher_cell importable, e.g. after
``pip install -e .``)::

    python bench/bench_redact.py                  # full run, about a minute
    python bench/bench_redact.py --quick          # smoke run for tests
    python bench/bench_redact.py --json out.json  # also write the figures as JSON
    python bench/bench_redact.py --check          # exit 1 when a target FAILs

On 16 MiB of log-like text holding a few hundred occurrences of live
secrets (raw and base64), with 10, 1,000 and 10,000 live cells (random
32-character URL-safe tokens, each new set a superset of the last, so the text and
its matches are the same for every count):

- ``redact(text)``: ours, every form of every live cell in one pass;
- one ``text.replace(secret, "[REDACTED]")`` pass: the memory-speed floor;
- a Python ``re`` alternation of the escaped secrets, ``.sub()``: what a
  Python user would write (raw values only);
- a ``str.replace`` loop, one pass per secret: the CI runners' approach
  (raw values only).

``redact`` and the floor are timed on the whole text, interleaved, median of
``--repeat`` runs. The two anchors are slow (their cost grows with the number
of secrets), so they are timed on a slice sized to take about half a second
and reported as throughput and as the time extrapolated to 16 MiB.

Targets (issue 10): at 1,000 secrets ``redact`` within 4x of one
``str.replace`` pass; 10,000 secrets take <= 2x the time of 10.

More sections (the throughput of ``cypher-cell run`` against ``cat``) can be
added to ``SECTIONS``: each is a function of the parsed arguments returning
a dict of figures (printed, and written to the JSON under its name).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import platform
import random
import re
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from cypher_cell import CypherCell, __version__, redact

MIB = 1024 * 1024
R = "[REDACTED]"
TARGET_FLOOR_RATIO_AT_1000 = 4.0
TARGET_SCALING_10000_VS_10 = 2.0

Figures = dict[str, Any]
#: Extra sections: name -> function(args) -> figures. `cypher-cell run`'s
#: throughput against `cat` belongs here.
SECTIONS: dict[str, Callable[[argparse.Namespace], Figures]] = {}


def log_text(size: int, planted: list[str], rng: random.Random) -> str:
    """`size` characters of log lines; every ~64 KiB a line holds one of
    `planted` (raw, or base64 in a Basic auth header)."""
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(5000)]
    lines, n, i = [], 0, 0
    next_plant = 0
    while n < size:
        if n >= next_plant and planted:
            value = planted[i % len(planted)]
            if i % 2:
                auth = base64.b64encode(f"user:{value}".encode()).decode()
                line = f"2026-12-01T00:00:{i % 60:02d}Z DEBUG http headers Authorization: Basic {auth}\n"
            else:
                line = (
                    f"2026-12-01T00:00:{i % 60:02d}Z INFO db connect dsn=postgres://app:{value}@db:5432/app\n"
                )
            i += 1
            next_plant += 64 * 1024
        else:
            line = (
                f"2026-12-01T00:00:{n % 60:02d}Z INFO app.request id={rng.randrange(10**9)} "
                f"path=/{rng.choice(words)}/{rng.choice(words)} status={rng.choice((200, 200, 304, 404))} "
                f"{' '.join(rng.choices(words, k=6))}\n"
            )
        lines.append(line)
        n += len(line)
    return "".join(lines)[:size]


def timed(fn: Callable[[], object]) -> float:
    gc.disable()
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    finally:
        gc.enable()


def sliced_rate(make: Callable[[str], Callable[[], object]], text: str, budget: float) -> Figures:
    """Times `make(slice)()` on a slice of `text` sized to take about
    `budget` seconds; returns MiB/s and the time extrapolated to `text`."""
    size = 16 * 1024
    while True:
        piece = text[:size]
        t = timed(make(piece))
        if t >= budget / 4 or size >= len(text):
            break
        size = min(len(text), max(size * 2, int(size * budget / max(t, 1e-6) / 2)))
    rate = len(piece) / MIB / t
    return {
        "slice_mib": round(len(piece) / MIB, 3),
        "mib_per_s": rate,
        "extrapolated_s": len(text) / MIB / rate,
    }


def measure(args: argparse.Namespace) -> Figures:
    rng = random.Random(args.seed)
    counts = [10, 100, 1000] if args.quick else [10, 1000, 10000]
    size = (1 if args.quick else 16) * MIB
    # No common prefix: re would skip to it with a fast literal search.
    values = [secrets.token_urlsafe(24) for _ in range(max(counts))]
    # Planted values come from the first 10, live at every count.
    text = log_text(size, values[:10], rng)
    cells: list[CypherCell] = []
    rows = []
    for count in counts:
        while len(cells) < count:
            cells.append(CypherCell(values[len(cells)]))
        live = values[:count]
        redact(text[:1000])  # the registry of this count is built (first use)
        ours, floor = [], []
        for _ in range(args.repeat):
            ours.append(timed(lambda: redact(text)))
            floor.append(timed(lambda: text.replace(values[0], R)))
        out = redact(text)
        masked = out.count(R)
        leaked = sum(out.count(v) for v in values[:10])
        pattern = re.compile("|".join(map(re.escape, live)))
        anchor_re = sliced_rate(lambda piece, p=pattern: lambda: p.sub(R, piece), text, args.budget)

        def replace_loop(piece: str, live: list[str] = live) -> Callable[[], object]:
            def run() -> str:
                out = piece
                for v in live:
                    out = out.replace(v, R)
                return out

            return run

        anchor_loop = sliced_rate(replace_loop, text, args.budget)
        row = {
            "secrets": count,
            "text_mib": size / MIB,
            "redact_s": statistics.median(ours),
            "redact_min_s": min(ours),
            "floor_s": statistics.median(floor),
            "re_alternation": anchor_re,
            "replace_loop": anchor_loop,
            "masked": masked,
            "leaked": leaked,
        }
        row["redact_vs_floor"] = row["redact_s"] / row["floor_s"]
        rows.append(row)
        print_row(row)
    for c in cells:
        c.wipe()
    return {"rows": rows}


def print_row(row: Figures) -> None:
    mib, ours = row["text_mib"], row["redact_s"]
    print(
        f"{row['secrets']:>6,} secrets: redact {ours * 1e3:8.1f} ms ({mib / ours:7.0f} MiB/s)"
        f" | one str.replace {row['floor_s'] * 1e3:6.1f} ms -> {row['redact_vs_floor']:.2f}x the floor"
        f" | re alternation {row['re_alternation']['mib_per_s']:8.2f} MiB/s"
        f" (~{row['re_alternation']['extrapolated_s']:.1f} s)"
        f" | replace loop {row['replace_loop']['mib_per_s']:8.2f} MiB/s"
        f" (~{row['replace_loop']['extrapolated_s']:.1f} s)"
        f" | {row['masked']} masked, {row['leaked']} left",
        flush=True,
    )


def targets(figures: Figures) -> list[tuple[str, bool, str]]:
    rows = {r["secrets"]: r for r in figures["rows"]}
    out = []
    mid, low, high = sorted(rows)[1], min(rows), max(rows)
    ratio = rows[mid]["redact_vs_floor"]
    out.append(
        (
            f"redact at {mid:,} secrets within {TARGET_FLOOR_RATIO_AT_1000:g}x of one str.replace pass",
            ratio <= TARGET_FLOOR_RATIO_AT_1000,
            f"{ratio:.2f}x",
        )
    )
    scale = rows[high]["redact_s"] / rows[low]["redact_s"]
    best = rows[high]["redact_min_s"] / rows[low]["redact_min_s"]
    out.append(
        (
            f"{high:,} secrets <= {TARGET_SCALING_10000_VS_10:g}x the time of {low:,}",
            scale <= TARGET_SCALING_10000_VS_10,
            f"{scale:.2f}x (medians; fastest runs {best:.2f}x)",
        )
    )
    out.append(("nothing planted left unmasked", all(r["leaked"] == 0 for r in rows.values()), ""))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 MiB, 10/100/1,000 secrets")
    parser.add_argument("--repeat", type=int, default=None, help="runs per median (default 15, quick 3)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per anchor slice (default 0.5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target FAILs")
    args = parser.parse_args()
    args.repeat = args.repeat or (3 if args.quick else 15)
    args.budget = args.budget or (0.05 if args.quick else 0.5)
    print(f"cypher_cell {__version__}, CPython {platform.python_version()}, {platform.machine()}")
    figures: Figures = {"redact": measure(args)}
    for name, section in SECTIONS.items():
        figures[name] = section(args)
        print(f"{name}: {json.dumps(figures[name])}")
    results = targets(figures["redact"])
    figures["targets"] = [{"target": t, "pass": ok, "measured": m} for t, ok, m in results]
    for t, ok, m in results:
        print(f"{'PASS' if ok else 'FAIL'}  {t} {m}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 1 if args.check and not all(ok for _, ok, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
