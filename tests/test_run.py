"""`cypher-cell run`, run as a user runs it: a real `python -m cypher_cell
run` process starting a real child (a Python one-liner that gets its secret
from its environment, as a program would), with pipes, a real pseudo-terminal
(os.openpty) and real signals.

Secrets are compared by counts and hashes: no assertion shows one."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.envfile import write
from support.openbao import OpenBao
from support.procfs import random_secret, scan_memory, secret_forms, status_kib

from cypher_cell import CypherCell
from cypher_cell.run import FORWARDED

REDACTED = b"[REDACTED]"


def env_file(tmp_path: Path, **values: bytes) -> Path:
    return write(tmp_path, b"".join(k.encode() + b"=" + v + b"\n" for k, v in values.items()))


def run_args(*options: str, code: str) -> list[str]:
    """`python -m cypher_cell run OPTIONS -- python -c CODE`."""
    child = [sys.executable, "-c", textwrap.dedent(code)]
    return [sys.executable, "-m", "cypher_cell", "run", *options, "--", *child]


def start(args: list[str], **kw: object) -> subprocess.Popen[bytes]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(args, **kw)  # type: ignore[call-overload,no-any-return]


def run(args: list[str], timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[bytes]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(args, capture_output=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload,no-any-return]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_no_piece(out: bytes, secret: bytes) -> None:
    """Neither the secret nor either half of it is in `out` (counts only:
    the bytes are never shown)."""
    half = len(secret) // 2
    shown = out.count(secret) + out.count(secret[:half]) + out.count(secret[half:])
    assert shown == 0, "a piece of the secret was printed"


def assert_output(out: bytes, expected: bytes) -> None:
    """`out == expected`; a failure says where they part, never what either
    holds (either may hold a secret)."""
    if out != expected:
        at = next(
            (i for i, (a, b) in enumerate(zip(out, expected, strict=False)) if a != b),
            min(len(out), len(expected)),
        )
        pytest.fail(
            f"output differs from the expected at byte {at} ({len(out)} bytes, expected {len(expected)})"
        )


def read_until(fd: int, marker: bytes, timeout: float = 20) -> bytes:
    """Reads `fd` until `marker` has arrived (or EOF/EIO, or the timeout)."""
    got = b""
    end = time.monotonic() + timeout
    while marker not in got and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: a pty whose other side is closed
            break
        if not chunk:
            break
        got += chunk
    return got


# -- the environment -----------------------------------------------------------


def test_a_secret_is_in_the_childs_environment_and_overrides_an_inherited_one(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = """
        import hashlib, json, os
        print(json.dumps({"token": hashlib.sha256(os.environb[b"CCRUN_TOKEN"]).hexdigest(),
                          "other": os.environ.get("CCRUN_OTHER")}))
    """
    inherited = {**os.environ, "CCRUN_TOKEN": "inherited-value", "CCRUN_OTHER": "kept"}
    r = run(run_args("--env-file", str(path), code=code), env=inherited)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report == {"token": sha(secret), "other": "kept"}


def test_environ_prefix_source_reaches_the_child_without_the_prefix(tmp_path: Path) -> None:
    secret = random_secret()
    code = """
        import hashlib, json, os
        print(json.dumps({"token": hashlib.sha256(os.environb.get(b"TOKEN", b"")).hexdigest(),
                          "prefixed": "CCRUNP_TOKEN" in os.environ}))
    """
    env = {**os.environ, "CCRUNP_TOKEN": secret.decode()}
    r = run(run_args("--environ-prefix", "CCRUNP_", code=code), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == {"token": sha(secret), "prefixed": False}


def test_required_key_missing_is_an_error_naming_it_and_nothing_runs(tmp_path: Path) -> None:
    path = env_file(tmp_path, CCRUN_PRESENT=random_secret())
    marker = tmp_path / "ran"
    r = run(
        run_args("--env-file", str(path), "--required", "CCRUN_ABSENT", code=f"open({str(marker)!r}, 'w')")
    )
    assert r.returncode == 1
    assert b"CCRUN_ABSENT" in r.stderr
    assert not marker.exists()


def test_a_value_with_a_nul_byte_is_an_error_naming_the_key(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "CCRUN_NUL").write_bytes(b"before\0after-the-nul")
    marker = tmp_path / "ran"
    r = run(run_args("--secrets-dir", str(secrets), code=f"open({str(marker)!r}, 'w')"))
    assert r.returncode == 1
    assert b"CCRUN_NUL" in r.stderr and b"NUL" in r.stderr
    assert b"after-the-nul" not in r.stderr and b"Traceback" not in r.stderr
    assert not marker.exists()


def test_command_not_found_is_127_and_named(tmp_path: Path) -> None:
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    r = run([sys.executable, "-m", "cypher_cell", "run", "--env-file", str(path), "--", "ccrun-no-such-cmd"])
    assert r.returncode == 127
    assert b"ccrun-no-such-cmd" in r.stderr
    assert b"Traceback" not in r.stderr


# -- masking ---------------------------------------------------------------------


def test_stdout_and_stderr_are_masked_the_rest_untouched(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = """
        import os, sys
        v = os.environb[b"CCRUN_TOKEN"]
        sys.stdout.buffer.write(b"out: " + v + b" end\\n")
        sys.stderr.buffer.write(b"err: " + v + b" end\\n")
    """
    r = run(run_args("--env-file", str(path), code=code))
    assert r.returncode == 0
    assert_output(r.stdout, b"out: " + REDACTED + b" end\n")
    assert_output(r.stderr[-len(b"err: [REDACTED] end\n") :], b"err: " + REDACTED + b" end\n")
    assert_no_piece(r.stdout + r.stderr, secret)


def test_no_mask_passes_output_untouched(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = 'import os, sys; sys.stdout.buffer.write(os.environb[b"CCRUN_TOKEN"])'
    r = run(run_args("--env-file", str(path), "--no-mask", code=code))
    assert r.returncode == 0
    assert_output(r.stdout, secret)


@pytest.mark.parametrize("pause", [0.2, 1.0])
def test_a_secret_split_across_writes_with_a_pause_is_never_shown_in_part(
    tmp_path: Path, pause: float
) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = f"""
        import os, sys, time
        v = os.environb[b"CCRUN_TOKEN"]
        for cut in (5, len(v) // 2, len(v) - 1):
            os.write(1, b"<" + v[:cut])
            time.sleep({pause})
            os.write(1, v[cut:] + b">\\n")
        os.write(1, b"<" + v[:12])  # three pieces, a pause after each of the first two
        time.sleep({pause})
        os.write(1, v[12:24])
        time.sleep({pause})
        os.write(1, v[24:] + b">\\n")
    """
    r = run(run_args("--env-file", str(path), code=code))
    assert r.returncode == 0
    assert_no_piece(r.stdout, secret)
    assert r.stdout.count(secret[12:24]) == 0
    assert_output(r.stdout, (b"<" + REDACTED + b">\n") * 4)


def test_output_passes_at_once_and_a_held_part_is_released_after_about_50_ms(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = """
        import os, sys, time
        v = os.environb[b"CCRUN_TOKEN"]
        os.write(1, b"plain line\\n")
        time.sleep(3)
        os.write(1, b"held:" + v[:12])
        time.sleep(3)
        os.write(1, b"\\ndone\\n")
    """
    proc = start(run_args("--env-file", str(path), code=code))
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        first = read_until(fd, b"plain line\n", timeout=2.5)
        assert first == b"plain line\n", "plain output was held back"
        held = read_until(fd, b"held:", timeout=10)
        since = time.monotonic()
        held += read_until(fd, REDACTED, timeout=2.5)
        waited = time.monotonic() - since
        assert_output(held, b"held:" + REDACTED)
        assert waited < 1.0  # about FLUSH_AFTER, and well before the child's next write
        rest = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
    assert_output(rest, b"\ndone\n")


def test_binary_and_invalid_utf8_pass_unchanged_except_secrets(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = """
        import os, sys
        v = os.environb[b"CCRUN_TOKEN"]
        blob = bytes(range(256)) * 64 + b"\\xff\\xfe\\xc3\\x28\\xed\\xa0\\x80\\x00"
        sys.stdout.buffer.write(blob + v + blob)
    """
    blob = bytes(range(256)) * 64 + b"\xff\xfe\xc3\x28\xed\xa0\x80\x00"
    r = run(run_args("--env-file", str(path), code=code))
    assert r.returncode == 0
    assert_output(r.stdout, blob + REDACTED + blob)


# -- exit statuses and signals -----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("import sys; sys.exit(0)", 0),
        ("import sys; sys.exit(7)", 7),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + signal.SIGKILL),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 128 + signal.SIGSEGV),
    ],
)
@pytest.mark.parametrize("mask", [True, False])
def test_exit_status_is_the_childs_128_plus_n_for_a_signal(
    tmp_path: Path, code: str, status: int, mask: bool
) -> None:
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    options = ["--env-file", str(path)] + ([] if mask else ["--no-mask"])
    r = run(run_args(*options, code=code))
    assert r.returncode == status, r.stderr[-2000:]
    assert b"Traceback" not in r.stderr


SIGNAL_CHILD = """
    import os, signal, sys, time
    got = []
    def on(sig, frame):
        got.append(sig)
    signal.signal({sig}, on)
    os.write(1, b"ready\\n")
    end = time.monotonic() + 20
    while not got and time.monotonic() < end:
        time.sleep(0.01)
    os.write(1, ("got %s\\n" % got[0] if got else "nothing\\n").encode())
    sys.exit(40 if got else 1)
"""


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH]
)
@pytest.mark.parametrize("mask", [True, False])
def test_each_signal_is_forwarded_to_the_child(tmp_path: Path, sig: signal.Signals, mask: bool) -> None:
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    options = ["--env-file", str(path)] + ([] if mask else ["--no-mask"])
    proc = start(run_args(*options, code=SIGNAL_CHILD.format(sig=int(sig))))
    assert proc.stdout is not None
    try:
        assert read_until(proc.stdout.fileno(), b"ready\n") == b"ready\n"
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert out == f"got {int(sig)}\n".encode(), err[-2000:]
    assert proc.returncode == 40


def test_a_signal_that_kills_the_child_gives_128_plus_n(tmp_path: Path) -> None:
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    code = "import os, time; os.write(1, b'ready\\n'); time.sleep(30)"
    proc = start(run_args("--env-file", str(path), code=code))
    assert proc.stdout is not None
    assert read_until(proc.stdout.fileno(), b"ready\n") == b"ready\n"
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM


def blocked_signals(pid: int) -> list[int]:
    """Each thread's blocked-signal mask, from the kernel's account
    (/proc/PID/task/TID/status, SigBlk)."""
    masks = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as status:
            masks.append(int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16))
    return masks


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_reaches_the_child_when_a_vault_source_started_a_thread(
    openbao: OpenBao, sig: signal.Signals
) -> None:
    """`--vault` starts the lease-renewal thread while loading; a thread that
    does not block SIGTERM may be the one the kernel hands a `kill` to, and
    SIGTERM's default action would end run at once (the child orphaned, a
    terminal left raw); a SIGINT it took would end run as interrupted, the
    child not signalled. Every thread but the forwarding one (in sigwaitinfo,
    which unblocks what it waits for) must block the forwarded signals."""
    path = f"ccrun-{os.getpid()}-{time.monotonic_ns()}"
    openbao.kv_put(path, {"CCRUN_TOKEN": random_secret().hex()})
    env = dict(os.environ, BAO_ADDR=openbao.address, BAO_TOKEN=openbao.root_token)
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "BAO_NAMESPACE", "VAULT_NAMESPACE"):
        env.pop(name, None)
    code = SIGNAL_CHILD.format(sig=int(sig))
    proc = start(run_args("--vault", f"secret/{path}", code=code), env=env)
    assert proc.stdout is not None
    try:
        assert read_until(proc.stdout.fileno(), b"ready\n") == b"ready\n"
        masks = blocked_signals(proc.pid)
        open_to = [m for m in masks if not all(m & (1 << (s - 1)) for s in FORWARDED)]
        assert len(masks) >= 3, "no thread besides run's own and the forwarder's"
        assert len(open_to) == 1, (
            f"{len(open_to)} of run's {len(masks)} threads take a forwarded signal, not 1"
        )
        for _ in range(5):  # each send may land on any thread that takes it
            os.kill(proc.pid, sig)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert out == f"got {int(sig)}\n".encode(), err[-2000:]
    assert proc.returncode == 40


def test_a_sigterm_while_loading_ends_run_before_the_command_starts(tmp_path: Path) -> None:
    """SIGTERM is held while the sources load (see above); one that came
    meanwhile must still end run, and the command must never start."""
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w').close()"
    proc = start(run_args("--env-file", str(fifo), code=code))
    try:
        time.sleep(1)  # run is waiting for a writer of the FIFO
        os.kill(proc.pid, signal.SIGTERM)
        try:  # non-blocking: a run that is gone already leaves no reader (ENXIO)
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            pass
        else:
            os.write(writer, b"CCRUN_TOKEN=" + random_secret().hex().encode() + b"\n")
            os.close(writer)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert not marker.exists(), "the command ran after run was told to stop"


# -- the pseudo-terminal -------------------------------------------------------------


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@contextmanager
def on_a_terminal(
    args: list[str], rows: int = 37, cols: int = 101
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """`args` with stdin, stdout and stderr on a fresh pty; yields the
    process, the master and the slave."""
    master, slave = os.openpty()
    set_winsize(slave, rows, cols)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    try:
        yield proc, master, slave
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)


TTY_CHILD = """
    import json, os, signal, sys, time
    v = os.environb[b"CCRUN_TOKEN"]
    size = os.get_terminal_size(1)
    got = []
    signal.signal(signal.SIGWINCH, lambda s, f: got.append(os.get_terminal_size(1)))
    print(json.dumps({"isatty": [os.isatty(i) for i in range(3)], "size": [size.columns, size.lines],
                      "colour": "\\x1b[31mred\\x1b[0m"}), flush=True)
    os.write(1, b"secret: " + v + b"\\n")  # the pty's ONLCR makes it \\r\\n
    line = sys.stdin.readline()
    end = time.monotonic() + 20
    while not got and time.monotonic() < end:
        time.sleep(0.01)
    s = got[0] if got else None
    print(json.dumps({"typed": line.strip(), "new_size": [s.columns, s.lines] if s else None}), flush=True)
"""


def test_a_terminal_gives_the_child_a_pty_with_size_input_and_sigwinch(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    with on_a_terminal(run_args("--env-file", str(path), code=TTY_CHILD)) as (proc, master, slave):
        before = termios.tcgetattr(slave)
        out = read_until(master, REDACTED + b"\r\n", timeout=20)
        report, _, shown = out.partition(b"\r\n")
        first = json.loads(report)
        assert first["isatty"] == [True, True, True]
        assert first["size"] == [101, 37]
        assert first["colour"] == "\x1b[31mred\x1b[0m"
        assert_output(shown, b"secret: " + REDACTED + b"\r\n")
        # Our terminal is raw while the child runs (its pty does the line editing).
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ICANON and not lflag & termios.ECHO
        os.write(master, b"typed-in\r")
        set_winsize(slave, 50, 132)
        os.kill(proc.pid, signal.SIGWINCH)
        rest = read_until(master, b"new_size", timeout=20) + read_until(master, b"\r\n", timeout=10)
        proc.wait(timeout=30)
        assert proc.returncode == 0
        report = json.loads(rest[rest.index(b'{"typed"') :].split(b"\r\n")[0])
        assert report == {"typed": "typed-in", "new_size": [132, 50]}
        assert termios.tcgetattr(slave) == before, "the terminal's mode was not restored"
    assert_no_piece(out + shown + rest, secret)


@pytest.mark.parametrize(
    "code",
    [
        "import os, signal; os.write(1, b'ready\\r\\n'); os.kill(os.getpid(), signal.SIGKILL)",
        "import os, sys; os.write(1, b'ready\\r\\n'); sys.exit(3)",
    ],
)
def test_the_terminal_mode_is_restored_however_the_child_ends(tmp_path: Path, code: str) -> None:
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    with on_a_terminal(run_args("--env-file", str(path), code=code)) as (proc, master, slave):
        before = termios.tcgetattr(slave)
        read_until(master, b"ready", timeout=20)
        proc.wait(timeout=30)
        assert proc.returncode in (3, 128 + signal.SIGKILL)
        assert termios.tcgetattr(slave) == before


def test_ctrl_c_from_a_shared_terminal_reaches_the_child_once(tmp_path: Path) -> None:
    """--no-mask on a terminal: the child is in run's process group, so the
    terminal's ^C reaches it directly; run must not send a second SIGINT.
    (Two SIGINTs close together may merge into one: the child is kept busy
    so that it takes each at once, and ten ^C are sent.)"""
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    code = """
        import os, signal, sys, time
        n = []
        signal.signal(signal.SIGINT, lambda s, f: n.append(s))
        os.write(1, b"ready\\r\\n")
        import select
        # Busy, not asleep: each SIGINT is taken as soon as it comes, so a
        # second one is not merged into the first while the child wakes up.
        while not select.select([0], [], [], 0)[0]:
            for _ in range(1000):
                pass
        os.write(1, b"count %d\\r\\n" % len(n))
    """
    master, slave = os.openpty()
    # The pty becomes run's controlling terminal (a new session), as a shell's is.
    ctty = (
        "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    args = [sys.executable, "-c", ctty, *run_args("--env-file", str(path), "--no-mask", code=code)]
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave)
    try:
        assert b"ready" in read_until(master, b"ready", timeout=20)
        for _ in range(10):
            os.write(master, b"\x03")  # ^C: the terminal driver signals its foreground group
            time.sleep(0.2)
        os.write(master, b"\n")
        out = read_until(master, b"count", timeout=20) + read_until(master, b"\r", timeout=5)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)
    assert b"count 10\r" in out


# -- large output, early close, `| head` ----------------------------------------------


def test_a_gigabyte_of_output_keeps_runs_memory_bounded(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    line = b"2026-01-01 12:00:00 INFO request handled in 3 ms, status=200 path=/api/v1/items\n"
    block = line * (65536 // len(line))  # whole lines: nothing is left held at the pause
    count = (1 << 30) // len(block)
    total = count * len(block)  # just under 1 GiB
    code = f"""
        import os, sys
        block = {block[: len(line)]!r} * {len(block) // len(line)}
        for _ in range({count}):
            os.write(1, block)
        sys.stdin.read()  # wait: the test reads run's peak memory first
    """
    proc = start(run_args("--env-file", str(path), code=code), stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    got = 0
    fd = proc.stdout.fileno()
    try:
        # Output must keep coming: a run that held it back would stall here.
        while got < total and select.select([fd], [], [], 30)[0]:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            got += len(chunk)
        peak_kib = status_kib("VmHWM", proc.pid)
        proc.stdin.close()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert got == total
    assert proc.returncode == 0
    assert peak_kib < 100 * 1024, f"run's peak RSS was {peak_kib} KiB for 1 GiB of output"


def test_a_reader_closing_the_pipe_ends_run_cleanly(tmp_path: Path) -> None:
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    # `yes`, not Python: a Python child ignores SIGPIPE and prints a traceback of its own.
    args = [sys.executable, "-m", "cypher_cell", "run", "--env-file", str(path), "--", "yes", "y" * 100]
    pipeline = f"{subprocess.list2cmdline(args)} | head -n 3"
    r = subprocess.run(
        ["bash", "-c", pipeline + '; echo "status ${PIPESTATUS[0]}" >&2'],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.stdout == (b"y" * 100 + b"\n") * 3
    assert b"Traceback" not in r.stderr
    assert r.stderr.strip().endswith(b"status 141"), r.stderr[
        -2000:
    ]  # the child's SIGPIPE, as a shell reports it


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_failing_write_of_ours_ends_that_output_and_run_still_waits_for_the_child(tmp_path: Path) -> None:
    """Our stdout fails with ENOSPC (/dev/full): that output is dropped, as
    for a broken pipe, the child still has its stderr passed through and is
    waited for, and run reports the error in one line (no traceback) and
    exits 1 instead of leaving the child running unsupervised."""
    path = env_file(tmp_path, CCRUN_TOKEN=random_secret())
    code = """
        import os, sys, time
        os.write(1, b"to stdout\\n")
        time.sleep(0.5)
        os.write(2, b"still here\\n")
        sys.exit(0)
    """
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            run_args("--env-file", str(path), code=code),
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    assert b"Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert b"still here\n" in proc.stderr, "the child's stderr was cut off"
    assert b"No space left on device" in proc.stderr
    assert proc.returncode == 1


def test_a_child_closing_stdout_early_ends_cleanly(tmp_path: Path) -> None:
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = """
        import os, sys, time
        os.write(1, b"last line\\n")
        os.close(1)
        time.sleep(0.3)
        os.write(2, b"after close " + os.environb[b"CCRUN_TOKEN"] + b"\\n")
        sys.exit(5)
    """
    r = run(run_args("--env-file", str(path), code=code))
    assert r.returncode == 5
    assert r.stdout == b"last line\n"
    assert_output(r.stderr[-len(b"after close [REDACTED]\n") :], b"after close " + REDACTED + b"\n")
    assert b"Traceback" not in r.stderr


# -- residue ------------------------------------------------------------------------------


@pytest.mark.parametrize("prints", [False, True])
def test_run_keeps_no_copy_of_a_value_once_the_child_has_started(tmp_path: Path, prints: bool) -> None:
    """Scanned while the child runs: the environment block is zeroed, and a
    value the child printed, masked on its way through, leaves no copy. The
    cells (and the matcher's forms) stay live meanwhile, for the masking:
    only in secretmem are they out of the scan's reach."""
    if CypherCell(b"tier-probe").protection != "secretmem":
        pytest.skip("live cells are readable through /proc/PID/mem without secretmem")
    secret = random_secret()
    path = env_file(tmp_path, CCRUN_TOKEN=secret)
    code = f"""
        import hashlib, os, sys
        v = os.environb[b"CCRUN_TOKEN"]
        if {prints}:
            os.write(1, b"x" * 5000 + b"value: " + v + b" and again " + v + b"\\n" + b"y" * 5000)
        os.write(1, hashlib.sha256(v).hexdigest().encode() + b"\\n")
        sys.stdin.read()
    """
    proc = start(run_args("--env-file", str(path), code=code), stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        out = read_until(proc.stdout.fileno(), sha(secret).encode() + b"\n")
        assert out.endswith(sha(secret).encode() + b"\n"), "the child did not get the secret"
        assert_no_piece(out, secret)
        copies = scan_memory(proc.pid, secret_forms(secret)).copies
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert copies == 0
