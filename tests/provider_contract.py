"""The contract every provider meets, as a mixin each provider's tests reuse
(keyring's ``BackendBasicTests`` is the model). A test class sets `plant`:
a fixture-like method that makes a provider holding the given secrets.

Values are random and never appear in assertion messages: tests compare
cells with ``==`` into a name and assert that name with a message naming
the key (pytest's assertion rewriting would otherwise show both sides).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping

import pytest

from cypher_cell import CellExpiredError, CellWipedError, MissingSecretsError, Policy, load_secrets
from cypher_cell.providers import Provider

Plant = Callable[[Mapping[str, bytes]], Provider]


def value() -> bytes:
    return b"v-" + secrets.token_hex(12).encode()


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
