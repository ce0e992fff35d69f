"""CypherCellSettingsSource with real pydantic-settings: key matching as
pydantic-settings' environment source does it, cells straight from the
providers, policies, close and commit, errors without values, mixed
sources, and the residue a child leaves (read through /proc/PID/mem)."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pydantic_settings
import pytest
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from support.child import start_child
from support.envfile import write
from support.procfs import random_secret, scan_memory, secret_forms

from cypher_cell import CypherCell, Policy
from cypher_cell.providers import Entry, EnvFile, Environ, Provider, SecretsDir
from cypher_cell.pydantic import CypherCellSettingsSource

VERSION = tuple(int(x) for x in pydantic_settings.__version__.split(".")[:2])


def _with_sources(*make: Any) -> Any:
    """A settings_customise_sources that returns init_settings, then each
    ``make(settings_cls)``."""

    def customise(  # noqa: PLR0917 - pydantic-settings' signature
        cls: type[BaseSettings],
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, *(m(settings_cls) for m in make))

    return classmethod(customise)


@pytest.fixture
def planted() -> Iterator[str]:
    """A random value, and the environment variables a test sets, removed after."""
    before = dict(os.environ)
    yield random_secret().decode()
    for name in set(os.environ) - set(before):
        del os.environ[name]


def _envfile(tmp_path: Path, text: str) -> str:
    return str(write(tmp_path, text))


def test_cell_fields_get_the_providers_cell_and_text_fields_their_text(tmp_path: Path, planted: str) -> None:
    path = _envfile(
        tmp_path,
        f'TOKEN={planted}\nPORT=8080\nDEBUG=true\nAPI_KEY={planted}-k\nHOSTS=["a","b"]\nURL=https://x.test/p\n',
    )

    class S(BaseSettings):
        token: CypherCell
        port: int
        debug: bool
        api_key: SecretStr
        hosts: list[str]
        url: str
        absent: CypherCell | None = None
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    s = S()
    assert isinstance(s.token, CypherCell)
    assert s.token == planted.encode()
    assert (s.port, s.debug, s.hosts, s.url) == (8080, True, ["a", "b"], "https://x.test/p")
    assert s.api_key.get_secret_value() == planted + "-k"
    assert type(s.url) is str  # the redacted text wrapper does not outlive validation
    assert s.absent is None
    assert planted not in repr(s) and planted not in str(s)
    assert planted not in s.model_dump_json()


def test_a_before_validator_gets_the_text(tmp_path: Path) -> None:
    path = _envfile(tmp_path, "URL=  https://x.test/  \n")

    class S(BaseSettings):
        url: str

        @field_validator("url", mode="before")
        @classmethod
        def strip(cls, v: object) -> str:
            return str(v).strip()

        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    assert S().url == "https://x.test/"


def test_the_cell_is_the_providers_own_never_a_str(tmp_path: Path, planted: str) -> None:
    """The provider's cell object is what the model holds (no str made from it);
    the cell a text field was read from is wiped."""
    path = _envfile(tmp_path, f"TOKEN={planted}\nNAME=n\n")
    made: list[CypherCell] = []

    class Recording(EnvFile):
        def load(self, keys: Any, policy: Any) -> Any:
            got = super().load(keys, policy)
            made.extend(e.cell for e in got.values())
            return got

    class S(BaseSettings):
        token: CypherCell
        name: str
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, Recording(path)))

    s = S()
    assert len(made) == 2
    assert any(c is s.token for c in made)
    (text_cell,) = [c for c in made if c is not s.token]
    assert text_cell.wiped and not s.token.wiped


def test_matching_env_prefix_case_and_aliases(tmp_path: Path, planted: str) -> None:
    path = _envfile(
        tmp_path,
        f"APP_TOKEN={planted}\napp_port=81\nLEGACY_DB=db-{planted}\nsvc_name=svc\nAPP_name=ignored\n",
    )

    class S(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="APP_")
        token: CypherCell
        port: int
        db: CypherCell = Field(validation_alias=AliasChoices("NEW_DB", "LEGACY_DB"))
        name: str = Field(alias="SVC_NAME")
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    s = S()
    assert s.token == planted.encode()
    assert s.port == 81
    assert s.db == f"db-{planted}".encode()
    assert s.name == "svc"


def test_case_sensitive_does_not_match_other_cases(tmp_path: Path, planted: str) -> None:
    path = _envfile(tmp_path, f"TOKEN={planted}\n")

    class S(BaseSettings):
        model_config = SettingsConfigDict(case_sensitive=True)
        token: CypherCell | None = None
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    assert S().token is None

    class T(S):
        TOKEN: CypherCell | None = None

    assert planted.encode() == T().TOKEN


def test_unlisted_provider_is_asked_for_each_spelling(planted: str) -> None:
    os.environ["APP_TOKEN"] = planted

    class S(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="APP_")
        token: CypherCell
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, Environ()))

    assert S().token == planted.encode()


def test_a_person_is_asked_once_per_required_field_only(planted: str) -> None:
    """A provider that asks a person (Prompt() without keys) is asked for
    required fields only, one name each (not every spelling)."""
    asked: list[str] = []

    class Person(Provider):
        """A provider written to the public contract: it answers any key."""

        kind = "person"

        @property
        def asks_only_required(self) -> bool:
            return True

        def offered_keys(self) -> None:
            return None

        def load(self, keys: Any, policy: Any) -> dict[str, Entry]:
            asked.extend(keys)
            return {k: Entry(CypherCell(planted.encode()), "person") for k in keys}

    class S(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="APP_")
        token: CypherCell
        optional: CypherCell | None = None
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, Person()))

    s = S()
    assert asked == ["APP_token"]
    assert s.token == planted.encode() and s.optional is None


def test_env_nested_delimiter_is_refused_clearly(tmp_path: Path) -> None:
    path = _envfile(tmp_path, "A=1\n")

    class S(BaseSettings):
        model_config = SettingsConfigDict(env_nested_delimiter="__")
        a: int = 0
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    with pytest.raises(SettingsError, match="does not split keys on env_nested_delimiter"):
        S()


def test_a_cell_inside_another_type_is_refused(tmp_path: Path) -> None:
    path = _envfile(tmp_path, "A=1\n")

    class S(BaseSettings):
        cells: list[CypherCell] = []
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    with pytest.raises(TypeError, match="inside another type would pass through a str"):
        S()


def test_first_provider_wins(tmp_path: Path, planted: str) -> None:
    first = _envfile(tmp_path, f"TOKEN={planted}\n")
    (tmp_path / "b").mkdir()
    second = str(write(tmp_path / "b", "TOKEN=other\nEXTRA=e\n"))

    class S(BaseSettings):
        token: CypherCell
        extra: str
        settings_customise_sources = _with_sources(
            lambda c: CypherCellSettingsSource(c, EnvFile(first), EnvFile(second))
        )

    s = S()
    assert s.token == planted.encode()
    assert s.extra == "e"


def test_policies_annotated_then_map_then_default(tmp_path: Path, planted: str) -> None:
    path = _envfile(tmp_path, f"A={planted}\nB_OTP={planted}\nC={planted}\nD={planted}\n")

    class S(BaseSettings):
        a: Annotated[CypherCell, Policy(ttl_sec=60, volatile=True)]
        b_otp: CypherCell
        c: CypherCell
        d: Annotated[CypherCell, Policy(ttl_sec=7)] | None = None
        settings_customise_sources = _with_sources(
            lambda cls: CypherCellSettingsSource(
                cls,
                EnvFile(path),
                policy={"*_otp": Policy(volatile=True), "a": Policy(ttl_sec=1)},
                default_policy=Policy(ttl_sec=99),
            )
        )

    s = S()
    assert (s.a.volatile, s.a.ttl_sec) == (True, 60.0)  # Annotated beats policy={"a": ...}
    assert (s.b_otp.volatile, s.b_otp.ttl_sec) == (True, None)  # a pattern of policy=
    assert (s.c.volatile, s.c.ttl_sec) == (False, 99.0)  # default_policy
    assert s.d is not None and s.d.ttl_sec == 7.0


def test_providers_are_closed_and_environ_scrubbed_once_built(tmp_path: Path, planted: str) -> None:
    os.environ["TOKEN"] = planted
    path = _envfile(tmp_path, "NAME=n\n")
    closed: list[bool] = []

    class Closing(EnvFile):
        def close(self) -> None:
            closed.append(True)
            super().close()

    class S(BaseSettings):
        token: CypherCell
        name: str
        settings_customise_sources = _with_sources(
            lambda c: CypherCellSettingsSource(c, Closing(path), Environ(["TOKEN"]))
        )

    s = S()
    assert closed  # (EnvFile may close itself too once it has read)
    assert "TOKEN" not in os.environ
    assert s.token == planted.encode()


def test_a_failed_build_scrubs_nothing(planted: str) -> None:
    os.environ["TOKEN"] = planted

    class S(BaseSettings):
        token: CypherCell
        missing_field: str
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, Environ(["TOKEN"])))

    with pytest.raises(ValidationError):
        S()
    assert os.environ.get("TOKEN") == planted

    class Bad(BaseSettings):
        token: CypherCell
        port: int
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, Environ(["TOKEN"])))

    os.environ["PORT"] = "not-a-port"
    with pytest.raises(ValidationError):
        Bad(_env_file=None)
    assert os.environ.get("TOKEN") == planted
    del os.environ["PORT"]


def test_missing_required_fields_are_pydantics_error_without_values(
    tmp_path: Path, planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The cell fields' value is in no text, errors() or json() of the error,
    nor in warnings or logs (PYDANTIC_SETTINGS_DEBUG logs every source's
    data, in the versions that have it); a text field's value is in no text
    of it (its errors()/json() input still holds it: docs/pydantic.md)."""
    text_value = random_secret().decode()
    path = _envfile(tmp_path, f"TOKEN={planted}\nAPI_KEY={text_value}\n")
    os.environ["PYDANTIC_SETTINGS_DEBUG"] = "1"

    class S(BaseSettings):
        token: CypherCell
        api_key: SecretStr
        db_password: CypherCell
        other: str
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        with pytest.raises(ValidationError) as info:
            S()
    err = info.value
    assert sorted(e["loc"] for e in err.errors()) == [("db_password",), ("other",)]
    assert {e["type"] for e in err.errors()} == {"missing"}
    logs_and_warnings = [caplog.text, *(str(w.message) for w in caught)]
    texts = [str(err), repr(err), *logs_and_warnings]
    assert not [t for t in [*texts, err.json(), repr(err.errors())] if planted in t]
    assert not [t for t in texts if text_value in t]


def test_without_hide_input_the_error_text_shows_no_provider_value(tmp_path: Path, planted: str) -> None:
    """The missing field's error prints its input (every other field):
    cells print [REDACTED], and the text a field got from a provider too.
    (`errors()` and `json()` keep the text fields' input objects: docs.)"""
    path = _envfile(tmp_path, f'TOKEN={planted}\nAPI_KEY={planted}\nHOSTS=["{planted}"]\n')

    class S(BaseSettings):
        token: CypherCell
        api_key: SecretStr
        hosts: list[str]
        missing_field: str
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    with pytest.raises(ValidationError) as info:
        S()
    assert "missing_field" in str(info.value)
    assert planted not in str(info.value)
    assert planted not in repr(info.value.errors())
    # The cell field's value is nowhere in the error, json() included.
    assert json.loads(info.value.json())[0]["input"]["token"] == "[REDACTED]"


def test_bad_text_errors_name_the_key_not_the_value(tmp_path: Path, planted: str) -> None:
    d = tmp_path
    (tmp_path / "name").write_bytes(b"\xff" + planted.encode())
    (tmp_path / "hosts").write_bytes(b"[" + planted.encode())

    class S(BaseSettings):
        name: str = ""
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, SecretsDir(str(d))))

    with pytest.raises(SettingsError) as info:
        S()
    assert "'name'" in str(info.value) and "not UTF-8" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None

    class T(BaseSettings):
        hosts: list[str] = []
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, SecretsDir(str(d))))

    with pytest.raises(SettingsError) as info2:
        T()
    assert "not valid JSON" in str(info2.value)
    assert planted not in str(info2.value) and info2.value.__context__ is None


def test_init_settings_first_then_ours(tmp_path: Path, planted: str) -> None:
    path = _envfile(tmp_path, f"TOKEN=file-{planted}\nNAME=from-file\n")

    class S(BaseSettings):
        token: CypherCell
        name: str
        settings_customise_sources = _with_sources(lambda c: CypherCellSettingsSource(c, EnvFile(path)))

    given = CypherCell(planted.encode())
    s = S(token=given)
    assert s.token is given
    assert s.name == "from-file"


def test_with_pydantic_settings_json_source_for_non_secrets(tmp_path: Path, planted: str) -> None:
    path = _envfile(tmp_path, f"TOKEN={planted}\n")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"name": "svc", "port": 8443, "token": "json-loses"}))

    class S(BaseSettings):
        model_config = SettingsConfigDict(json_file=str(config))
        token: CypherCell
        name: str
        port: int
        settings_customise_sources = _with_sources(
            lambda c: CypherCellSettingsSource(c, EnvFile(path)), JsonConfigSettingsSource
        )

    s = S()
    assert s.token == planted.encode()  # ours comes first
    assert (s.name, s.port) == ("svc", 8443)


def test_not_a_provider_is_refused(tmp_path: Path) -> None:
    class S(BaseSettings):
        a: int = 0

    with pytest.raises(TypeError, match="takes providers"):
        CypherCellSettingsSource(S, "not a provider")  # type: ignore[arg-type]
    assert issubclass(EnvFile, Provider)


# --- residue, read by the kernel's accounts of a child ---

BUILD_WIPE_DROP = """
import warnings
warnings.simplefilter("ignore")
from pydantic_settings import BaseSettings
from cypher_cell import CypherCell
from cypher_cell.pydantic import CypherCellSettingsSource
from cypher_cell.providers import EnvFile

class Settings(BaseSettings):
    token: CypherCell
    name: str

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, CypherCellSettingsSource(settings_cls, EnvFile(sys.argv[1])))

s = Settings()
with s.token.expose() as view:  # read in place: reveal() would leave a bytes copy
    ok = len(view) == 47 and s.name == "svc"
s.token.wipe()
del s
gc.collect()
report(ok=ok)
hold()
"""

CONTROL = """
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=sys.argv[1])
    token: SecretStr
    name: str

s = Settings()
ok = s.name == "svc"
del s
gc.collect()
report(ok=ok)
hold()
"""


def _scan(code: str, path: Path, secret: bytes) -> int:
    child = start_child(code, str(path))
    try:
        assert child.report == {"ok": True}
        return scan_memory(child.pid, secret_forms(secret)).copies
    finally:
        child.finish()


def test_residue_zero_copies_after_wipe_and_drop(tmp_path: Path) -> None:
    secret = random_secret()
    path = write(tmp_path, f"TOKEN={secret.decode()}\nNAME=svc\n")
    assert _scan(BUILD_WIPE_DROP, path, secret) == 0


def test_residue_control_pydantic_settings_env_file_secretstr_leaves_copies(tmp_path: Path) -> None:
    secret = random_secret()
    path = write(tmp_path, f"TOKEN={secret.decode()}\nNAME=svc\n")
    assert _scan(CONTROL, path, secret) >= 1
