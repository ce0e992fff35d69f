"""The benchmarks still run (figures are checked by reading them, not here:
timing on a shared machine is not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cell_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_cell.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert "targets" in figures
    assert "capacity" in figures


def test_envfile_benchmark_quick_run_completes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_envfile.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EnvFile" in result.stdout


def test_vault_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_vault.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["paths"]["ours"]["wall_ms"] > 0 and figures["paths"]["hvac"]["wall_ms"] > 0
    assert set(figures["first_call_ms"]) == {"ours", "hvac"}
    assert figures["renewal"]["leases"] == 50


def test_redact_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_redact.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert [row["secrets"] for row in figures["redact"]["rows"]] == [10, 100, 1000]
    assert all(row["leaked"] == 0 and row["masked"] > 0 for row in figures["redact"]["rows"])
    assert len(figures["targets"]) == 3


def test_pydantic_benchmark_quick_run_completes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_pydantic.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CypherCellSettingsSource" in result.stdout
