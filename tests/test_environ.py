"""Environ: values from the process environment, scrubbed from
`os.environ`, the C environment and the initial environment block."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from support.child import start_child
from support.procfs import random_secret, scan_memory, secret_forms
from support.provider_contract import ProviderContract, failed_load_leaves_no_value

from cypher_cell import MissingSecretsError, ProviderError, load_secrets
from cypher_cell.providers import Environ, Provider


@pytest.fixture(autouse=True)
def clean_env() -> Iterator[None]:
    before = dict(os.environ)
    yield
    for k in set(os.environ) - set(before):
        del os.environ[k]


class TestEnvironContract(ProviderContract):
    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        for k, v in planted.items():
            os.environ["CCT_" + k] = v.decode()
        return Environ(prefix="CCT_")


class TestEnvironByNameContract(ProviderContract):
    enumerable = False

    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        for k, v in planted.items():
            os.environ[k] = v.decode()
        return Environ()


def test_prefix_offers_every_variable_carrying_it_and_drops_it() -> None:
    os.environ.update({"APP_DB_PASSWORD": "pw-1", "APP_TOKEN": "tok-2", "OTHER": "x", "APP_": "empty-name"})
    store = load_secrets(Environ(prefix="APP_"))
    assert sorted(store) == ["DB_PASSWORD", "TOKEN"]
    assert store.source("DB_PASSWORD") == "environ APP_DB_PASSWORD"
    assert "OTHER" in os.environ


def test_without_keys_or_prefix_only_asked_keys_are_loaded_and_scrubbed() -> None:
    os.environ.update({"WANTED": "w-1", "UNWANTED": "u-2"})
    store = load_secrets(Environ(), required=["WANTED"])
    assert list(store) == ["WANTED"]
    assert "WANTED" not in os.environ
    assert os.environ["UNWANTED"] == "u-2"


def test_explicit_keys() -> None:
    os.environ.update({"K1": "v-1", "K2": "v-2"})
    store = load_secrets(Environ(["K1", "MISSING"]))
    assert list(store) == ["K1"]
    assert os.environ.get("K2") == "v-2"


def test_scrub_false_leaves_the_environment() -> None:
    os.environ["KEEP_ME"] = "still-here"
    store = load_secrets(Environ(["KEEP_ME"], scrub=False))
    assert store["KEEP_ME"] == b"still-here"
    assert os.environ["KEEP_ME"] == "still-here"


def test_scrubbed_variables_are_not_inherited_by_children() -> None:
    os.environ["NOT_FOR_KIDS"] = "kid-secret"
    load_secrets(Environ(["NOT_FOR_KIDS"]))
    out = subprocess.run(
        [sys.executable, "-c", "import os; print('NOT_FOR_KIDS' in os.environ)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="list of names"):
        Environ("SINGLE")
    with pytest.raises(TypeError, match="prefix"):
        Environ(prefix=3)  # type: ignore[arg-type]


def test_inherited_secret_leaves_no_copy_and_proc_environ_no_longer_shows_it() -> None:
    """The secret arrives in the child's initial environment block (not its
    argv or source); after loading and closing, the whole memory holds no
    copy and /proc/PID/environ shows no value."""
    secret = random_secret()
    child = start_child(
        """
from cypher_cell import MissingSecretsError, ProviderError, load_secrets
from cypher_cell.providers import Environ
store = load_secrets(Environ(prefix="CCR_"), required=["TOKEN"])
assert store["TOKEN"] == store["TOKEN"]
loaded = "CCR_TOKEN" not in os.environ
store.close()
gc.collect()
report(loaded=loaded)
hold()
""",
        env={"CCR_TOKEN": secret.decode()},
    )
    try:
        assert child.report == {"loaded": True}
        environ_block = Path(f"/proc/{child.pid}/environ").read_bytes()
        assert secret not in environ_block
        # Emptied in place: NAME= and one NUL per byte of the value, then the
        # string's own NUL (the length stays visible: README, "not protected").
        assert b"CCR_TOKEN=" + b"\0" * (len(secret) + 1) in environ_block, "the entry is emptied in place"
        assert scan_memory(child.pid, secret_forms(secret)).copies == 0
    finally:
        child.finish()


@pytest.mark.parametrize(
    ("how", "minimum"),
    [
        ("kept = os.environ['CCR_TOKEN']", 2),  # os.environ bytes + str + initial block
        ("del os.environ['CCR_TOKEN']", 1),  # the initial block (and freed bytes) remain
    ],
)
def test_control_the_usual_ways_leave_copies(how: str, minimum: int) -> None:
    secret = random_secret()
    child = start_child(how + "\nreport(done=True)\nhold()\n", env={"CCR_TOKEN": secret.decode()})
    try:
        assert scan_memory(child.pid, secret_forms(secret)).copies >= minimum
    finally:
        child.finish()


def test_a_shared_bytes_value_is_not_zeroed_under_its_other_holders() -> None:
    """os.environb[k] = CONSTANT stores the caller's own object: zeroing it
    in place would change the constant. The scrub leaves it (and says so)."""
    constant = b"shared-constant-value"
    os.environb[b"CC_SHARED"] = constant
    store = load_secrets(Environ(["CC_SHARED"]))
    assert store["CC_SHARED"] == b"shared-constant-value"
    assert constant == b"shared-constant-value"
    assert "CC_SHARED" not in os.environ


def test_listing_and_loading_never_decode_a_value_into_a_str(monkeypatch: pytest.MonkeyPatch) -> None:
    os.environ["CC_LISTED"] = "listed-value"
    decoded: list[object] = []
    real = os.environ.decodevalue  # type: ignore[attr-defined]

    def counting(value: bytes) -> str:
        decoded.append(None)
        return str(real(value))

    monkeypatch.setattr(os.environ, "decodevalue", counting)
    assert Environ(["CC_LISTED", "CC_ABSENT"]).offered_keys() == ["CC_LISTED"]
    store = load_secrets(Environ(["CC_LISTED"]))
    assert len(store) == 1
    assert decoded == []


def test_a_failed_load_leaves_the_environment_as_it_was() -> None:
    """All or nothing: the scrub happens only once the whole load succeeded."""
    os.environ["CCF_A"] = "still-here-1"
    with pytest.raises(MissingSecretsError):
        load_secrets(Environ(prefix="CCF_"), required=["A", "MISSING"])
    assert os.environ["CCF_A"] == "still-here-1"
    store = load_secrets(Environ(prefix="CCF_"), required=["A"])
    assert store["A"] == b"still-here-1"
    assert "CCF_A" not in os.environ


def test_a_cell_that_cannot_be_made_leaves_no_value_in_traceback_locals() -> None:
    """Locked memory refused while loading: the error's traceback, as an
    error reporter capturing locals records it, holds no value."""
    secret = random_secret()
    places = failed_load_leaves_no_value(
        "from cypher_cell.providers import Environ",
        "load_secrets(Environ(prefix='CCL_'), required=['TOKEN'], default_policy=LOCKED)",
        secret,
        env={"CCL_TOKEN": secret.decode()},
    )
    assert places == []


def test_a_replaced_os_environ_is_refused_not_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without os.environ's own storage a value could only be read as a
    str copy: the native half refuses, naming the reason."""
    monkeypatch.setattr(os, "environ", {"CC_REPLACED": "x" * 8})
    with pytest.raises(ProviderError, match="replaced"):
        load_secrets(Environ(keys=["CC_REPLACED"]))
