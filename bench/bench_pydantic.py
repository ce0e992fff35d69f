"""Benchmark building a pydantic-settings object from a .env file through
CypherCellSettingsSource, beside pydantic-settings' own ``env_file=`` with
``SecretStr``, in one run.

Run from the repository root (cypher_cell, pydantic and pydantic-settings
importable)::

    python bench/bench_pydantic.py            # 21 batches of 50 builds
    python bench/bench_pydantic.py --quick    # smoke run: 3 batches of 5
    python bench/bench_pydantic.py --check    # exit 1 when the target FAILs
    python bench/bench_pydantic.py --json out.json

The model has 50 fields: 10 secrets (``CypherCell`` for ours, ``SecretStr``
for pydantic-settings) and 40 others (str, int, bool, float, list[str] as
JSON). What is timed is ``Settings()``: for ours, the sources
``(init_settings, CypherCellSettingsSource(cls, EnvFile(path)))`` (the
file read and parsed in locked memory, 10 cells kept, 40 read as text and
wiped); for pydantic-settings, its default sources with ``env_file=path``
(init, environment, .env, secrets dir), and also with only
``(init_settings, dotenv_settings)``, the closest to ours. Batches
alternate between the variants; medians of the per-build time per batch.

Target (issue 9): ours no slower than pydantic-settings' ``env_file=``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pydantic_settings
from pydantic import SecretStr, create_model
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cypher_cell import CypherCell, __version__
from cypher_cell.providers import EnvFile
from cypher_cell.pydantic import CypherCellSettingsSource

SECRETS = 10
OTHERS = 40


def write_env(directory: Path) -> Path:
    lines = [f"SECRET_{i}={secrets.token_hex(16)}" for i in range(SECRETS)]
    for i in range(OTHERS):
        kind = i % 5
        value = [f"name-{i}", str(1000 + i), "true", f"{i}.5", f'["a{i}","b{i}"]'][kind]
        lines.append(f"FIELD_{i}={value}")
    path = directory / ".env"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def other_fields() -> dict[str, Any]:
    kinds: list[Any] = [str, int, bool, float, list[str]]
    return {f"field_{i}": (kinds[i % 5], ...) for i in range(OTHERS)}


def ours(path: Path) -> type[BaseSettings]:
    class OursBase(BaseSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, CypherCellSettingsSource(settings_cls, EnvFile(str(path))))

    fields = {f"secret_{i}": (CypherCell, ...) for i in range(SECRETS)} | other_fields()
    return create_model("Ours", __base__=OursBase, **fields)


def theirs(path: Path, *, only_dotenv: bool) -> type[BaseSettings]:
    class TheirsBase(BaseSettings):
        model_config = SettingsConfigDict(env_file=str(path))

    class TheirsDotenvBase(TheirsBase):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, dotenv_settings)

    fields = {f"secret_{i}": (SecretStr, ...) for i in range(SECRETS)} | other_fields()
    return create_model("Theirs", __base__=TheirsDotenvBase if only_dotenv else TheirsBase, **fields)


def per_build(make: Callable[[], object], builds: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(builds):
        make()
    return (time.perf_counter() - start) / builds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    batches, builds = (3, 5) if args.quick else (21, 50)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_env(Path(tmp))
        variants = {
            "ours: CypherCellSettingsSource(EnvFile)": ours(path),
            "pydantic-settings env_file= (default sources)": theirs(path, only_dotenv=False),
            "pydantic-settings env_file= (init + dotenv only)": theirs(path, only_dotenv=True),
        }
        for cls in variants.values():  # check each builds, and warm up
            built = cls()
            assert len(type(built).model_fields) == SECRETS + OTHERS
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(batches):
            for name, cls in variants.items():
                times[name].append(per_build(cls, builds))
    medians = {name: statistics.median(t) for name, t in times.items()}
    mine = medians["ours: CypherCellSettingsSource(EnvFile)"]
    anchor = medians["pydantic-settings env_file= (default sources)"]
    print(
        f"cypher_cell {__version__}, pydantic {pydantic.VERSION}, pydantic-settings "
        f"{pydantic_settings.__version__}, CPython {platform.python_version()}"
    )
    print(
        f"Settings() with {SECRETS} secrets + {OTHERS} other fields; medians of {batches} x {builds} builds"
    )
    for name, median in medians.items():
        print(f"  {name:<52} {median * 1e6:9.1f} µs   {median / anchor:5.2f}x")
    met = mine <= anchor
    print(f"target: no slower than pydantic-settings env_file= -> {'met' if met else 'FAILED'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians_s": medians, "met": met}, indent=2))
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
