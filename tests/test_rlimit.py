"""RLIMIT_MEMLOCK policy, in children without CAP_IPC_LOCK (root ignores the
limit otherwise): a required tier raises MemoryLockError, `auto` degrades to
unlocked memory with exactly one warning, a soft limit below the hard limit
is raised, and nothing crashes."""

from __future__ import annotations

from support.child import run_child
from support.privileges import CHECK_NO_CAP, without_memlock


def test_zero_limit_required_tiers_raise_and_auto_warns_once() -> None:
    r = run_child(
        CHECK_NO_CAP
        + """
import warnings
from cypher_cell import MemoryLockError, MemoryLockWarning
errors = {}
for tier in ("secretmem", "locked"):
    for size in (32, 100_000):
        try:
            CypherCell(b"s" * size, protection=tier)
            errors[f"{tier}/{size}"] = None
        except MemoryLockError as e:
            errors[f"{tier}/{size}"] = [e.tier, e.errno, str(e)]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cells = [CypherCell(b"s" * n) for n in (1, 32, 500, 5000, 100_000)]
report(errors=errors, tiers=[c.protection for c in cells],
       warnings=[(w.category.__name__, str(w.message)) for w in caught],
       values_ok=[c.reveal() == b"s" * n for c, n in zip(cells, (1, 32, 500, 5000, 100_000))])
""",
        preexec_fn=without_memlock(0, 0),
    )
    errors = r["errors"]
    assert isinstance(errors, dict)
    for key, err in errors.items():
        assert err is not None, f"{key} should have raised MemoryLockError"
        tier, errno, message = err
        assert tier == key.split("/")[0]
        assert errno in (1, 11, 12)  # EPERM, EAGAIN, ENOMEM
        assert "RLIMIT_MEMLOCK" in message
        assert "sss" not in message
    assert r["tiers"] == ["unlocked"] * 5
    assert r["values_ok"] == [True] * 5
    warnings = r["warnings"]
    assert isinstance(warnings, list)
    assert len(warnings) == 1
    assert warnings[0][0] == "MemoryLockWarning"
    assert "swap" in warnings[0][1]


def test_soft_limit_is_raised_toward_the_hard_limit() -> None:
    r = run_child(
        CHECK_NO_CAP
        + """
import resource
cells = [CypherCell(b"k" * 32, protection="locked"), CypherCell(bytes(50_000), protection="locked"),
         CypherCell(b"k" * 32, protection="secretmem")]
report(tiers=[c.protection for c in cells], limit=resource.getrlimit(resource.RLIMIT_MEMLOCK))
""",
        preexec_fn=without_memlock(0, 1 << 20),
    )
    assert r["tiers"] == ["locked", "locked", "secretmem"]
    assert r["limit"] == [1 << 20, 1 << 20]


def test_limit_exhaustion_midway_degrades_without_crashing() -> None:
    """A 64 KiB limit: locked cells succeed until it is spent, then the
    required tier raises and auto degrades; earlier cells stay intact."""
    r = run_child(
        CHECK_NO_CAP
        + """
from cypher_cell import MemoryLockError
import warnings
ok = []
failed_at = None
for i in range(40):
    try:
        ok.append(CypherCell(bytes([i]) * 5000, protection="locked"))
    except MemoryLockError:
        failed_at = i
        break
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    extra = CypherCell(bytes(5000))
report(failed_at=failed_at, intact=all(c.reveal() == bytes([i]) * 5000 for i, c in enumerate(ok)),
       extra=extra.protection, n_warn=len(caught))
""",
        preexec_fn=without_memlock(64 << 10, 64 << 10),
    )
    assert r["failed_at"] is not None and 5 <= r["failed_at"] <= 16  # type: ignore[operator]
    assert r["intact"] is True
    assert r["extra"] == "unlocked"
    assert r["n_warn"] == 1


# Runs in a child: caps one resource a little above what the interpreter
# already uses, then asks each tier for a 64 MiB secret, which cannot fit.
OUT_OF_MEMORY_OF_ANOTHER_KIND = """
import resource
from cypher_cell import MemoryLockError
resource_name, status_field = sys.argv[1], sys.argv[2]
source = bytes(64 << 20)
used = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(status_field + ":"))
limit = (used << 10) + (16 << 20)
resource.setrlimit(getattr(resource, resource_name), (limit, limit))
errors = {}
for tier in ("secretmem", "locked", "unlocked", "auto"):
    try:
        errors[tier] = CypherCell(source, protection=tier).protection
    except MemoryLockError as e:
        errors[tier] = [e.tier, e.errno, str(e)]
small = CypherCell(b"k" * 32, protection="locked")
report(errors=errors, small_ok=small == b"k" * 32)
"""


def test_running_out_of_address_space_is_not_called_a_memory_lock_problem() -> None:
    r = run_child(OUT_OF_MEMORY_OF_ANOTHER_KIND, "RLIMIT_AS", "VmSize")
    errors = r["errors"]
    assert isinstance(errors, dict)
    for tier, err in errors.items():
        assert isinstance(err, list), f"{tier}: a 64 MiB cell cannot fit under RLIMIT_AS"
        _, errno, message = err
        assert errno == 12  # ENOMEM
        assert message.startswith(f"could not get {'unlocked' if tier == 'auto' else tier} memory")
        assert "mmap failed" in message
        assert "out of address space (RLIMIT_AS soft " in message
        assert "ulimit -l" not in message
        assert "RLIMIT_MEMLOCK" not in message
    assert r["small_ok"] is True


def test_refused_writable_memory_names_the_data_limit_not_the_lock_limit() -> None:
    """Reserved pages become data when made writable (mprotect): RLIMIT_DATA
    refuses them for the anonymous tiers; secretmem is a shared mapping, not
    data, so `auto` still gets it."""
    r = run_child(OUT_OF_MEMORY_OF_ANOTHER_KIND, "RLIMIT_DATA", "VmData")
    errors = r["errors"]
    assert isinstance(errors, dict)
    assert errors["secretmem"] == "secretmem"
    assert errors["auto"] == "secretmem"
    for tier in ("locked", "unlocked"):
        _, errno, message = errors[tier]
        assert errno == 12
        assert "mprotect failed" in message
        assert "refused more writable memory (RLIMIT_DATA soft " in message
        assert "ulimit -l" not in message
        assert "RLIMIT_MEMLOCK" not in message
    assert r["small_ok"] is True


def test_unlocked_memory_is_warned_about_once_per_process_whatever_fell_back() -> None:
    """One rule for the MemoryLockWarning (native/errors.rs `warn_unlocked`):
    the first fallback warns, whether it was a `.env` file's buffers or a
    cell; later fallbacks of either kind do not repeat it."""
    r = run_child(
        CHECK_NO_CAP
        + """
import os, tempfile, warnings
from cypher_cell import MemoryLockWarning, load_secrets
from cypher_cell.providers import EnvFile
d = tempfile.mkdtemp()
paths = []
for name in ("a.env", "b.env"):
    paths.append(os.path.join(d, name))
    with open(paths[-1], "w") as f:
        f.write("K=v\\n")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    stores = [load_secrets(EnvFile(p)) for p in paths]
    cells = [CypherCell(b"s" * 32) for _ in range(3)]
lock_warnings = [w for w in caught if issubclass(w.category, MemoryLockWarning)]
report(tiers=sorted({c.protection for c in cells} | {s["K"].protection for s in stores}),
       warnings=[(w.category.__name__, str(w.message)) for w in lock_warnings])
""",
        preexec_fn=without_memlock(0, 0),
    )
    assert r["tiers"] == ["unlocked"]
    warnings = r["warnings"]
    assert isinstance(warnings, list)
    assert len(warnings) == 1
    assert "env-file" in warnings[0][1]
    assert "once per process" in warnings[0][1]
