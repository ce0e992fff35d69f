"""SecretsDir: Docker /run/secrets, Kubernetes secret volumes, systemd
credentials; files read by Rust straight into cells."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from support.child import run_child, start_child
from support.cli import run_cli
from support.privileges import CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, without_capabilities
from support.procfs import random_secret, scan_memory, secret_forms
from support.provider_contract import ProviderContract, failed_load_leaves_no_value

from cypher_cell import ProviderError, ProviderUnavailableError, load_secrets
from cypher_cell.policy import PolicyMap
from cypher_cell.providers import Provider, SecretsDir


class TestSecretsDirContract(ProviderContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        for k, v in planted.items():
            (self.dir / k).write_bytes(v + b"\n")
        return SecretsDir(self.dir)


def test_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    (tmp_path / "one").write_bytes(b"abc\n")
    (tmp_path / "two").write_bytes(b"abc\n\n")
    (tmp_path / "none").write_bytes(b"abc")
    (tmp_path / "crlf").write_bytes(b"abc\r\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "nl").write_bytes(b"\n")
    store = load_secrets(SecretsDir(tmp_path))
    assert store["one"] == b"abc"
    assert store["two"] == b"abc\n"
    assert store["none"] == b"abc"
    assert store["crlf"] == b"abc\r"
    assert store["empty"] == b""
    assert store["nl"] == b""


def test_kubernetes_layout_symlinks_inside_the_volume_are_followed(tmp_path: Path) -> None:
    data = tmp_path / "..2026_11_27_00_00_00.123"
    data.mkdir()
    (data / "password").write_bytes(b"k8s-pw")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "password").symlink_to("..data/password")
    store = load_secrets(SecretsDir(tmp_path))
    assert list(store) == ["password"]
    assert store["password"] == b"k8s-pw"
    assert store.source("password") == f"secrets-dir {tmp_path / 'password'}"


def test_systemd_credentials_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "db").write_bytes(b"cred")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_secrets(SecretsDir())["db"] == b"cred"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert "/run/secrets" in SecretsDir(optional=True).describe()


def test_symlinks_leaving_the_directory_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"not yours")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "escape").symlink_to(outside)
    (secrets / "up").symlink_to("../outside")
    (tmp_path / "inside").write_bytes(b"mine")
    (secrets / "absolute").symlink_to(secrets / "inside")  # inside, but by an absolute path
    (secrets / "inside").write_bytes(b"mine")
    for key in ("escape", "up", "absolute"):
        with pytest.raises(ProviderError, match=f": {key}: a symlink leading outside the directory"):
            load_secrets(SecretsDir(secrets), keys=[key])


def test_files_over_the_size_cap_are_refused_without_content(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"Z" * 2000)
    with pytest.raises(ProviderError, match="over the 1000-byte limit") as info:
        load_secrets(SecretsDir(tmp_path, max_size=1000))
    assert "ZZ" not in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="no such directory"):
        load_secrets(SecretsDir(tmp_path / "nope"))
    assert len(load_secrets(SecretsDir(tmp_path / "nope", optional=True))) == 0


def test_not_a_directory_and_odd_entries(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(ProviderError, match="not a directory"):
        load_secrets(SecretsDir(f))
    d = tmp_path / "d"
    d.mkdir()
    (d / "sub").mkdir()
    (d / ".hidden").write_bytes(b"h")
    os.mkfifo(d / "fifo")
    assert SecretsDir(d).offered_keys() == ["fifo"]
    with pytest.raises(ProviderError, match="not a regular file"):
        load_secrets(SecretsDir(d))  # the FIFO must not hang the loader


def test_keys_that_are_not_plain_file_names_are_never_read(tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"1")
    store = load_secrets(SecretsDir(tmp_path), keys=["ok", "../ok", ".hidden", "a/b"])
    assert list(store) == ["ok"]


def test_a_read_file_leaves_no_copy_in_the_process(tmp_path: Path) -> None:
    secret = random_secret()
    (tmp_path / "token").write_bytes(secret + b"\n")
    child = start_child(
        """
from cypher_cell import load_secrets
from cypher_cell.providers import SecretsDir
store = load_secrets(SecretsDir(sys.argv[1]))
ok = len(store) == 1
store.close()
report(ok=ok)
hold()
""",
        str(tmp_path),
    )
    try:
        assert child.report == {"ok": True}
        assert scan_memory(child.pid, secret_forms(secret)).copies == 0
    finally:
        child.finish()


def test_control_reading_the_file_the_usual_way_leaves_a_copy(tmp_path: Path) -> None:
    secret = random_secret()
    (tmp_path / "token").write_bytes(secret + b"\n")
    child = start_child(
        """
with open(os.path.join(sys.argv[1], "token")) as f:
    token = f.read().rstrip("\\n")
del token
gc.collect()
report(ok=True)
hold()
""",
        str(tmp_path),
    )
    try:
        assert scan_memory(child.pid, secret_forms(secret)).copies >= 1
    finally:
        child.finish()


def test_a_cell_that_cannot_be_made_leaves_no_value_in_traceback_locals(tmp_path: Path) -> None:
    secret = random_secret()
    (tmp_path / "token").write_bytes(secret + b"\n")
    places = failed_load_leaves_no_value(
        "from cypher_cell.providers import SecretsDir",
        f"load_secrets(SecretsDir({str(tmp_path)!r}), default_policy=LOCKED)",
        secret,
    )
    assert places == []


# --- opened once, beneath the directory ------------------------------------------------------------

SWAPPER = """
import os, sys
secrets, outside, inside = sys.argv[1:4]
key, f, l = (os.path.join(secrets, n) for n in ("key", ".f", ".l"))
while True:
    with open(f, "w") as out:
        out.write(inside)
    os.replace(f, key)
    os.symlink(outside, l)
    os.replace(l, key)
"""


RACE_SECONDS = 2.0


def test_swapping_a_file_for_a_symlink_never_reads_outside(tmp_path: Path) -> None:
    """Another process swaps `key` between a regular file and a symlink to
    a file outside the directory, in a tight loop, while loads run for 2 s:
    each load gives the inside value or a ProviderError refusing the
    symlink; none reads the outside file and no raw OSError escapes.
    (Values are compared by hash; none is ever shown.)"""
    secrets, outside = tmp_path / "secrets", tmp_path / "outside"
    secrets.mkdir()
    inside_value, outside_value = b"inside-" + os.urandom(8).hex().encode(), random_secret()
    outside.write_bytes(outside_value)
    digest = {
        hashlib.sha256(inside_value).digest(): "inside",
        hashlib.sha256(outside_value).digest(): "OUTSIDE",
    }
    (secrets / "key").write_bytes(inside_value)
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(secrets), str(outside), inside_value.decode()]
    )
    outcomes: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline:
            try:
                with load_secrets(SecretsDir(secrets), keys=["key"]) as store:
                    if "key" not in store:
                        outcomes["absent"] += 1
                        continue
                    with store["key"].expose() as view:
                        outcomes[digest.get(hashlib.sha256(view).digest(), "other")] += 1
            except ProviderError:
                outcomes["refused"] += 1
            except Exception as exc:  # a raw OSError, say: counted, never raised with its text
                outcomes[type(exc).__name__] += 1
    finally:
        swapper.kill()
        swapper.wait()
    assert outcomes["OUTSIDE"] == 0, dict(outcomes)
    assert set(outcomes) <= {"inside", "refused"}, dict(outcomes)
    assert outcomes["inside"] > 0 and outcomes["refused"] > 0, dict(outcomes)  # both states were met


def test_symlink_loops_are_a_provider_error_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "self").symlink_to("self")
    (tmp_path / "ping").symlink_to("pong")
    (tmp_path / "pong").symlink_to("ping")
    for key in ("self", "ping"):
        with pytest.raises(ProviderError, match=f"{tmp_path}: {key}: too many levels of symbolic links"):
            load_secrets(SecretsDir(tmp_path), keys=[key])


def test_show_reports_a_symlink_loop_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    out = run_cli("show", "--secrets-dir", str(tmp_path))
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    assert f"secrets-dir {tmp_path}: loop: too many levels of symbolic links" in out.stderr, out.stderr


def test_symlinks_that_stay_inside_may_go_through_subdirectories(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "real").write_bytes(b"deep")
    (tmp_path / "plain").write_bytes(b"top")
    (tmp_path / "down").symlink_to("sub/real")
    (tmp_path / "round").symlink_to("sub/../sub/./real")
    (tmp_path / "back").symlink_to("sub/../plain")
    store = load_secrets(SecretsDir(tmp_path), keys=["down", "round", "back"])
    assert (store["down"], store["round"], store["back"]) == (b"deep", b"deep", b"top")


def test_a_symlink_to_nothing_is_an_error_and_an_absent_name_is_absent(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to("gone")
    with pytest.raises(ProviderError, match=f"{tmp_path}: dangling: a symlink to nothing"):
        load_secrets(SecretsDir(tmp_path), keys=["dangling"])
    long_name = "k" * 300  # longer than a file name can be (ENAMETOOLONG)
    assert len(load_secrets(SecretsDir(tmp_path), keys=["absent", long_name])) == 0


def test_what_is_not_a_regular_file_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for key in ("sub", "fifo", "sock"):
            # Asked directly: load_secrets does not ask for a directory it was
            # not offered, but a file may become one between listing and loading.
            with pytest.raises(ProviderError, match=f"{tmp_path}: {key}: not a regular file"):
                SecretsDir(tmp_path).load([key], PolicyMap())


def test_a_fifo_or_a_file_as_the_directory_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(b"x")
    for name in ("fifo", "file"):
        with pytest.raises(ProviderError, match="not a directory"):
            load_secrets(SecretsDir(tmp_path / name))


def test_a_file_name_that_is_not_utf8_loads(tmp_path: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(tmp_path), b"caf\xe9"), os.O_CREAT | os.O_WRONLY, 0o600))
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9"), "wb") as f:
        f.write(b"latin")
    store = load_secrets(SecretsDir(tmp_path))
    assert list(store) == ["caf\udce9"]
    assert store["caf\udce9"] == b"latin"


def test_unreadable_files_and_directories_are_provider_errors(tmp_path: Path) -> None:
    """As a user without root's file-permission override (CAP_DAC_*
    dropped in a child): a mode-000 file and a mode-000 directory."""
    (tmp_path / "locked").write_bytes(b"x")
    (tmp_path / "locked").chmod(0)
    (tmp_path / "shut").mkdir()
    (tmp_path / "shut" / "key").write_bytes(b"x")
    (tmp_path / "shut").chmod(0)
    try:
        r = run_child(
            """
from cypher_cell import ProviderError, load_secrets
from cypher_cell.providers import SecretsDir
def attempt(path, keys):
    try:
        load_secrets(SecretsDir(path), keys=keys)
        return None
    except ProviderError as exc:
        return str(exc)
    except Exception as exc:
        return type(exc).__name__
report(file=attempt(sys.argv[1], ["locked"]), dir=attempt(sys.argv[1] + "/shut", ["key"]),
       listing=attempt(sys.argv[1] + "/shut", None))
""",
            str(tmp_path),
            preexec_fn=without_capabilities(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH),
        )
    finally:
        (tmp_path / "shut").chmod(0o700)
    assert r["file"] == f"secrets-dir {tmp_path}: locked: cannot open: permission denied"
    assert r["dir"] == r["listing"] == f"secrets-dir {tmp_path}/shut: cannot open: Permission denied"


# --- the same, where the kernel refuses openat2 --------------------------------------------------


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def _refusing_openat2(err: int) -> Callable[[], None]:
    """A seccomp filter, installed in the child before exec, that fails
    openat2 with `err` (ENOSYS as on Linux < 5.6, EPERM as container
    runtimes' filters did) and allows everything else."""
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    program = [
        (ld_abs, 0, 0, 4),  # the architecture
        (jeq, 0, 3, AUDIT_ARCH[platform.machine()]),
        (ld_abs, 0, 0, 0),  # the system call's number
        (jeq, 0, 1, SYS_OPENAT2),
        (ret, 0, 0, 0x00050000 | err),  # SECCOMP_RET_ERRNO
        (ret, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
    ]

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        filters = (_SockFilter * len(program))(*program)
        prog = _SockFprog(len(program), filters)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")

    return preexec


#: The tests above that depend on how the file is opened, run again in the child.
WITHOUT_OPENAT2 = [
    "test_swapping_a_file_for_a_symlink_never_reads_outside",
    "test_kubernetes_layout_symlinks_inside_the_volume_are_followed",
    "test_symlinks_leaving_the_directory_are_refused",
    "test_symlink_loops_are_a_provider_error_naming_the_key",
    "test_symlinks_that_stay_inside_may_go_through_subdirectories",
    "test_a_symlink_to_nothing_is_an_error_and_an_absent_name_is_absent",
    "test_what_is_not_a_regular_file_is_refused_by_name",
    "test_one_trailing_newline_is_stripped",
    "test_keys_that_are_not_plain_file_names_are_never_read",
]


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM], ids=["ENOSYS", "EPERM"])
def test_without_openat2_the_step_by_step_open_keeps_every_rule(tmp_path: Path, err: int) -> None:
    r = run_child(
        f"""
import ctypes, errno, tempfile, traceback
from pathlib import Path
libc = ctypes.CDLL(None, use_errno=True)
refused = libc.syscall({SYS_OPENAT2}, -100, b"/", None, 0) == -1 and ctypes.get_errno() == {err}
import test_secretsdir
test_secretsdir.RACE_SECONDS = 1.0
failures = {{}}
for name in {WITHOUT_OPENAT2!r}:
    with tempfile.TemporaryDirectory(dir=sys.argv[1]) as d:
        try:
            getattr(test_secretsdir, name)(Path(d))
        except BaseException as exc:
            failures[name] = traceback.format_exception_only(exc)[-1][:500]
report(refused=refused, failures=failures)
""",
        str(tmp_path),
        preexec_fn=_refusing_openat2(err),
    )
    assert r["refused"] is True, "the filter did not refuse openat2"
    assert r["failures"] == {}
