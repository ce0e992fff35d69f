"""Benchmark `cypher-cell run`'s masking pipe against `cat`, in one run.

Run from the repository root (cypher_cell importable)::

    python bench/bench_run.py              # 1 GiB, 5 rounds
    python bench/bench_run.py --quick      # 64 MiB, 1 round (smoke run)
    python bench/bench_run.py --json out.json

The same producer (`head -c SIZE` of a file of log-like lines, so the child
costs the same in every case) writes SIZE bytes to its stdout, read to the
end by this process through a pipe:

- ``cat``: ``head -c SIZE FILE | cat`` -- the anchor: one more process
  copying a pipe to a pipe, the floor for any filter in between.
- ``run``: ``cypher-cell run --env-file F -- head -c SIZE FILE`` with 10
  live secrets (none in the output: the common case), masked through
  RedactStream.
- ``run --no-mask``: the same without masking (the child writes to our
  pipe itself): what starting run costs.

Figures: the median wall time over the rounds (interleaved), MiB/s, and
run's ratio to cat; run's peak RSS (VmHWM, read from /proc while its child
waits at the end, so it is the kernel's figure for the whole copy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINE = b"2026-01-01T12:00:00Z INFO handled GET /api/v1/items?page=3 in 3.2 ms status=200 user=42\n"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def drain(args: list[str], size: int, *, shell: bool = False) -> tuple[float, int]:
    """Seconds to read `size` bytes of `args`' stdout to the end; the peak
    RSS (KiB) of the process started (for `run`: read before it exits)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, shell=shell
    )
    assert proc.stdout is not None and proc.stdin is not None
    fd = proc.stdout.fileno()
    got = 0
    while got < size:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        got += len(chunk)
    elapsed = time.perf_counter() - start
    peak = status_kib(proc.pid, "VmHWM")
    proc.stdin.close()
    rest = proc.stdout.read()
    proc.wait()
    if got + len(rest) != size or proc.returncode != 0:
        raise SystemExit(f"{args[:3]}...: {got + len(rest)} bytes, status {proc.returncode}")
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB, one round")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    opts = parser.parse_args()
    # Whole lines: output that ends in the middle of one, then pauses, can
    # end in a partial match that is shown as [REDACTED] after 50 ms.
    size = ((64 if opts.quick else 1024) << 20) // len(LINE) * len(LINE)
    rounds = 1 if opts.quick else 5

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "log.txt"
        data.write_bytes(LINE * (size // len(LINE)))
        env = Path(tmp) / ".env"
        env.write_bytes(b"".join(b"SECRET_%d=%s\n" % (i, secrets.token_hex(20).encode()) for i in range(10)))
        env.chmod(0o600)
        # The producer waits for stdin to close after writing, so that
        # run's peak memory can be read while it is still there.
        producer = f"head -c {size} {data}; cat >/dev/null"
        cases = {
            "cat": ([f"{{ {producer}; }} | cat"], True),
            "run": (
                [
                    sys.executable,
                    "-m",
                    "cypher_cell",
                    "run",
                    "--env-file",
                    str(env),
                    "--",
                    "sh",
                    "-c",
                    producer,
                ],
                False,
            ),
            "run --no-mask": (
                [
                    sys.executable,
                    "-m",
                    "cypher_cell",
                    "run",
                    "--no-mask",
                    "--env-file",
                    str(env),
                    "--",
                    "sh",
                    "-c",
                    producer,
                ],
                False,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        peaks: dict[str, int] = {}
        for _ in range(rounds):
            for name, (args, shell) in cases.items():
                elapsed, peak = drain(args, size, shell=shell)
                times[name].append(elapsed)
                peaks[name] = max(peaks.get(name, 0), peak)

    mib = size / (1 << 20)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"cypher-cell run vs cat, {mib:.0f} MiB of log lines, median of {rounds} "
        f"(Python {platform.python_version()})"
    )
    print(f"{'':16}{'seconds':>9}{'MiB/s':>9}{'vs cat':>8}")
    for name in cases:
        print(f"{name:16}{med[name]:9.2f}{mib / med[name]:9.0f}{med[name] / med['cat']:7.1f}x")
    print(f"run's peak RSS (VmHWM): {peaks['run'] / 1024:.1f} MiB for {mib:.0f} MiB piped")
    if opts.json:
        figures = {"size": size, "rounds": rounds, "median_s": med, "run_peak_kib": peaks["run"]}
        Path(opts.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
