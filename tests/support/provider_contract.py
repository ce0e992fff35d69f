"""The contract every provider meets, as a mixin each provider's tests reuse
(keyring's ``BackendBasicTests`` is the model). A test class sets `plant`:
a fixture-like method that makes a provider holding the given secrets.

Values are random and never appear in assertion messages: tests compare
cells with ``==`` into a name and assert that name with a message naming
the key (pytest's assertion rewriting would otherwise show both sides).
"""

from __future__ import annotations

import functools
import secrets
import time
import traceback
import types
from collections.abc import Callable, Mapping

import pytest

from cypher_cell import CellExpiredError, CellWipedError, MissingSecretsError, Policy, load_secrets
from cypher_cell.providers import Provider
from support.child import run_child
from support.privileges import CHECK_NO_CAP, without_memlock

Plant = Callable[[Mapping[str, bytes]], Provider]


def value() -> bytes:
    return b"v-" + secrets.token_hex(12).encode()


def value_in_traceback(exc: BaseException, secret: bytes) -> list[str]:
    """Where `secret` shows in what an error reporter that captures locals
    (Sentry, ``TracebackException(capture_locals=True)``) would record of
    `exc`: its formatted text, and every local of every frame of its
    traceback and of each error in its ``__cause__``/``__context__`` chain,
    looking inside containers and objects' attributes. Returns the places
    (``function:local``), never the value."""
    text = secret.decode("latin-1")
    places: list[str] = []
    try:
        formatted = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    except Exception as failure:  # a local whose repr fails (a closed D-Bus proxy) breaks the reporter
        places.append(f"formatting the traceback raised {type(failure).__name__}")
    else:
        if text in formatted or repr(secret)[2:-1] in formatted:
            places.append("the formatted traceback")
    seen: set[int] = set()
    pending = [exc]
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        pending += [e for e in (error.__cause__, error.__context__) if e is not None]
        if _holds(error.args, secret, text, seen, 0):
            places.append(f"{type(error).__name__}.args")
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for name, local in frame.f_locals.items():
                if _holds(local, secret, text, seen, 0):
                    places.append(f"{frame.f_code.co_name}:{name} ({type(local).__name__})")
            tb = tb.tb_next
    return places


_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _holds(obj: object, secret: bytes, text: str, seen: set[int], depth: int) -> bool:
    """Whether `obj` is or contains the value (as bytes or str)."""
    if isinstance(obj, str):
        return text in obj
    if isinstance(obj, bytes | bytearray):
        return secret in obj
    if isinstance(obj, memoryview):
        try:
            return secret in obj.tobytes()
        except ValueError:  # released
            return False
    if depth > 4 or id(obj) in seen or isinstance(obj, _NOT_DATA):
        return False
    seen.add(id(obj))
    inner: list[object] = []
    if isinstance(obj, dict):
        inner = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        inner = list(obj)
    elif isinstance(obj, functools.partial):
        inner = [*obj.args, *obj.keywords.values()]
    elif isinstance(obj, BaseException):
        inner = list(obj.args)
    elif hasattr(obj, "__dict__"):
        inner = list(vars(obj).values())
    return any(_holds(item, secret, text, seen, depth + 1) for item in inner)


#: A child's check: `setup` (Python, run first) then `attempt` (an
#: expression that loads and is expected to raise); the secret is argv[1],
#: more arguments follow.
_FAILED_LOAD = (
    CHECK_NO_CAP
    + """
from support.provider_contract import value_in_traceback
from cypher_cell import Policy, load_secrets
LOCKED = Policy(protection="locked")  # refused: RLIMIT_MEMLOCK 0, no CAP_IPC_LOCK
{setup}
def attempt():
    try:
        {attempt}
    except Exception as exc:
        return exc
    return None
error = attempt()
secret = sys.argv[1].encode()
report(raised=None if error is None else type(error).__name__,
       places=[] if error is None else value_in_traceback(error, secret))
del secret
"""
)


def failed_load_leaves_no_value(
    setup: str, attempt: str, secret: bytes, *args: str, **child: object
) -> list[str]:
    """Runs `attempt` in a child that cannot lock memory, so making a cell
    fails after the source's value was read; returns where the value shows
    in the error's traceback (`value_in_traceback`), after checking that the
    load did fail with `MemoryLockError`."""
    code = _FAILED_LOAD.format(setup=setup, attempt=attempt)
    r = run_child(code, secret.decode(), *args, preexec_fn=without_memlock(0, 0), **child)
    assert r["raised"] == "MemoryLockError", r["raised"]
    places = r["places"]
    assert isinstance(places, list)
    return places


class ProviderContract:
    """Mix into a test class that defines ``plant(self, secrets) -> Provider``."""

    #: Whether the provider lists its keys (False: it is asked by name).
    enumerable: bool = True

    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        raise NotImplementedError

    def test_loads_planted_values_with_an_origin_but_no_value(self) -> None:
        planted = {"ALPHA": value(), "BETA": value()}
        provider = self.plant(planted)
        with load_secrets(provider, keys=list(planted)) as store:
            assert sorted(store) == sorted(planted)
            for key, expected in planted.items():
                same = store[key] == expected
                assert same, f"{key}: loaded value differs from the planted one"
                origin = store.source(key)
                assert origin.startswith(provider.kind)
                leaked = expected.decode() in origin
                assert not leaked, f"{key}: the origin string contains the value"
            leaked = any(v.decode() in repr(store) for v in planted.values())
            assert not leaked, "repr(store) contains a value"

    def test_offered_keys_are_listed_or_none(self) -> None:
        planted = {"GAMMA": value()}
        offered = self.plant(planted).offered_keys()
        if self.enumerable:
            assert offered is not None and "GAMMA" in offered
        else:
            assert offered is None

    def test_absent_keys_are_left_out_and_required_ones_reported_by_name(self) -> None:
        provider = self.plant({"PRESENT": value()})
        store = load_secrets(provider, keys=["PRESENT", "ABSENT"])
        assert list(store) == ["PRESENT"]
        store.close()
        with pytest.raises(MissingSecretsError) as info:
            load_secrets(self.plant({"PRESENT": value()}), required=["PRESENT", "ABSENT", "ALSO_ABSENT"])
        assert info.value.keys == ("ABSENT", "ALSO_ABSENT")

    def test_policy_is_applied_per_key(self) -> None:
        planted = {"ONCE": value(), "BRIEF": value(), "PLAIN": value()}
        provider = self.plant(planted)
        store = load_secrets(
            provider,
            keys=list(planted),
            policy={"ONCE": Policy(volatile=True), "BR*": Policy(ttl_sec=0.05)},
        )
        assert store["ONCE"].volatile and store.policy("ONCE").volatile
        same = store["ONCE"].reveal() == planted["ONCE"]
        assert same, "ONCE: value differs"
        with pytest.raises(CellWipedError):
            store["ONCE"].reveal()
        assert store["BRIEF"].ttl_sec == 0.05
        time.sleep(0.1)
        with pytest.raises(CellExpiredError):
            store["BRIEF"].reveal()
        same = store["PLAIN"] == planted["PLAIN"]
        assert same, "PLAIN: value differs"
        store.close()
        assert all(store[k].wiped for k in planted)

    def test_describe_and_repr_name_the_source_without_values(self) -> None:
        planted = {"DELTA": value()}
        provider = self.plant(planted)
        assert provider.kind in provider.describe()
        leaked = planted["DELTA"].decode() in repr(provider)
        assert not leaked, "repr(provider) contains a value"
