"""The fault loops' runner: one scenario per process, started by test_faults.py.

    python tests/fault_runner.py SCENARIO   ->  one JSON line on stdout

In the manner of SQLite's OOM tests: a clean run counts the OS calls of
each kind that the scenario's operation makes (cypher_cell._native's
private fault counters); then, for each kind, N = 1..count, each errno
that kind can return, and once or from the Nth call on ("persistent"), the
operation runs again with the Nth call made to fail. Every run must end
with the operation's result intact or a documented fallback (`auto`
settling for a weaker tier, with its MemoryLockWarning), or a clean
cypher_cell exception (a CypherCellError: MemoryLockError, ProviderError,
...) that carries no secret; then, disarmed, new cells of every tier work,
and VmLck (read from /proc/self/status) is back where the clean run left
it: nothing is left locked.

Every run happens in a child forked from this process. A forked child
re-creates the engine's globals (the slot pool, the reaper), so each run
starts from the same empty pool and reaches every call point of arena
creation, and a crash shows as a signal in the wait status instead of
ending the loop. Secrets are random per run of this script and appear in
no output: results are booleans and exception class names.
"""

from __future__ import annotations

import errno as E
import gc
import json
import os
import secrets
import select
import signal
import sys
import tempfile
import termios
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.procfs import status_kib  # tests/ is this script's directory

from cypher_cell import (
    CellExpiredError,
    CellWipedError,
    CypherCell,
    CypherCellError,
    _native,
    doctor,
    load_secrets,
)
from cypher_cell.errors import MemoryLockWarning
from cypher_cell.providers import EnvFile, Prompt, SecretsDir

TIERS = ("secretmem", "locked", "unlocked")

# The errnos each kind of call can really return that matter here. EINTR
# is injected once only: a call retried on EINTR forever would loop on a
# persistent one, as it should.
ERRNOS: dict[str, tuple[int, ...]] = {
    "mmap": (E.ENOMEM, E.EPERM, E.EAGAIN),
    "mprotect": (E.ENOMEM, E.EACCES),
    "memfd_secret": (E.ENOMEM, E.EMFILE, E.ENOSYS),
    "ftruncate": (E.EFBIG, E.EPERM),
    "mmap_secretmem": (E.ENOMEM, E.EPERM, E.EAGAIN),
    "munmap": (E.ENOMEM, E.EINVAL),
    "madvise_dontdump": (E.EINVAL, E.ENOMEM),
    "madvise_wipeonfork": (E.EINVAL, E.ENOMEM),
    "madvise_dontfork": (E.EINVAL, E.ENOMEM),
    "mlock": (E.ENOMEM, E.EPERM, E.EAGAIN),
    "munlock": (E.ENOMEM, E.EPERM),
    "getrlimit": (E.EPERM,),
    "setrlimit": (E.EPERM,),
    "getrandom": (E.EAGAIN, E.ENOSYS, E.EINTR),
    "prctl": (E.EINVAL,),
    "tty_open": (E.ENXIO, E.EIO, E.EMFILE, E.EINTR),
    "tcgetattr": (E.EIO, E.EINTR),
    "tcsetattr": (E.EIO, E.EINTR),
    "tcflush": (E.EIO, E.EINTR),
    "tty_write": (E.EIO, E.EINTR),
    "tty_read": (E.EIO, E.EINTR),
    "file_read": (E.EIO, E.EINTR),
    "openat2": (E.ENOSYS, E.EPERM, E.EAGAIN, E.EMFILE),
    "openat": (E.EMFILE, E.EACCES, E.ELOOP),
    "readlinkat": (E.ENOMEM, E.EACCES),
}

# Failures with a documented fallback that must not fail the operation: a
# canary seeded without getrandom, pages left locked until the next free, a
# mapping that could not be unmapped left inert.
MUST_SUCCEED = frozenset({"getrandom", "munlock", "munmap"})

SMALL = secrets.token_hex(16).encode()  # 32 bytes: a slot
LARGE = secrets.token_hex(2500).encode()  # 5,000 bytes: a region of its own, two pages
RUN_TIMEOUT = 10  # seconds a run may take before SIGALRM ends it (seen as a hang)


class Scenario:
    """One operation under test. `op` runs armed; the rest unarmed."""

    secrets: tuple[bytes, ...] = (SMALL, LARGE)

    def __init__(self) -> None:
        self.cells: list[CypherCell] = []
        self.problems: list[str] = []
        self.fault: tuple[str, int, int, bool] | None = None

    def setup(self) -> None:
        pass

    def op(self) -> None:
        raise NotImplementedError

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        """After `op` returned: its results are right."""

    def cleanup(self) -> None:
        for cell in self.cells:
            cell.wipe()
        self.cells.clear()

    def next_works(self) -> None:
        """Disarmed, after cleanup: new cells of every tier and size work."""
        for tier in TIERS:
            for value in (SMALL, LARGE):
                cell = CypherCell(value, protection=tier)  # type: ignore[arg-type]
                if not (cell == value and cell.protection == tier):
                    self.problems.append(f"next {tier} cell of {len(value)} bytes wrong")
                cell.wipe()

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)


class Create(Scenario):
    tier = "auto"

    def op(self) -> None:
        self.cells.append(CypherCell(SMALL, protection=self.tier))  # type: ignore[arg-type]

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        cell = self.cells[0]
        self.expect(cell == SMALL, "value wrong")
        lock_warnings = [w for w in caught if issubclass(w.category, MemoryLockWarning)]
        if self.tier == "auto":
            # The documented fallback: unlocked only with the (one) warning.
            degraded = cell.protection == "unlocked"
            self.expect(
                len(lock_warnings) == int(degraded), f"{len(lock_warnings)} warnings, {cell.protection}"
            )
        else:
            self.expect(cell.protection == self.tier, f"asked {self.tier}, got {cell.protection}")
            self.expect(not lock_warnings, "a named tier warned")


class CreateSecretmem(Create):
    tier = "secretmem"


class CreateLocked(Create):
    tier = "locked"


class CreateUnlocked(Create):
    tier = "unlocked"


class Large(Scenario):
    """Secrets over a page: a guarded region of their own."""

    def op(self) -> None:
        self.cells.append(CypherCell(LARGE))
        self.cells.append(CypherCell(LARGE, protection="locked"))

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        self.expect(all(c == LARGE for c in self.cells), "value wrong")
        self.expect(self.cells[1].protection == "locked", "asked locked")


class Held(Scenario):
    """Cells of every tier and size made before arming."""

    def setup(self) -> None:
        self.cells = [CypherCell(v, protection=t) for t in TIERS for v in (SMALL, LARGE)]  # type: ignore[arg-type]
        self.values = [v for _ in TIERS for v in (SMALL, LARGE)]


class Reveal(Held):
    def op(self) -> None:
        self.results = [c.reveal() == v for c, v in zip(self.cells, self.values, strict=True)]

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        self.expect(all(self.results), "a value read wrong")


class Expose(Held):
    def op(self) -> None:
        self.results = []
        for cell, value in zip(self.cells, self.values, strict=True):
            with cell.expose() as view:
                self.results.append(view == value)

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        self.expect(all(self.results), "a view read wrong")


class Wipe(Scenario):
    """Enough small cells to lock several pages of two arenas per tier,
    and large ones: wiping unlocks pages and unmaps arenas and regions."""

    def setup(self) -> None:
        self.cells = [CypherCell(SMALL, protection=t) for t in TIERS for _ in range(300)]  # type: ignore[arg-type]
        self.cells += [CypherCell(LARGE, protection=t) for t in TIERS]  # type: ignore[arg-type]

    def op(self) -> None:
        for cell in self.cells:
            cell.wipe()

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        self.expect(all(c.wiped for c in self.cells), "a cell not wiped")


class Ttl(Scenario):
    """Made with a short TTL and left alone: the reaper thread wipes them."""

    def op(self) -> None:
        self.cells.append(CypherCell(SMALL, ttl_sec=0.01, protection="locked"))
        self.cells.append(CypherCell(LARGE, ttl_sec=0.01))
        time.sleep(0.03)

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        for cell in self.cells:
            try:
                cell.reveal()
                self.problems.append("read after its TTL")
            except CellExpiredError:
                pass


class Volatile(Scenario):
    def op(self) -> None:
        self.cells.append(CypherCell(SMALL, volatile=True, protection="locked"))
        self.cells.append(CypherCell(LARGE, volatile=True))
        self.first = [c.reveal() == v for c, v in zip(self.cells, (SMALL, LARGE), strict=True)]

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        self.expect(all(self.first), "first read wrong")
        for cell in self.cells:
            try:
                cell.reveal()
                self.problems.append("a volatile cell read twice")
            except CellWipedError:
                pass


class EnvSmall(Scenario):
    keys = 3

    def setup(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / ".env"
        self.values = {f"KEY_{i}": secrets.token_hex(16) for i in range(self.keys)}
        text = "".join(f"{k}={v}\n" for k, v in self.values.items())
        self.path.write_text(text)
        self.path.chmod(0o600)
        self.secrets = tuple(v.encode() for v in self.values.values())
        self.stores: list[Any] = []

    def op(self) -> None:
        self.stores.append(load_secrets(EnvFile(self.path)))

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        store = self.stores[0]
        self.expect(sorted(store) == sorted(self.values), "keys differ")
        self.expect(all(store[k] == v.encode() for k, v in self.values.items()), "a value differs")
        lock_warnings = [str(w.message) for w in caught if issubclass(w.category, MemoryLockWarning)]
        if self.fault and self.fault[0] == "mlock":
            # The file's working buffer is the run's one mlock: refused, it
            # falls back to unlocked memory, and says so.
            self.expect(
                len(lock_warnings) == 1 and "env-file" in lock_warnings[0], "no warning for unlocked memory"
            )

    def cleanup(self) -> None:
        for store in self.stores:
            store.close()
        self.stores.clear()
        super().cleanup()


class Env2000(EnvSmall):
    keys = 2000


class SecretsDirLoad(Scenario):
    """`load_secrets(SecretsDir(...))`: a plain file, and a Kubernetes-style
    symlink chain (`key -> ..data/key`), opened beneath the directory."""

    def setup(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        root = Path(self.dir.name)
        (root / "..2026").mkdir()
        (root / "..data").symlink_to("..2026")
        (root / "PLAIN").write_bytes(SMALL)
        (root / "..2026" / "LINKED").write_bytes(LARGE)
        (root / "LINKED").symlink_to("..data/LINKED")
        self.stores: list[Any] = []

    def op(self) -> None:
        self.stores.append(load_secrets(SecretsDir(self.dir.name)))

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        store = self.stores[0]
        self.expect(sorted(store) == ["LINKED", "PLAIN"], "keys differ")
        self.expect(store["PLAIN"] == SMALL and store["LINKED"] == LARGE, "a value differs")

    def cleanup(self) -> None:
        for store in self.stores:
            store.close()
        self.stores.clear()
        super().cleanup()


class PromptTty(Scenario):
    """`load_secrets(Prompt(...))` on a pseudo-terminal, answered by a thread."""

    def setup(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self.attrs = termios.tcgetattr(self.master)
        self.stop = threading.Event()
        self.typist = threading.Thread(target=self._type, daemon=True)
        self.typist.start()
        self.stores: list[Any] = []

    def _type(self) -> None:
        shown = b""
        while not self.stop.is_set():
            if not select.select([self.master], [], [], 0.01)[0]:
                continue
            try:
                shown += os.read(self.master, 4096)
            except OSError:
                return
            if shown.endswith(b": "):  # a prompt waits: answer it
                shown = b""
                os.write(self.master, SMALL + b"\r")

    def op(self) -> None:
        self.restore_refused = False
        try:
            self.stores.append(load_secrets(Prompt(["K"], tty_path=self.path)))
        except CypherCellError as exc:
            self.restore_refused = "echo may be left off" in str(exc)
            raise

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        self.expect(self.stores[0]["K"] == SMALL, "answer wrong")

    def cleanup(self) -> None:
        for store in self.stores:
            store.close()
        self.stores.clear()
        # However the prompt ended, the terminal is as it was (echo on),
        # unless the kernel refused to put it back: then the error says so
        # and the test puts it back, as `stty sane` would.
        if termios.tcgetattr(self.master) != self.attrs:
            self.expect(self.restore_refused, "terminal attributes not restored")
            termios.tcsetattr(self.master, termios.TCSANOW, self.attrs)

    def next_works(self) -> None:
        super().next_works()
        cell = _native.prompt_cell("AGAIN: ", tty_path=self.path)
        self.expect(cell == SMALL, "next prompt wrong")
        cell.wipe()
        self.expect(termios.tcgetattr(self.master) == self.attrs, "terminal attributes not restored")
        self.stop.set()
        self.typist.join(5)


class Doctor(Scenario):
    """`cypher-cell doctor`'s probe of every tier and limit."""

    def op(self) -> None:
        self.report = doctor.collect()

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        self.expect(set(self.report.tiers) == set(TIERS), "tiers missing")


class Fork(Scenario):
    """Cells, then fork: in the child every inherited cell reads as wiped
    and new cells work. The child's calls are counted on from the parent's
    (it inherits the armed state and the counts), so N reaches into it."""

    def op(self) -> None:
        self.cells = [CypherCell(SMALL, protection=t) for t in TIERS]  # type: ignore[arg-type]
        self.cells.append(CypherCell(LARGE))
        self.child = run_forked(self._in_child)

    def _in_child(self) -> dict[str, Any]:
        out: dict[str, Any] = {"refused": 0}
        for cell in self.cells:
            try:
                cell.reveal()
            except CellWipedError:
                out["refused"] += 1
        try:
            fresh = CypherCell(SMALL)
            out["fresh"] = fresh == SMALL
        except BaseException as exc:
            out["exception"] = classify(exc, self.secrets)
        out["counts"] = counts()
        _native._fault_disarm()
        again = CypherCell(LARGE, protection="locked")
        out["next"] = again == LARGE
        return out

    def verify(self, caught: list[warnings.WarningMessage]) -> None:
        child = self.child
        if "crashed" in child:
            self.problems.append(f"forked child {child['crashed']}")
            return
        self.expect(child["refused"] == len(self.cells), "an inherited cell was readable")
        self.expect(child.get("next") is True, "the child's next cell wrong")
        if "exception" in child:
            bad = child["exception"]["bad"]
            if bad:
                self.problems.append(f"in the forked child: {bad}")
            elif self.fault and self.fault[0] in MUST_SUCCEED:
                self.problems.append("the forked child's cell failed where a fallback is documented")
        else:
            self.expect(child.get("fresh") is True, "the child's new cell wrong")


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "create-auto": Create,
    "create-secretmem": CreateSecretmem,
    "create-locked": CreateLocked,
    "create-unlocked": CreateUnlocked,
    "large": Large,
    "reveal": Reveal,
    "expose": Expose,
    "wipe": Wipe,
    "ttl": Ttl,
    "volatile": Volatile,
    "envfile-3": EnvSmall,
    "envfile-2000": Env2000,
    "secretsdir": SecretsDirLoad,
    "prompt": PromptTty,
    "fork": Fork,
    "doctor": Doctor,
}


def counts() -> dict[str, int]:
    return {kind: _native._fault_calls(kind) for kind in _native._fault_kinds()}


def classify(exc: BaseException, values: tuple[bytes, ...]) -> dict[str, Any]:
    """An exception's class, and what is wrong with it (None: a clean error).
    Its text is looked at, never reported."""
    text = f"{exc} {exc.args!r}"
    name = type(exc).__name__
    if any(v.decode() in text for v in values):
        return {"type": name, "bad": f"{name} carries a secret"}
    if not isinstance(exc, CypherCellError):
        return {"type": name, "bad": f"raw {name}: {text[:300]}"}
    return {"type": name, "bad": None}


def run_forked(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Runs `body` in a forked child; its dict, or how the child died."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.alarm(RUN_TIMEOUT)
        try:
            out = body()
        except BaseException as exc:  # never fall back into the loop
            where = traceback.extract_tb(exc.__traceback__)[-1]
            out = {"crashed": f"runner error {type(exc).__name__} at line {where.lineno}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"crashed": f"killed by {signal.Signals(os.WTERMSIG(status)).name}"}
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        return {"crashed": f"exit status {os.waitstatus_to_exitcode(status)}"}
    return dict(json.loads(data))


def run_once(make: Callable[[], Scenario], fault: tuple[str, int, int, bool] | None) -> dict[str, Any]:
    """One run, in the forked child: setup, the armed operation, checks."""
    sc = make()
    sc.fault = fault
    sc.setup()
    outcome: dict[str, Any] = {"type": None, "bad": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if fault is None:
            _native._fault_arm("mmap", 0, E.ENOMEM)  # count only
        else:
            _native._fault_arm(*fault)
        try:
            sc.op()
        except BaseException as exc:
            outcome = classify(exc, sc.secrets)
        finally:
            _native._fault_disarm()
    calls = counts()
    if isinstance(sc, Fork) and "counts" in getattr(sc, "child", {}):
        calls = {k: max(n, sc.child["counts"][k]) for k, n in calls.items()}
    if outcome["type"] is None:
        sc.verify(caught)
    elif fault is not None and fault[0] in MUST_SUCCEED:
        sc.problems.append(f"failed with {outcome['type']} where a fallback is documented")
    if any(
        not issubclass(w.category, MemoryLockWarning) or any(v.decode() in str(w.message) for v in sc.secrets)
        for w in caught
    ):
        sc.problems.append("a warning other than MemoryLockWarning, or one carrying a secret")
    sc.cleanup()
    sc.next_works()
    del sc.cells
    gc.collect()
    return {"outcome": outcome, "problems": sc.problems, "counts": calls, "vmlck": status_kib("VmLck")}


def main(name: str) -> None:
    make = SCENARIOS[name]
    started = time.monotonic()
    clean = run_forked(lambda: run_once(make, None))
    bad: list[dict[str, Any]] = []
    if "crashed" in clean or clean["problems"] or clean["outcome"]["type"]:
        print(json.dumps({"clean": clean, "bad": [{"run": "clean", **clean}]}))
        return
    combos = 0
    results: Counter[str] = Counter()
    for kind, count in clean["counts"].items():
        for nth in range(1, count + 1):
            for errno in ERRNOS[kind]:
                for persistent in (False,) if errno == E.EINTR else (False, True):
                    fault = (kind, nth, errno, persistent)
                    got = run_forked(lambda fault=fault: run_once(make, fault))  # type: ignore[misc]
                    combos += 1
                    where = {"kind": kind, "nth": nth, "errno": E.errorcode[errno], "persistent": persistent}
                    if "crashed" in got:
                        bad.append({**where, "crashed": got["crashed"]})
                        continue
                    results[got["outcome"]["type"] or "ok"] += 1
                    problems = list(got["problems"])
                    if got["outcome"]["bad"]:
                        problems.append(got["outcome"]["bad"])
                    if got["vmlck"] > clean["vmlck"]:
                        problems.append(f"VmLck {got['vmlck']} kB, {clean['vmlck']} kB after the clean run")
                    if problems:
                        bad.append({**where, "problems": problems})
    print(
        json.dumps(
            {
                "clean": clean,
                "combos": combos,
                "results": results,
                "bad": bad,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
