"""`pytest` without the test extra stops at once, with one line saying how to
install it (instead of a ModuleNotFoundError per test file).

The run is a real `python -m pytest` of this suite in a subprocess whose
import system cannot find one test dependency: a `sitecustomize` module
(run at interpreter start, before pytest reads the installed plugins)
replaces the path finder by one that sees neither that package nor its
distribution, so `import` fails and pytest loads no plugin of it, exactly
as when it is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Test dependencies: the module the tests import, and the distribution
#: `pip install -e '.[test]'` installs it from.
DEPENDENCIES = {
    "dotenv": "python-dotenv",
    "hypothesis": "hypothesis",
    "keyring": "keyring",
    "secretstorage": "secretstorage",
    "cryptography": "cryptography",
    "hvac": "hvac",
    "psycopg": "psycopg",
}

HIDE = '''
"""Hides one installed package from the import system and from
importlib.metadata, as if it were not installed."""
import re
import sys
from importlib.machinery import PathFinder

MODULE, DISTRIBUTION = {module!r}, {distribution!r}


def _name(dist):
    return re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()


class PathFinderWithout(PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] == MODULE:
            return None
        return super().find_spec(fullname, path, target)

    @classmethod
    def find_distributions(cls, *args, **kwargs):
        return (d for d in super().find_distributions(*args, **kwargs) if _name(d) != DISTRIBUTION)


sys.meta_path[:] = [PathFinderWithout if f is PathFinder else f for f in sys.meta_path]
'''


def run(tmp_path: Path, module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    hide = HIDE.format(module=module, distribution=DEPENDENCIES.get(module, module))
    (tmp_path / "sitecustomize.py").write_text(hide)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("module", sorted(DEPENDENCIES))
def test_a_missing_test_dependency_stops_the_run_with_one_line(tmp_path: Path, module: str) -> None:
    # Control: the plugin does hide the module and its distribution.
    check = (
        "import importlib.metadata as m\n"
        f"assert {DEPENDENCIES[module]!r} not in {{d.metadata['Name'].lower() for d in m.distributions()}}\n"
        f"import {module}\n"
    )
    hidden = run(tmp_path, module, "-c", check)
    assert hidden.returncode == 1 and f"No module named '{module}'" in hidden.stderr, hidden.stderr[-2000:]
    # --collect-only: should the check be missing, nothing runs in the child.
    r = run(tmp_path, module, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "tests")
    said = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, said[-20:]
    assert len(said) == 1, said[-20:]
    assert DEPENDENCIES[module] in said[0]
    assert "pip install -e '.[test]'" in said[0] and "make test" in said[0]


def test_control_with_nothing_hidden_the_same_run_collects_the_suite(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        "no_such_module_here",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--collect-only",
        "-q",
        "tests",
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "tests collected" in r.stdout
