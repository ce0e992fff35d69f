"""SecretsDir: Docker /run/secrets, Kubernetes secret volumes, systemd
credentials; files read by Rust straight into cells."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from kernel import random_secret, scan_memory, secret_forms, start_child
from provider_contract import ProviderContract, failed_load_leaves_no_value

from cypher_cell import ProviderError, ProviderUnavailableError, load_secrets
from cypher_cell.providers import Provider, SecretsDir


class TestSecretsDirContract(ProviderContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def plant(self, planted: Mapping[str, bytes]) -> Provider:
        for k, v in planted.items():
            (self.dir / k).write_bytes(v + b"\n")
        return SecretsDir(self.dir)


def test_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    (tmp_path / "one").write_bytes(b"abc\n")
    (tmp_path / "two").write_bytes(b"abc\n\n")
    (tmp_path / "none").write_bytes(b"abc")
    (tmp_path / "crlf").write_bytes(b"abc\r\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "nl").write_bytes(b"\n")
    store = load_secrets(SecretsDir(tmp_path))
    assert store["one"] == b"abc"
    assert store["two"] == b"abc\n"
    assert store["none"] == b"abc"
    assert store["crlf"] == b"abc\r"
    assert store["empty"] == b""
    assert store["nl"] == b""


def test_kubernetes_layout_symlinks_inside_the_volume_are_followed(tmp_path: Path) -> None:
    data = tmp_path / "..2026_11_27_00_00_00.123"
    data.mkdir()
    (data / "password").write_bytes(b"k8s-pw")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "password").symlink_to("..data/password")
    store = load_secrets(SecretsDir(tmp_path))
    assert list(store) == ["password"]
    assert store["password"] == b"k8s-pw"
    assert store.source("password") == f"secrets-dir {tmp_path / 'password'}"


def test_systemd_credentials_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "db").write_bytes(b"cred")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_secrets(SecretsDir())["db"] == b"cred"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert "/run/secrets" in SecretsDir(optional=True).describe()


def test_symlinks_leaving_the_directory_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"not yours")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "escape").symlink_to(outside)
    with pytest.raises(ProviderError, match="escape is a symlink leading outside"):
        load_secrets(SecretsDir(secrets))


def test_files_over_the_size_cap_are_refused_without_content(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"Z" * 2000)
    with pytest.raises(ProviderError, match="over the 1000-byte limit") as info:
        load_secrets(SecretsDir(tmp_path, max_size=1000))
    assert "ZZ" not in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="no such directory"):
        load_secrets(SecretsDir(tmp_path / "nope"))
    assert len(load_secrets(SecretsDir(tmp_path / "nope", optional=True))) == 0


def test_not_a_directory_and_odd_entries(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(ProviderError, match="not a directory"):
        load_secrets(SecretsDir(f))
    d = tmp_path / "d"
    d.mkdir()
    (d / "sub").mkdir()
    (d / ".hidden").write_bytes(b"h")
    os.mkfifo(d / "fifo")
    assert SecretsDir(d).offered_keys() == ["fifo"]
    with pytest.raises(ProviderError, match="not a regular file"):
        load_secrets(SecretsDir(d))  # the FIFO must not hang the loader


def test_keys_that_are_not_plain_file_names_are_never_read(tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"1")
    store = load_secrets(SecretsDir(tmp_path), keys=["ok", "../ok", ".hidden", "a/b"])
    assert list(store) == ["ok"]


def test_a_read_file_leaves_no_copy_in_the_process(tmp_path: Path) -> None:
    secret = random_secret()
    (tmp_path / "token").write_bytes(secret + b"\n")
    child = start_child(
        """
from cypher_cell import load_secrets
from cypher_cell.providers import SecretsDir
store = load_secrets(SecretsDir(sys.argv[1]))
ok = len(store) == 1
store.close()
report(ok=ok)
hold()
""",
        str(tmp_path),
    )
    try:
        assert child.report == {"ok": True}
        assert scan_memory(child.pid, secret_forms(secret)).copies == 0
    finally:
        child.finish()


def test_control_reading_the_file_the_usual_way_leaves_a_copy(tmp_path: Path) -> None:
    secret = random_secret()
    (tmp_path / "token").write_bytes(secret + b"\n")
    child = start_child(
        """
with open(os.path.join(sys.argv[1], "token")) as f:
    token = f.read().rstrip("\\n")
del token
gc.collect()
report(ok=True)
hold()
""",
        str(tmp_path),
    )
    try:
        assert scan_memory(child.pid, secret_forms(secret)).copies >= 1
    finally:
        child.finish()


def test_a_cell_that_cannot_be_made_leaves_no_value_in_traceback_locals(tmp_path: Path) -> None:
    secret = random_secret()
    (tmp_path / "token").write_bytes(secret + b"\n")
    places = failed_load_leaves_no_value(
        "from cypher_cell.providers import SecretsDir",
        f"load_secrets(SecretsDir({str(tmp_path)!r}), default_policy=LOCKED)",
        secret,
    )
    assert places == []
