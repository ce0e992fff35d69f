"""load_secrets(), SecretStore and Policy: order, all-or-nothing, policies,
and what the store shows (keys and sources, never values)."""

from __future__ import annotations

import copy
import os
import pickle
import secrets
import subprocess
import sys
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import pytest
from support.procfs import random_secret
from support.provider_contract import failed_load_leaves_no_value, value_in_traceback

from cypher_cell import (
    CypherCell,
    MissingSecretsError,
    Policy,
    ProviderError,
    SecretStore,
    load_secrets,
)
from cypher_cell.policy import PolicyMap
from cypher_cell.providers import Entry, Environ, PolicyFor, Provider


class Fake(Provider):
    """A provider over a dict, recording what it was asked."""

    kind = "fake"

    def __init__(self, name: str, values: Mapping[str, bytes], *, enumerable: bool = True) -> None:
        self.name = name
        self.values = dict(values)
        self.enumerable = enumerable
        self.asked: list[list[str]] = []
        self.made: list[CypherCell] = []

    def describe(self) -> str:
        return f"fake {self.name}"

    def offered_keys(self) -> Collection[str] | None:
        return list(self.values) if self.enumerable else None

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        self.asked.append(list(keys))
        out = {}
        for k in keys:
            if k in self.values:
                p = policy(k)
                cell = CypherCell(self.values[k], policy=p)
                self.made.append(cell)
                out[k] = Entry(cell, f"fake {self.name}:{k}")
        return out


class Failing(Fake):
    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        raise ProviderError(f"fake {self.name}: backend down while loading {keys[0]}")


def test_first_source_that_has_a_key_wins_in_the_order_given() -> None:
    a = Fake("a", {"X": b"from-a"})
    b = Fake("b", {"X": b"from-b", "Y": b"from-b"})
    store = load_secrets(a, b)
    assert store["X"] == b"from-a"
    assert store["Y"] == b"from-b"
    assert store.source("X") == "fake a:X"
    assert b.asked == [["Y"]], "a key already found is not asked again"


def test_keys_limit_what_is_loaded_and_required_are_added() -> None:
    src = Fake("a", {"A": b"1", "B": b"2", "C": b"3"})
    store = load_secrets(src, keys=["A"], required=["C"])
    assert list(store) == ["A", "C"]


def test_non_enumerable_sources_are_asked_for_what_is_still_missing() -> None:
    listed = Fake("listed", {"A": b"1"})
    asked = Fake("asked", {"B": b"2", "Z": b"never asked"}, enumerable=False)
    store = load_secrets(listed, asked, required=["B"])
    assert asked.asked == [["B"]]
    assert sorted(store) == ["A", "B"]


class Person(Fake):
    """A source that asks someone: under the current name or the 0.1 one."""

    def __init__(self, name: str, values: Mapping[str, bytes], *, old_name: bool) -> None:
        super().__init__(name, values, enumerable=False)
        self.old_name = old_name

    @property
    def interactive(self) -> bool:
        return not self.old_name

    @property
    def asks_only_required(self) -> bool:
        return self.old_name


@pytest.mark.parametrize("old_name", [False, True])
def test_an_interactive_source_is_asked_only_for_required_keys(old_name: bool) -> None:
    person = Person("person", {"A": b"1", "B": b"2"}, old_name=old_name)
    with load_secrets(person, keys=["A", "B"], required=["B"]) as store:
        assert person.asked == [["B"]] and list(store) == ["B"]


def test_missing_required_keys_are_all_named_and_everything_is_wiped() -> None:
    src = Fake("a", {"A": b"secret-a"})
    with pytest.raises(MissingSecretsError) as info:
        load_secrets(src, required=["A", "B", "C"])
    assert info.value.keys == ("B", "C")
    assert "B" in str(info.value) and "C" in str(info.value)
    assert isinstance(info.value, KeyError)
    assert all(c.wiped for c in src.made), "cells filled before the failure are wiped"


def test_a_failing_source_wipes_what_was_loaded_and_propagates() -> None:
    good = Fake("good", {"A": b"secret-a"})
    bad = Failing("bad", {"B": b"x"})
    with pytest.raises(ProviderError, match="fake bad: backend down while loading B"):
        load_secrets(good, bad)
    assert good.made and all(c.wiped for c in good.made)


def test_a_source_returning_unasked_keys_is_an_error() -> None:
    made: list[CypherCell] = []

    class Sloppy(Fake):
        def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
            made.extend([CypherCell(b"1"), CypherCell(b"x")])
            return {"A": Entry(made[0], "sloppy"), "EXTRA": Entry(made[1], "sloppy")}

    with pytest.raises(ProviderError, match=r"not asked for: \['EXTRA'\]"):
        load_secrets(Sloppy("s", {"A": b"1"}))
    assert [c.wiped for c in made] == [True, True]


def test_entries_that_are_not_loaded_are_refused_and_their_cells_wiped() -> None:
    class Duck:
        def __init__(self, cell: CypherCell) -> None:
            self.cell, self.origin = cell, "duck"

    cells = [CypherCell(b"1"), CypherCell(b"2")]

    class Sloppy(Fake):
        def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
            return {"A": Entry(cells[0], "ok"), "B": Duck(cells[1])}  # type: ignore[dict-item]

    with pytest.raises(ProviderError, match="returned a Duck instead of an Entry"):
        load_secrets(Sloppy("s", {"A": b"1", "B": b"2"}))
    assert [c.wiped for c in cells] == [True, True]
    with pytest.raises(TypeError, match="must be Entry, not bytes"):
        SecretStore({"A": b"x"})  # type: ignore[dict-item]


def test_a_provider_may_return_any_mapping_and_keeps_nothing_the_store_owns() -> None:
    kept: list[Mapping[str, Entry]] = []

    class ReadOnly(Fake):
        def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
            got = MappingProxyType(super().load(keys, policy))
            kept.append(got)
            return got  # type: ignore[return-value]

    with load_secrets(ReadOnly("a", {"A": b"1"}), ReadOnly("b", {"B": b"2"})) as store:
        assert (store["A"], store["B"]) == (b"1", b"2")
        assert [dict(k) for k in kept] == [{"A": kept[0]["A"]}, {"B": kept[1]["B"]}]


def test_policy_exact_names_beat_patterns_which_beat_the_default() -> None:
    pm = PolicyMap(
        {"DB_TOKEN": Policy(volatile=True), "*_TOKEN": Policy(ttl_sec=60), "DB_*": Policy(ttl_sec=5)},
        default=Policy(ttl_sec=900),
    )
    assert pm("DB_TOKEN") == Policy(volatile=True)
    assert pm("API_TOKEN") == Policy(ttl_sec=60)
    assert pm("DB_USER") == Policy(ttl_sec=5)
    assert pm("OTHER") == Policy(ttl_sec=900)
    assert PolicyMap()("X") == Policy()


class NamedPolicy(Policy):
    """A subclass (module level, so pickle can find it)."""

    __slots__ = ()


def test_a_policy_is_an_immutable_value() -> None:
    p = Policy(ttl_sec=5, volatile=True)
    assert p == Policy(5, True, "auto") and p != Policy(ttl_sec=5) and p != (5, True, "auto")
    assert hash(p) == hash(Policy(ttl_sec=5, volatile=True))
    assert NamedPolicy(5) == NamedPolicy(5) and NamedPolicy(5) != Policy(5)
    assert type(pickle.loads(pickle.dumps(NamedPolicy(5)))) is NamedPolicy
    assert len({p, Policy(ttl_sec=5, volatile=True), Policy()}) == 2
    assert repr(p) == "Policy(ttl_sec=5, volatile=True, protection='auto')"
    assert pickle.loads(pickle.dumps(p)) == p and copy.deepcopy(p) == p
    with pytest.raises(AttributeError, match="immutable"):
        p.volatile = False  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del p.ttl_sec  # type: ignore[misc]
    assert (p.ttl_sec, p.volatile, p.protection) == (5, True, "auto")


def test_import_loads_no_provider_module_and_no_optional_dependency() -> None:
    """`import cypher_cell` stays cheap: providers load on first use."""
    code = (
        "import sys, cypher_cell, cypher_cell.providers as p\n"
        "before = sorted(m for m in sys.modules if m.startswith(('cypher_cell.providers.', 'keyring')))\n"
        "p.Keyring\n"
        "print(before, 'cypher_cell.providers.keyring' in sys.modules, 'keyring' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['cypher_cell.providers.base']", "True", "False"]


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"ttl_sec": 0}, ValueError),
        ({"ttl_sec": -1}, ValueError),
        ({"ttl_sec": float("nan")}, ValueError),
        ({"ttl_sec": "5"}, TypeError),
        ({"ttl_sec": True}, TypeError),
        ({"volatile": 1}, TypeError),
        ({"protection": "vault"}, ValueError),
        ({"ttl_sec": 10**400}, ValueError),
    ],
)
def test_bad_policies_fail_early(kwargs: dict[str, object], exc: type) -> None:
    with pytest.raises(exc):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments_to_load_secrets() -> None:
    with pytest.raises(TypeError, match="providers"):
        load_secrets({"A": "b"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of key names"):
        load_secrets(Fake("a", {}), required="A")
    with pytest.raises(TypeError, match="Policy"):
        load_secrets(Fake("a", {}), policy={"A": {"ttl_sec": 5}})  # type: ignore[dict-item]


def test_store_is_a_read_only_mapping_that_shows_sources_only() -> None:
    store = load_secrets(Fake("a", {"DB_PASSWORD": b"hunter2-xyz", "API": b"k-123456"}))
    assert isinstance(store, Mapping)
    assert len(store) == 2 and "API" in store
    text = repr(store) + str(store)
    assert "DB_PASSWORD" in text and "fake a:DB_PASSWORD" in text
    assert "hunter2" not in text and "k-123456" not in text
    with pytest.raises(TypeError):
        store["X"] = CypherCell(b"x")  # type: ignore[index]
    with pytest.raises(KeyError):
        store.source("NOPE")
    for dump in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            dump(store)


def test_close_and_with_wipe_every_cell_and_closing_twice_is_harmless() -> None:
    store = load_secrets(Fake("a", {"A": b"1111", "B": b"2222"}))
    cells = list(store.values())
    store.close()
    store.close()
    assert store.closed and all(c.wiped for c in cells)
    assert "closed" in repr(store)
    with load_secrets(Fake("a", {"A": b"1111"})) as s2:
        cell = s2["A"]
        assert not cell.wiped
    assert cell.wiped


def test_empty_store() -> None:
    store = load_secrets()
    assert isinstance(store, SecretStore) and len(store) == 0


class Closing(Fake):
    """Records close/commit calls; can fail in either."""

    def __init__(self, name: str, values: Mapping[str, bytes], fail: str = "") -> None:
        super().__init__(name, values)
        self.fail = fail
        self.calls: list[str] = []

    def offered_keys(self) -> Collection[str] | None:
        if self.fail == "offer":
            raise ProviderError(f"fake {self.name}: cannot list")
        return super().offered_keys()

    def commit(self) -> None:
        self.calls.append("commit")

    def close(self) -> None:
        self.calls.append("close")
        if self.fail == "close":
            raise ProviderError(f"fake {self.name}: close failed")


def test_sources_are_committed_only_on_success_and_always_closed() -> None:
    a, b = Closing("a", {"A": b"1"}), Closing("b", {"B": b"2"})
    load_secrets(a, b)
    assert a.calls == ["close", "commit"] and b.calls == ["close", "commit"]
    c, d = Closing("c", {"A": b"1"}), Closing("d", {})
    with pytest.raises(MissingSecretsError):
        load_secrets(c, d, required=["Z"])
    assert c.calls == ["close"] and d.calls == ["close"], "no commit after a failure"


def test_a_failing_close_wipes_everything_and_still_closes_the_others() -> None:
    good, bad, last = (
        Closing("good", {"A": b"secret-a"}),
        Closing("bad", {}, fail="close"),
        Closing("last", {}),
    )
    with pytest.raises(ProviderError, match="close failed"):
        load_secrets(good, bad, last)
    assert good.made and all(c.wiped for c in good.made)
    assert last.calls[-1] == "close"


def test_a_failing_listing_still_closes_the_sources_listed_before() -> None:
    first, failing = Closing("first", {"A": b"1"}), Closing("failing", {}, fail="offer")
    with pytest.raises(ProviderError, match="cannot list"):
        load_secrets(first, failing)
    assert first.calls == ["close"]


# --- a failed load: no value in a traceback, nothing changed ------------------------------------


def raised_by(call: Callable[[], object]) -> BaseException:
    """The exception `call` raises, caught in a frame that holds no value."""
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("no exception")


class Raw(Provider):
    """A faulty provider that hands back the value itself, not an Entry;
    it keeps the value behind a function (not a local of any frame)."""

    kind = "raw"

    def __init__(self, value: Callable[[], bytes]) -> None:
        self.value = value

    def offered_keys(self) -> Collection[str]:
        return ["K"]

    def load(self, keys: Sequence[str], policy: PolicyFor) -> dict[str, Entry]:
        return {"K": self.value()}  # type: ignore[dict-item]


def test_a_raw_value_returned_instead_of_a_loaded_is_in_no_traceback_local() -> None:
    secret = random_secret()
    make = lambda: secret  # noqa: E731 - a function: no traceback frame holds its closure
    error = raised_by(lambda: load_secrets(Raw(make)))
    assert isinstance(error, ProviderError) and "returned a bytes instead of an Entry" in str(error)
    places = value_in_traceback(error, secret)
    assert places == []


def test_a_raw_value_given_to_secret_store_is_in_no_traceback_local() -> None:
    secret = random_secret()
    make = lambda: secret  # noqa: E731 - a function: no traceback frame holds its closure
    error = raised_by(lambda: SecretStore({"K": make()}))  # type: ignore[dict-item]
    assert isinstance(error, TypeError) and "must be Entry, not bytes" in str(error)
    places = value_in_traceback(error, secret)
    assert places == []


def test_env_file_a_cell_that_cannot_be_made_leaves_no_value_in_traceback_locals(tmp_path: Path) -> None:
    """EnvFile's half of the rule, checked here (its own tests belong to the
    `.env` work): values stay in native code."""
    secret = random_secret()
    path = tmp_path / ".env"
    path.write_bytes(b"TOKEN=" + secret + b"\n")
    path.chmod(0o600)
    places = failed_load_leaves_no_value(
        "from cypher_cell.providers import EnvFile",
        f"load_secrets(EnvFile({str(path)!r}), default_policy=LOCKED)",
        secret,
    )
    assert places == []


@pytest.fixture
def planted_env() -> Iterator[tuple[str, str]]:
    name, secret = "CC_ORDER_" + secrets.token_hex(4).upper(), "v-" + secrets.token_hex(12)
    os.environ[name] = secret
    yield name, secret
    os.environ.pop(name, None)


def test_a_failing_close_leaves_the_environment_unscrubbed(planted_env: tuple[str, str]) -> None:
    """Sources are closed before any is committed: a close that fails fails
    the load before Environ scrubs anything."""
    name, secret = planted_env
    environ = Environ([name])
    with pytest.raises(ProviderError, match="close failed"):
        load_secrets(environ, Closing("bad", {}, fail="close"))
    same = os.environ.get(name) == secret
    assert same, "the variable was scrubbed by a load that failed"
    with load_secrets(Environ([name])) as store:  # and it still loads
        same = store[name] == secret.encode()
        assert same
    assert name not in os.environ


class FailingCommit(Closing):
    def commit(self) -> None:
        self.calls.append("commit")
        raise ProviderError(f"fake {self.name}: commit failed")


def test_a_failing_commit_is_a_warning_and_the_load_stands(planted_env: tuple[str, str]) -> None:
    """Commits come last, once the load has succeeded and every source is
    closed: one that fails cannot undo the others, so it warns, the other
    sources still commit, and the store is returned."""
    name, secret = planted_env
    first, last = FailingCommit("first", {"A": b"1"}), Closing("last", {})
    with pytest.warns(RuntimeWarning, match="fake first: commit failed") as caught:
        store = load_secrets(first, Environ([name]), last)
    assert len(caught) == 1
    assert first.calls == ["close", "commit"] and last.calls == ["close", "commit"]
    same = (store["A"] == b"1", store[name] == secret.encode())
    assert same == (True, True)
    assert name not in os.environ, "Environ committed its scrub after the failed commit"


def test_sources_are_all_closed_before_any_is_committed() -> None:
    order: list[str] = []

    class Recording(Closing):
        def commit(self) -> None:
            order.append(f"commit {self.name}")

        def close(self) -> None:
            order.append(f"close {self.name}")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_secrets(Recording("a", {"A": b"1"}), Recording("b", {"B": b"2"}))
    assert order == ["close a", "close b", "commit a", "commit b"]


def test_loaded_is_a_deprecated_alias_of_entry() -> None:
    from cypher_cell.providers import Entry, Loaded
    from cypher_cell.providers.base import Loaded as LoadedFromBase

    assert Loaded is Entry and LoadedFromBase is Entry


def test_memory_that_cannot_be_locked_is_an_error_naming_the_source(tmp_path: Path) -> None:
    """The engine's MemoryLockError knows the memory, not the source: the
    loader names the source it happened in (in a child that cannot lock)."""
    from support.child import run_child
    from support.envfile import write
    from support.privileges import CHECK_NO_CAP, without_memlock

    path = write(tmp_path, "TOKEN=0123456789abcdef\n")
    code = CHECK_NO_CAP + (
        "from cypher_cell import MemoryLockError, Policy, load_secrets\n"
        "from cypher_cell.providers import EnvFile\n"
        "try:\n"
        "    load_secrets(EnvFile(sys.argv[1]), default_policy=Policy(protection='locked'))\n"
        "except MemoryLockError as exc:\n"
        "    report(message=str(exc), tier=exc.tier)\n"
    )
    r = run_child(code, str(path), preexec_fn=without_memlock(0, 0))
    assert str(r["message"]).startswith(f"env-file {path}: could not get locked memory"), r["message"]
    assert r["tier"] == "locked"
