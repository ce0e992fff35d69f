"""`cypher-cell run`: a command with the loaded secrets in its environment,
its output masked.

The child is started natively (`spawn_with_secrets`): its environment block
is built in locked memory from the cells, read in place by the child and
zeroed once it has exec'd, so no value is ever a Python object here. Its
stdout and stderr come back through pipes (or a pseudo-terminal when our
stdout is a terminal) and pass through one `MaskedOutput` each (the
matcher `RedactStream` wraps, with the reading and writing done natively, so
the child's unmasked bytes are never a Python object): bytes are written
out as soon as they cannot be part of a secret; a trailing partial match is
held back until the next bytes decide it, or `FLUSH_AFTER` passes and the
held part is written as ``[REDACTED]``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import termios
import threading
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass, field

from cypher_cell._native import SPAWN_PTY, MaskedOutput, spawn_with_secrets
from cypher_cell.store import SecretStore

#: The signals passed on to the child.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)
#: How long a held-back partial match waits for the bytes that decide it.
FLUSH_AFTER = 0.05
#: Read size of our stdin (keys typed for the child's terminal).
CHUNK = 1 << 16
#: si_code of a signal the kernel sent itself (the terminal driver's ^C,
#: hang-up, resize): it went to the terminal's whole foreground group.
SI_KERNEL = 0x80
#: What Python ignores for itself; the child gets the default back, as
#: subprocess's restore_signals does.
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)
#: How a sink ends without an error to report: our reader left, our
#: terminal hung up.
BROKEN = (errno.EPIPE, errno.EIO)


class RunError(Exception):
    """The command could not be started (the message names it); `status`
    is the shell's convention: 127 not found, 126 not executable. Or its
    output could not be written (ENOSPC, say): `status` 1, once the command
    has ended."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def exit_status(wait_status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + N for
    signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _winsize(fd: int) -> bytes:
    return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)


@dataclass
class _Pump:
    """One output of the child: `masked` reads it from `source`, masks it and
    writes it to our descriptor, all natively (the bytes read are in locked
    memory until masked, then zeroed)."""

    source: int
    masked: MaskedOutput
    last: float = 0.0

    @classmethod
    def to(cls, source: int, sink: int) -> _Pump:
        return cls(source, MaskedOutput(source, sink))


@dataclass
class _Child:
    pid: int
    #: The pty master, when the child has a terminal of its own.
    master: int | None = None
    #: Our terminal, whose size the pty copies.
    terminal: int | None = None
    #: The child is in our process group (no pty): the terminal's own
    #: signals reached it already.
    shares_group: bool = True
    #: Set once the child is reaped: the forwarding thread stops.
    done: bool = False


def _forward(child: _Child, info: signal.struct_siginfo) -> None:
    sig = info.si_signo
    if child.shares_group and info.si_code == SI_KERNEL:
        return  # sent by the terminal to its foreground group, child included
    if sig == signal.SIGWINCH and child.master is not None and child.terminal is not None:
        # A new size on the pty makes the kernel signal its foreground group.
        with contextlib.suppress(OSError):
            size = _winsize(child.terminal)
            if size != _winsize(child.master):
                fcntl.ioctl(child.master, termios.TIOCSWINSZ, size)
                return
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, sig)


def _forwarder(child: _Child) -> None:
    """Runs in a thread: takes each forwarded signal (blocked in every
    thread) with its siginfo and passes it on."""
    while True:
        info = signal.sigwaitinfo(FORWARDED)
        if child.done:
            return
        _forward(child, info)


class _Loop:
    """Copies the child's outputs out, masked, until each reaches its end,
    and our stdin to the child's pty (`stdin_to`) meanwhile. A source whose
    sink broke is closed at once (the child meets a closed pipe, or a
    hung-up terminal); the others stay open for the caller to close."""

    def __init__(self, pumps: list[_Pump], stdin_to: int | None, child: _Child) -> None:
        self.live = {p.source: p for p in pumps}
        self.stdin_to = stdin_to
        self.stdin_open = stdin_to is not None
        self.typed = b""  # read from our stdin, not yet taken by the pty
        self.child = child

    def run(self) -> None:
        while self.live:
            now = time.monotonic()
            waits = [p.last + FLUSH_AFTER - now for p in self.live.values() if p.masked.pending()]
            readers = list(self.live)
            writers = []
            if self.stdin_to is not None and self.typed:
                writers.append(self.stdin_to)
            elif self.stdin_to is not None and self.stdin_open:
                readers.append(0)
            ready, writable, _ = select.select(readers, writers, [], max(0.0, min(waits)) if waits else None)
            now = time.monotonic()
            for fd in ready:
                if fd == 0:
                    self._read_stdin()
                else:
                    self._read(fd)
            if writable and self.stdin_to is not None:
                try:
                    self.typed = self.typed[os.write(self.stdin_to, self.typed) :]
                except BlockingIOError:
                    pass
                except OSError:  # the child's terminal is gone: nobody to type to
                    self.typed = b""
                    self.stdin_open = False
            for pump in self.live.values():
                if pump.masked.pending() and now - pump.last >= FLUSH_AFTER:
                    pump.masked.flush()

    def _read_stdin(self) -> None:
        try:
            self.typed = os.read(0, CHUNK)
        except OSError:  # EIO: our terminal hung up (SIGHUP is forwarded)
            self.typed = b""
        self.stdin_open = bool(self.typed)

    def _read(self, fd: int) -> None:
        pump = self.live[fd]
        try:
            n = pump.masked.pump()
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a pty master once every slave is closed
                raise
            n = 0
        if n:
            # The pause that releases a held part is the child's: it starts
            # once this write is done (a slow reader of ours is not one).
            pump.last = time.monotonic()
        if n and pump.masked.sink_open:
            return
        pump.masked.finish()
        del self.live[fd]
        if not pump.masked.sink_open:
            if fd == self.child.master:
                self.child.master = None
                self.stdin_to = None
            os.close(fd)
            pump.source = -1


@dataclass
class _Plan:
    """The child's descriptors 0, 1, 2 and the pumps that read its outputs."""

    stdio: tuple[int | None, int | None, int | None] = (None, None, None)
    pty_path: bytes | None = None
    master: int | None = None
    pumps: list[_Pump] = field(default_factory=list)
    #: Ends the child gets, closed here once it has started.
    handed: list[int] = field(default_factory=list)


def _plan(mask: bool) -> _Plan:
    """No mask: the child shares our descriptors. Our stdout a terminal: a
    pty for the child's stdout (and stdin and stderr where ours are
    terminals too; a stderr that is not gets a pipe). Otherwise pipes."""
    plan = _Plan()
    if not mask:
        return plan
    if not os.isatty(1):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        plan.handed += [out_w, err_w]
        plan.pumps += [_Pump.to(out_r, 1), _Pump.to(err_r, 2)]
        plan.stdio = (None, out_w, err_w)
        return plan
    master, slave = os.openpty()
    # The child's terminal starts as ours is (modes, size).
    with contextlib.suppress(termios.error):
        termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(0 if os.isatty(0) else 1))
    with contextlib.suppress(OSError):
        fcntl.ioctl(slave, termios.TIOCSWINSZ, _winsize(1))
    plan.pty_path = os.fsencode(os.ttyname(slave))
    plan.master = master
    plan.handed.append(slave)
    plan.pumps.append(_Pump.to(master, 1))
    err: int | None = SPAWN_PTY
    if not os.isatty(2):
        err_r, err = os.pipe()
        plan.handed.append(err)
        plan.pumps.append(_Pump.to(err_r, 2))
    plan.stdio = (SPAWN_PTY if os.isatty(0) else None, SPAWN_PTY, err)
    return plan


def _start(argv: Sequence[str], store: SecretStore, plan: _Plan) -> int:
    names = {os.fsencode(key) for key in store}
    inherited = [k + b"=" + v for k, v in os.environb.items() if k not in names]
    try:
        return spawn_with_secrets(
            [os.fsencode(a) for a in argv],
            inherited,
            [(key, store[key]) for key in store],
            stdio=plan.stdio,
            pty=plan.pty_path,
            default_signals=list(RESTORED),
        )
    except OSError as exc:
        for pump in plan.pumps:
            os.close(pump.source)
        status = 127 if exc.errno == errno.ENOENT else 126
        raise RunError(f"{argv[0]}: {os.strerror(exc.errno or 0)}", status) from None
    finally:
        for fd in plan.handed:
            os.close(fd)


def _supervise(child: _Child, plan: _Plan) -> int:
    """Forwards signals and pumps output until the child's outputs end;
    then reaps it. Our terminal is raw meanwhile when the child has a pty
    and our stdin is a terminal, and restored however this ends."""
    forwarder = threading.Thread(
        target=_forwarder, args=(child,), name="cypher-cell-run-signals", daemon=True
    )
    forwarder.start()
    raw = None
    try:
        stdin_to = None
        if plan.master is not None and os.isatty(0):
            # Keys go to the child's terminal as typed: ours passes them raw.
            raw = termios.tcgetattr(0)
            tty.setraw(0, termios.TCSADRAIN)
            stdin_to = plan.master
            os.set_blocking(plan.master, False)
        _Loop(plan.pumps, stdin_to, child).run()
        _, wait_status = os.waitpid(child.pid, 0)
        # A sink that failed otherwise than by its reader leaving (EPIPE) or
        # its terminal hanging up (EIO) lost output: say so, as `cat` does.
        failed = [p.masked.sink_errno for p in plan.pumps if p.masked.sink_errno not in (None, *BROKEN)]
        if failed:
            raise RunError(f"writing the command's output: {os.strerror(failed[0] or 0)}", 1)
        return exit_status(wait_status)
    finally:
        if raw is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, raw)
        child.done = True
        signal.pthread_kill(forwarder.ident or 0, signal.SIGWINCH)
        forwarder.join()
        for pump in plan.pumps:
            if pump.source >= 0:
                os.close(pump.source)


def run_command(argv: Sequence[str], store: SecretStore, *, mask: bool = True) -> int:
    """Runs `argv` with `store`'s secrets in its environment (a secret
    overrides an inherited variable of the same name); returns its exit
    status, 128 + N when signal N killed it."""
    plan = _plan(mask)
    # Blocked before the spawn, so none is lost or acts on us meanwhile (the
    # forwarding thread takes them); the child starts with an empty mask.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        pid = _start(argv, store, plan)
        child = _Child(pid, master=plan.master, terminal=1 if plan.master is not None else None)
        child.shares_group = plan.master is None
        return _supervise(child, plan)
    finally:
        # Signals that came after the child ended are dropped, not turned on us.
        while signal.sigtimedwait(FORWARDED, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
