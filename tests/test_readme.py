"""The README's usage examples run as written (each ```python block, in a
fresh interpreter) and the quick start names the commands CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_the_three_usage_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs_as_written(index: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLES[index]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Lines the example says it prints ("# prints: X") are what it prints.
    expected = re.findall(r"#\s*prints:\s*(.*)", EXAMPLES[index])
    assert result.stdout.splitlines() == [e.strip() for e in expected]


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```(?:sh|bash|console)\n(.*?)```", section, flags=re.DOTALL)
    lines = [line for block in commands for line in block.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    ci = (ROOT / ".ci" / "run").read_text()
    assert lines[1] in ci
