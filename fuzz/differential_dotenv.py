"""Differential fuzzing of cypher_cell's `.env` parser against python-dotenv.

Not part of pytest: a long run, kept in the repository and run by hand
(the README's Development section gives the command). Every case is a file
made by this script's own generator from (seed, case number), so any case
is reproduced with ``--seed S --case N``. Each case is loaded by
python-dotenv's ``dotenv_values()`` (the release the test extra pins) and
by ``cypher_cell._native.DotenvFile`` with the same ``interpolate`` and
``encoding``, and compared as tests/test_envfile.py compares them: the same
keys in the same order, equal values for every key (None: no value), as
many problems as python-dotenv logged warnings, and the same failure
(invalid UTF-8 fails both).

Known, deliberate divergences are counted apart, not reported:
- ``nul``: a file with a NUL byte is refused as a whole (the parser's
  documented rule, which issue 7 asks to relax to python-dotenv's result);
- ``cap``: the expansion of ``${...}`` went over DotenvFile's size limit;
- ``pem``: with ``--pem-rule``, a statement whose unquoted value opens PEM
  armour is skipped with the armour's lines after it, none of them a key
  (issue 7, finding 2). Such a case counts as expected when every block
  our parser reports (a problem naming its last line) holds only lines
  that can be inside armour, and our result is python-dotenv's for the
  same file with those blocks blanked, plus one problem per block.
Everything else is a divergence: its case number and kind are printed, and
a minimized reproducer is written to ``--out`` (``<case>.env`` and
``<case>.json``). A worker that dies (a crash in native code) is reported
with the case it was running, saved unminimized.

Usage (two workers, ten minutes):
    nice python fuzz/differential_dotenv.py --workers 2 --minutes 10
    python fuzz/differential_dotenv.py --seed 1 --case 12345 --show
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import multiprocessing as mp
import os
import queue
import random
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from cypher_cell import DotenvSyntaxError
from cypher_cell._native import DotenvFile

# --------------------------------------------------------------- generator

BLANKS = [" ", " ", " ", "\t", "\x0b", "\x0c", "\u00a0", "\u3000", "\u2003", "\x1c", "\x1f", "\x85", "\u2028"]
NOT_BLANK = ["\u200b", "\ufeff", "\u180e"]  # look blank, are not (str.isspace() is False)
NAMES = [
    "A",
    "B",
    "C",
    "KEY_1",
    "export",
    "EXT",
    "EMPTY",
    "a.b",
    "k-y",
    "k/y",
    "\u00e9t\u00e9",
    "K:Y",
    "$X",
    "_",
    "x1",
]
REFS = [
    "${A}",
    "${B:-d}",
    "${NOPE}",
    "${EXT}",
    "${EMPTY:-x}",
    "${A:b}",
    "${",
    "}",
    "$",
    ":-",
    "${NOPE:-}",
    "${:-e}",
    "$${EXT}",
    "${A:-x:-y}}",
    "${X${A}}",
    "${ A }",
    "${k-y}",
    "${export}",
    "${EXT:-${A}}",
]
ESCAPES = [
    "\\\\",
    "\\'",
    '\\"',
    "\\n",
    "\\t",
    "\\r",
    "\\a",
    "\\b",
    "\\f",
    "\\v",
    "\\x41",
    "\\u00e9",
    "\\0",
    "\\q",
    "\\$",
    "\\#",
    "\\ ",
]
SYNTAX = ["#", " #", "\t#", "'", '"', "=", "==", "export ", "\\", "\n", "\r\n", "\r"]
TEXT = ["x", "value", "p@ss w0rd", "\u00e9", "\u65e5\u672c", "\U0001f389", "a b", "--", "+/", "=="]
PEM_TYPES = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "CERTIFICATE"]
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
NO_SIGNS = str.maketrans("+/", "Aa")
ENV = {"EXT": "ext-value", "EMPTY": ""}


def _blank(r: random.Random) -> str:
    return "".join(r.choice(BLANKS) for _ in range(r.choice([0, 0, 0, 1, 1, 2])))


def _key(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.7:
        return r.choice(NAMES)
    if roll < 0.8:
        return "'" + r.choice([*NAMES, "quoted key", "k=v", "multi\nline", ""]) + "'"
    if roll < 0.9:
        return "".join(r.choice(B64 + "_.-") for _ in range(r.randint(1, 12)))
    return "".join(r.choice([*TEXT, *SYNTAX, *NOT_BLANK, "A"]) for _ in range(r.randint(1, 3)))


def _body(r: random.Random, quoted: bool) -> str:
    parts = []
    for _ in range(r.choice([0, 1, 1, 2, 3, 4, 6])):
        roll = r.random()
        if roll < 0.35:
            parts.append(r.choice(TEXT))
        elif roll < 0.6:
            parts.append(r.choice(REFS))
        elif roll < 0.8:
            parts.append(r.choice(ESCAPES))
        elif roll < 0.95:
            parts.append(
                r.choice(SYNTAX if quoted else [s for s in SYNTAX if "\n" not in s and "\r" not in s])
            )
        else:
            parts.append(r.choice(BLANKS + NOT_BLANK))
    return "".join(parts)


def _pem(r: random.Random, key: str) -> list[str]:
    kind = r.choice(PEM_TYPES)
    body = []
    for i in range(r.randint(1, 6)):
        n = r.choice([64, 64, 64, 40, 20, 4])
        line = base64.b64encode(r.randbytes(n)).decode()[:n]
        if r.random() < 0.5:  # a third of RSA keys' last lines have neither
            line = line.translate(NO_SIGNS)
        if i and r.random() < 0.3:
            line = line[: -r.choice([1, 2])] + "=" * r.choice([1, 2])
        body.append(line)
    end = f"-----END {kind}-----"
    style = r.random()
    if style < 0.6:  # unquoted: the lines below the first are not part of the value
        lines = [f"{key}=-----BEGIN {kind}-----", *body]
        if r.random() < 0.85:
            lines.append(end)
        return lines
    q = r.choice(["'", '"'])
    return [f"{key}={q}-----BEGIN {kind}-----", *body, end + q]


def _assignment(r: random.Random) -> list[str]:
    export = r.choice(["", "", "", "export ", "export\t", "export\u00a0"])
    quote = r.choice(["", "", "'", '"'])
    value = quote + _body(r, bool(quote)) + (quote if r.random() < 0.95 else "")
    comment = r.choice(["", "", "", " # c", "#c", "\t#x y", " #'\"", " #${A}", " junk"])
    line = _blank(r) + export + _key(r) + _blank(r) + "=" + _blank(r) + value + _blank(r) + comment
    return line.split("\n")


def _reference(r: random.Random) -> list[str]:
    # References to values defined earlier, with defaults.
    return [f"{r.choice(NAMES[:7])}={r.choice(REFS)}{r.choice(TEXT)}{r.choice(REFS)}"]


def _junk(r: random.Random) -> list[str]:
    pieces = [*TEXT, *SYNTAX, *REFS, *ESCAPES, *BLANKS, *NOT_BLANK]
    return ["".join(r.choice(pieces) for _ in range(r.randint(1, 8)))]


STATEMENTS: list[tuple[float, Callable[[random.Random], list[str]]]] = [
    (0.55, _assignment),
    (0.07, lambda r: [_blank(r) + _key(r) + r.choice(["", " # c", " x"])]),
    (0.08, lambda r: [_blank(r) + "#" + _body(r, False)]),
    (0.06, lambda r: [_blank(r)]),
    (0.08, lambda r: _pem(r, r.choice(["TLS_KEY", "KEY", "export SSH_KEY", "A", "'Q K'"]))),
    (0.08, _reference),
    (0.08, _junk),
]


def _statement(r: random.Random) -> list[str]:
    makers = [m for _, m in STATEMENTS]
    return r.choices(makers, [w for w, _ in STATEMENTS])[0](r)


@dataclass(frozen=True)
class Case:
    data: bytes
    interpolate: bool
    encoding: str


def generate(seed: int, number: int) -> Case:
    """One case, the same for the same (seed, number)."""
    r = random.Random(f"{seed}:{number}")  # noqa: S311 - test data, reproducible by design
    lines: list[str] = []
    for _ in range(r.choice([0, 1, 2, 3, 4, 5, 6, 8, 10, 14, 20])):
        lines.extend(_statement(r))
    ending = r.choice(["\n", "\n", "\n", "\r\n", "\r", "mixed"])
    text = ""
    for line in lines:
        text += line + (r.choice(["\n", "\r\n", "\r"]) if ending == "mixed" else ending)
    if text and r.random() < 0.3:
        text = text[:-1]
    if text and r.random() < 0.1:  # cut, move or double a span: odd shapes
        i, j = sorted(r.randrange(len(text) + 1) for _ in range(2))
        text = r.choice(
            [text[:i] + text[j:], text[:i] + text[i:j] * 2 + text[j:], text[i:j] + text[:i] + text[j:]]
        )
    text = "\ufeff" * r.choice([0] * 17 + [1, 1, 2]) + text
    data = text.encode("utf-8")
    if data and r.random() < 0.01:  # a NUL somewhere
        i = r.randrange(len(data) + 1)
        data = data[:i] + b"\x00" + data[i:]
    if data and r.random() < 0.005:  # not UTF-8
        i = r.randrange(len(data) + 1)
        data = data[:i] + r.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + data[i:]
    return Case(data, r.random() < 0.8, r.choice(["utf-8", "utf-8", "utf-8-sig"]))


# ------------------------------------------------------------- comparison


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "could not parse" in record.getMessage():
            self.count += 1


_HANDLER = _Count()


@dataclass
class Outcome:
    """What one parser made of a file: its keys in order (with values, for
    python-dotenv's) and a problem count, or the failure's kind."""

    pairs: list[tuple[str, str | None]] = field(default_factory=list)
    problems: int = 0
    failure: str | None = None
    #: Ours only: (first line, last line) of each unquoted PEM block skipped.
    pem: list[tuple[int, int]] = field(default_factory=list)


# The PEM rule (issue 7, finding 2): a statement whose unquoted value opens
# PEM armour, with the armour's lines after it, is one skipped statement,
# reported as a problem that names its last line.
_PEM_PROBLEM = re.compile(r"PEM block.*up to line (\d+)")
_SPACE = "[^\\S\\n]"
_OPENER = re.compile(
    rf"^\s*(?:(?:export{_SPACE}+)?(?:'[^']+'|[^=#\s'][^=#\s]*){_SPACE}*={_SPACE}*)?-----BEGIN "
)
_ARMOUR = re.compile(r"^(?:-----(?:BEGIN|END) .*|=?[A-Za-z0-9+/]*={0,2}|[A-Za-z][A-Za-z0-9-]*:(?:\s.*)?)$")


def _failure_kind(message: str) -> str:
    for word, kind in (("UTF-8", "utf-8"), ("NUL", "nul"), ("max_size", "cap")):
        if word in message:
            return kind
    return "other"


class Checker:
    """Runs both parsers on cases through one file of its own."""

    def __init__(self, pem_rule: bool) -> None:
        self.pem_rule = pem_rule
        shm = "/dev/shm"  # noqa: S108 - a private file from mkstemp, in memory
        fd, self.path = tempfile.mkstemp(
            prefix="cc-differential-", suffix=".env", dir=shm if os.path.isdir(shm) else None
        )
        os.close(fd)

    def close(self) -> None:
        os.unlink(self.path)

    def _write(self, data: bytes) -> None:
        with open(self.path, "wb") as out:
            out.write(data)

    def theirs(self, case: Case) -> Outcome:
        _HANDLER.count = 0
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                values = dotenv_values(self.path, interpolate=case.interpolate, encoding=case.encoding)
        except UnicodeDecodeError:
            return Outcome(failure="utf-8")
        except Exception as e:  # any other failure is a finding
            return Outcome(failure=f"python-dotenv:{type(e).__name__}")
        return Outcome(list(values.items()), _HANDLER.count + len(caught))

    def ours(self, case: Case, expected: Outcome) -> tuple[Outcome, set[str]]:
        """Our outcome, and the keys (of `expected`) whose values differ:
        compared inside the cell, as the tests do."""
        try:
            f = DotenvFile(self.path, encoding=case.encoding, interpolate=case.interpolate)
        except DotenvSyntaxError as e:
            return Outcome(failure=_failure_kind(str(e))), set()
        except Exception as e:
            return Outcome(failure=f"ours:{type(e).__name__}"), set()
        with f:
            keys = f.keys()
            present = set(keys)
            wrong = {k for k, v in expected.pairs if k in present and not self._same_value(f, k, v)}
            problems = f.problems()
        pem = [(line, int(m.group(1))) for line, what in problems if (m := _PEM_PROBLEM.search(what))]
        return Outcome([(k, None) for k in keys], len(problems), pem=pem), wrong

    @staticmethod
    def _same_value(f: DotenvFile, key: str, value: str | None) -> bool:
        if value is None or not f.has_value(key):
            return value is None and not f.has_value(key)
        cell = f.cell(key)
        try:
            return bool(cell == value.encode("utf-8", "surrogateescape"))
        finally:
            cell.wipe()

    def compare(self, case: Case) -> tuple[str | None, Outcome]:
        """The kind of divergence (None if none), and our outcome."""
        self._write(case.data)
        expected = self.theirs(case)
        got, wrong = self.ours(case, expected)
        kind = None
        if expected.failure or got.failure:
            both_fail = expected.failure == got.failure or (expected.failure, got.failure) == ("utf-8", "nul")
            if expected.failure is None and got.failure in ("nul", "cap"):
                kind = got.failure
            elif not both_fail:
                kind = f"failure:{expected.failure}/{got.failure}"
        elif [k for k, _ in expected.pairs] != [k for k, _ in got.pairs]:
            kind = "keys"
        elif wrong:
            kind = "values"
        elif expected.problems != got.problems:
            kind = "problems"
        return kind, got

    def explained_by_pem_rule(self, case: Case, got: Outcome) -> bool:
        """Whether the divergence is the PEM rule's: each block our parser
        skipped starts at a line whose unquoted value (or the line itself)
        opens PEM armour and holds only lines that can be inside armour
        (base64, headers, BEGIN/END lines, blank lines), and our outcome is
        python-dotenv's for the same file with those blocks blanked (line
        numbers kept), plus one problem per block."""
        if got.failure or not got.pem:
            return False
        try:
            lines = case.data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
        except UnicodeDecodeError:
            return False
        for first, last in got.pem:
            if not 1 <= first <= last <= len(lines):
                return False
            opener = lines[first - 1].lstrip("\ufeff") if first == 1 else lines[first - 1]
            body = lines[first:last]
            if not _OPENER.match(opener) or not all(_ARMOUR.match(line.strip()) for line in body):
                return False
            lines[first - 1 : last] = [""] * (last - first + 1)
        self._write("\n".join(lines).encode("utf-8"))
        expected = self.theirs(case)
        self._write(case.data)
        again, wrong = self.ours(case, expected)
        same_keys = [k for k, _ in again.pairs] == [k for k, _ in expected.pairs]
        return (
            expected.failure is None
            and same_keys
            and not wrong
            and again.problems == expected.problems + len(got.pem)
        )

    def classify(self, case: Case) -> str | None:
        """None if both agree; "expected:..." for a known divergence; else
        the divergence's kind."""
        kind, got = self.compare(case)
        if kind in ("nul", "cap"):
            return f"expected:{kind}"
        if kind and self.pem_rule and self.explained_by_pem_rule(case, got):
            return "expected:pem"
        return kind

    def minimize(self, case: Case, kind: str) -> Case:
        """Greedy: drop lines, then ever smaller byte spans, while the case
        still diverges the same way (at most a few thousand tries)."""
        budget = [3000]

        def same(data: bytes) -> bool:
            budget[0] -= 1
            return budget[0] > 0 and self.classify(Case(data, case.interpolate, case.encoding)) == kind

        lines = case.data.split(b"\n")
        i = 0
        while i < len(lines) and len(lines) > 1:
            if same(b"\n".join(lines[:i] + lines[i + 1 :])):
                del lines[i]
            else:
                i += 1
        data = b"\n".join(lines)
        span = max(1, len(data) // 2)
        while span >= 1 and budget[0] > 0:
            i = 0
            while i < len(data):
                if same(data[:i] + data[i + span :]):
                    data = data[:i] + data[i + span :]
                else:
                    i += span
            span //= 2
        return Case(data, case.interpolate, case.encoding)


# ----------------------------------------------------------------- driver


def _setup_process() -> None:
    # Interpolation reads the environment: both parsers see only this.
    os.environ.clear()
    os.environ.update(ENV)
    logger = logging.getLogger("dotenv")
    logger.addHandler(_HANDLER)
    logger.propagate = False


def save(out: Path, seed: int, number: int, kind: str, case: Case) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{number}.env").write_bytes(case.data)
    meta = {
        "seed": seed,
        "case": number,
        "kind": kind,
        "interpolate": case.interpolate,
        "encoding": case.encoding,
    }
    (out / f"{number}.json").write_text(json.dumps(meta) + "\n")


def worker(w: int, args: argparse.Namespace, deadline: float, current: Any, results: Any) -> None:
    _setup_process()
    checker = Checker(args.pem_rule)
    counts: dict[str, int] = {}
    found: list[tuple[int, str]] = []
    number, done = args.start + w, 0
    end = None if args.cases is None else args.start + args.cases
    next_report = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and (end is None or number < end):
            current.value = number
            case = generate(args.seed, number)
            kind = checker.classify(case)
            if kind is not None:
                counts[kind] = counts.get(kind, 0) + 1
                if not kind.startswith("expected:"):
                    found.append((number, kind))
                    if len(found) <= args.keep:  # the rest are counted only
                        save(args.out, args.seed, number, kind, checker.minimize(case, kind))
                        print(f"divergence: seed {args.seed} case {number}: {kind}", flush=True)
            done += 1
            number += args.workers
            if w == 0 and time.monotonic() > next_report:
                next_report += 60
                print(f"... worker 0: {done} cases", flush=True)
    finally:
        checker.close()
    results.put((w, done, counts, found))


def one_case(args: argparse.Namespace) -> int:
    _setup_process()
    case = generate(args.seed, args.case)
    checker = Checker(args.pem_rule)
    try:
        kind = checker.classify(case)
    finally:
        checker.close()
    if args.show:
        print(repr(case.data))
    said = f"interpolate={case.interpolate}, encoding={case.encoding}"
    print(f"seed {args.seed} case {args.case} ({said}): {kind or 'same'}")
    return 0 if kind is None or kind.startswith("expected:") else 1


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    currents = [ctx.Value("q", -1) for _ in range(args.workers)]
    deadline = start + args.minutes * 60
    procs = [
        ctx.Process(target=worker, args=(w, args, deadline, currents[w], results))
        for w in range(args.workers)
    ]
    rule = "on" if args.pem_rule else "off"
    print(f"seed {args.seed}, {args.workers} workers, {args.minutes:g} min, pem rule {rule}", flush=True)
    for proc in procs:
        proc.start()
    reported: dict[int, tuple[int, dict[str, int], list[tuple[int, str]]]] = {}
    crashed: list[int] = []
    while len(reported) + len(crashed) < args.workers:
        try:
            w, done, counts, found = results.get(timeout=5)
            reported[w] = (done, counts, found)
        except queue.Empty:
            for w, proc in enumerate(procs):
                if w not in reported and w not in crashed and proc.exitcode not in (None, 0):
                    number = currents[w].value
                    save(args.out, args.seed, number, f"crash:{proc.exitcode}", generate(args.seed, number))
                    print(
                        f"CRASH: worker {w} died ({proc.exitcode}) on seed {args.seed} case {number}",
                        flush=True,
                    )
                    crashed.append(w)
    for proc in procs:
        proc.join()
    elapsed = time.monotonic() - start
    total = sum(d for d, _, _ in reported.values())
    counts = {}
    found = []
    for _, c, f in reported.values():
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
        found.extend(f)
    print(f"{total} cases in {elapsed:.0f} s: {total / elapsed:.0f} cases/s")
    for k in sorted(counts):
        print(f"  {k}: {counts[k]}")
    print(f"divergences: {len(found)} (reproducers in {args.out}/)" if found else "divergences: 0")
    return 1 if found or crashed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--cases", type=int, help="stop after this many cases (in all)")
    p.add_argument("--start", type=int, default=0, help="first case number")
    p.add_argument("--case", type=int, help="run this one case and say what it gives")
    p.add_argument("--show", action="store_true", help="with --case: print the file (repr)")
    p.add_argument("--pem-rule", action="store_true", help="unquoted PEM blocks are skipped (expected)")
    p.add_argument("--keep", type=int, default=20, help="reproducers written per worker at most")
    p.add_argument("--out", type=Path, default=Path("fuzz/grown/differential"))
    args = p.parse_args()
    return one_case(args) if args.case is not None else run(args)


if __name__ == "__main__":
    sys.exit(main())
