"""The benchmarks still run (figures are checked by reading them, not here:
timing on a shared machine is not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def quick(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Runs ``bench/SCRIPT --quick ARGS`` and checks that it succeeded."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def figures(script: str, tmp_path: Path) -> dict[str, Any]:
    """The figures a ``--quick --json PATH`` run of ``bench/SCRIPT`` writes."""
    out = tmp_path / "bench.json"
    quick(script, "--json", str(out))
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_cell_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    got = figures("bench_cell.py", tmp_path)
    assert "targets" in got
    assert "capacity" in got


def test_envfile_benchmark_quick_run_completes() -> None:
    assert "EnvFile" in quick("bench_envfile.py", timeout=600).stdout


def test_vault_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    got = figures("bench_vault.py", tmp_path)
    assert got["paths"]["ours"]["wall_ms"] > 0 and got["paths"]["hvac"]["wall_ms"] > 0
    assert set(got["first_call_ms"]) == {"ours", "hvac"}
    assert got["renewal"]["leases"] == 50


def test_redact_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    got = figures("bench_redact.py", tmp_path)
    assert [row["secrets"] for row in got["redact"]["rows"]] == [10, 100, 1000]
    assert all(row["leaked"] == 0 and row["masked"] > 0 for row in got["redact"]["rows"])
    assert len(got["targets"]) == 3


def test_pydantic_benchmark_quick_run_completes() -> None:
    assert "CypherCellSettingsSource" in quick("bench_pydantic.py").stdout
