"""`cypher-cell check` and `cypher-cell show`, and the main job
(`examples/demo.py`), run as a user would: in a subprocess (where only the
printed text is looked at, `check` runs in this process).

The PEM and base64 rules of `check` have many more tests in
test_envfile_pem.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.cli import run_cli, run_main
from support.envfile import write

ROOT = Path(__file__).resolve().parent.parent
PLANTED = "PLANTED-VALUE-7f3a9c"


def test_check_lists_keys_and_lines_never_values(tmp_path: Path) -> None:
    path = write(tmp_path, f"# config\nDB_PASSWORD={PLANTED}\nexport API_KEY='{PLANTED}'\nFLAG\n")
    r = run_cli("check", str(path))
    assert r.returncode == 0, r.stderr
    assert PLANTED not in r.stdout + r.stderr
    assert "2 keys" in r.stdout
    assert "line    2  DB_PASSWORD" in r.stdout
    assert "line    3  API_KEY" in r.stdout
    assert "line    4  (not a KEY=value line, not shown" in r.stdout
    assert "FLAG" not in r.stdout
    assert "no problems" in r.stdout


def test_check_never_prints_a_line_of_an_unquoted_multi_line_value(tmp_path: Path) -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    path = write(tmp_path, f"PRIVATE_KEY=-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    r = run_cli("check", str(path))
    assert body not in r.stdout + r.stderr


def test_check_reports_every_kind_of_problem_with_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"A={PLANTED}\nB=${{NOT_DEFINED_ANYWHERE_X}}\nC='${{IN_SINGLE_QUOTES}}'\nA=again\n"
        f'D="unterminated {PLANTED}\n',
        mode=0o644,
    )
    r = run_cli("check", str(path))
    assert r.returncode == 1
    out = r.stdout
    assert PLANTED not in out + r.stderr
    assert f"{path}:4: A is defined again (also line 1)" in out
    assert f"{path}:2: B refers to ${{NOT_DEFINED_ANYWHERE_X}}" in out
    # python-dotenv (the oracle) interpolates single-quoted values too.
    assert f"{path}:3: C refers to ${{IN_SINGLE_QUOTES}}" in out
    assert f"{path}:5:" in out
    assert "mode 0644" in out


def test_check_json(tmp_path: Path) -> None:
    path = write(tmp_path, f"X={PLANTED}\n")
    r = run_cli("check", "--json", str(path))
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["ok"] is True
    assert data["keys"] == [{"key": "X", "line": 1, "has_value": True}]
    assert PLANTED not in r.stdout


def test_check_missing_file_and_directory(tmp_path: Path) -> None:
    r = run_cli("check", str(tmp_path / "nope.env"))
    assert r.returncode == 1 and "nope.env" in r.stderr
    r = run_cli("check", str(tmp_path))
    assert r.returncode == 1 and str(tmp_path) in r.stderr


def test_check_defaults_to_dot_env_in_the_current_directory(tmp_path: Path) -> None:
    write(tmp_path, "K=v\n")
    r = run_cli("check", cwd=tmp_path)
    assert r.returncode == 0 and "K" in r.stdout


def test_show_prints_keys_sources_and_protection_redacted(tmp_path: Path) -> None:
    path = write(tmp_path, f"DB_PASSWORD={PLANTED}\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "stripe").write_text(PLANTED)
    r = run_cli(
        "show",
        "--env-file",
        str(path),
        "--secrets-dir",
        str(secrets),
        "--environ-prefix",
        "CCSHOW_",
        env={"CCSHOW_TOKEN": PLANTED},
    )
    assert r.returncode == 0, r.stderr
    assert PLANTED not in r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["key", "source", "policy", "protection", "value"]
    assert any(line.split()[:2] == ["DB_PASSWORD", "env-file"] for line in lines)
    assert any(line.split()[:2] == ["stripe", "secrets-dir"] for line in lines)
    assert any(line.split()[:3] == ["TOKEN", "environ", "CCSHOW_TOKEN"] for line in lines)
    assert all(line.endswith("[REDACTED]") for line in lines[1:])


def test_show_missing_required_key_fails_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "A=1\n")
    r = run_cli("show", "--env-file", str(path), "--required", "MUST_HAVE")
    assert r.returncode == 1
    assert "MUST_HAVE" in r.stderr


def test_main_job_demo_runs_and_redacts() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "correct horse" not in r.stdout and "sk-demo" not in r.stdout
    assert "DB_PASSWORD" in r.stdout and "ttl 300s" in r.stdout
    assert "every cell wiped: True" in r.stdout
    assert r.stderr == ""


def test_check_never_prints_a_base64_line_that_parses_as_a_key(tmp_path: Path) -> None:
    """The last line of an unquoted PEM body ends in '=' padding, so it
    parses as KEY= with an empty value; its text must not be shown."""
    last = "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm=="
    pem = f"-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n{last}\n-----END PRIVATE KEY-----"
    path = write(tmp_path, f"PRIVATE_KEY={pem}\nOK=1\n")
    r = run_cli("check", str(path))
    assert r.returncode == 1
    assert last.rstrip("=") not in r.stdout + r.stderr
    assert f"{path}:1: a PEM block (-----BEGIN ...) written without quotes, up to line 4" in r.stdout
    assert "line    5  OK" in r.stdout


def test_check_does_not_print_a_reference_found_inside_a_value(tmp_path: Path) -> None:
    path = write(
        tmp_path, "DB_PASSWORD=Xk9${q7Zp2LmW}v!\nURL=${NOT_DEFINED_X}\nC='${ALSO_UNDEFINED}${AND_THIS}'\n"
    )
    status, out = run_main("check", str(path))
    assert status == 1
    leaked = "q7Zp2LmW" in out or "Xk9" in out
    assert not leaked
    assert f"{path}:1: DB_PASSWORD refers to an undefined ${{...}}" in out
    # A value that is nothing but references names them: that text is a
    # reference, not part of a secret.
    assert f"{path}:2: URL refers to ${{NOT_DEFINED_X}}" in out
    assert "${ALSO_UNDEFINED}" in out and "${AND_THIS}" in out
    status, js = run_main("check", "--json", str(path))
    leaked = "q7Zp2LmW" in js
    assert not leaked


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`cypher-cell check | head -1`: the pipe closes early; no traceback."""
    env_file = write(tmp_path, "".join(f"KEY_{i}=v{i}\n" for i in range(20_000)))
    reader, writer = os.pipe()
    os.close(reader)  # nobody reads: the first write fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "cypher_cell", "check", str(env_file)],
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(writer)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
