"""Findings of the second security review of the Vault provider, against
the real OpenBao dev server (support.openbao), or the fake
(support.fake_vault) where the reply is one no real server sends:

- a proxy from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) is not
  used for a loopback address, as Go's HTTP client (the `bao`/`vault` CLI)
  does not: a local Vault Agent or dev server over plain HTTP would
  otherwise hand its token and replies to the proxy in clear text;
- a reply with very many fields is parsed in time linear in its size (the
  fake: OpenBao's own JSON limits refuse to store such a secret);
- a lease obtained for one path is revoked (``revoke_on_close``) when
  another path of the same load fails below HTTP (the fake: a reply that
  is not JSON; also cut short, too large, or no answer in time), as it is
  when the other path fails with an HTTP status;
- an address whose connections hang (a host that is down) does not take
  the whole `timeout`: the next address is still tried in time;
- a lease duration past any clock (the fake) is no Rust panic;
- the renewal thread blocks asynchronous signals, as the TTL reaper does.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from support.child import run_child
from support.fake_vault import FakeVault, body, http_response, kv_reply
from support.openbao import OpenBao

from cypher_cell import ProviderError, load_secrets
from cypher_cell.providers import Vault, VaultToken


class Listener:
    """A loopback socket standing in for a proxy: counts the connections
    made to it and the bytes sent (never looked at), then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.received = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    self.received += len(conn.recv(65536))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "https_proxy", "ALL_PROXY"])
def test_a_proxy_from_the_environment_is_not_used_for_a_loopback_address(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    value = "p-" + secrets.token_hex(12)
    openbao.kv_put("review/proxy", {"P": value})
    proxy = Listener()
    try:
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(variable, proxy.address)
        assert openbao.address.startswith("http://127.0.0.1:")
        provider = Vault(
            "secret/review/proxy", url=openbao.address, auth=VaultToken(openbao.root_token), timeout=3
        )
        try:
            with load_secrets(provider) as store:
                same = store["P"] == value.encode()
        finally:
            monkeypatch.delenv(variable)
    finally:
        proxy.close()
    assert proxy.connections == 0, (
        f"{proxy.connections} connection(s) to the proxy ({proxy.received} bytes sent)"
    )
    assert same, "P differs"


def test_a_reply_with_very_many_fields_is_read_in_linear_time() -> None:
    # OpenBao refuses to store such a secret (its JSON limits), so the fake
    # serves it: a compromised server, or a proxy on a plain-HTTP path,
    # could otherwise stall every reader past any `timeout`.
    n = 300_000
    fields: dict[str, object] = {f"f{i}": "v" for i in range(n)}
    fields["WANTED"] = "wanted"
    server = FakeVault(body(kv_reply(fields)))
    try:
        provider = Vault(
            "secret/app", url=server.address, auth=VaultToken("s.fake"), keys={"WANTED": "WANTED"}, timeout=30
        )
        started = time.monotonic()
        with load_secrets(provider) as store:
            same = store["WANTED"] == b"wanted"
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert same, "WANTED differs"
    # Linear: a fraction of a second; quadratic in the fields: minutes.
    assert elapsed < 10.0, f"reading {n} fields took {elapsed:.1f} s"


def test_a_lease_read_before_another_path_fails_is_revoked_on_close() -> None:
    # Two paths read at once; the first reply carries a lease (dynamic
    # credentials), the second is not JSON (a rogue or broken server: a
    # real one does not send it). The load fails; with revoke_on_close the
    # lease obtained meanwhile must still be revoked, as it is when the
    # second path fails with an HTTP status.
    calls: list[int] = []
    leased = json.dumps(
        {"lease_id": "fake/creds/1", "renewable": False, "lease_duration": 600, "data": {"U": "u"}}
    ).encode()

    def reply(conn: socket.socket) -> None:
        calls.append(1)
        if len(calls) == 1:
            conn.sendall(http_response(leased))
        elif len(calls) == 2:
            time.sleep(0.3)  # after the first reply is in
            conn.sendall(http_response(b"<html>not JSON</html>"))
        else:
            conn.sendall(http_response(b"", status="204 No Content"))

    server = FakeVault(reply)
    try:
        provider = Vault(
            "secret/a",
            "secret/b",
            url=server.address,
            auth=VaultToken("s.fake"),
            revoke_on_close=True,
            timeout=5,
        )
        with pytest.raises(ProviderError):
            load_secrets(provider)
        revokes = [r for r in server.requests if r.startswith("PUT /v1/sys/leases/revoke")]
    finally:
        server.close()
    assert len(calls) >= 2, "the second path was not read"
    assert revokes, f"the lease was not revoked (requests: {server.requests})"


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """An address whose connections hang, as a powered-off node's do: a
    listener with a backlog of 0, filled, so the kernel drops new SYNs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        with probe, pytest.raises(TimeoutError):  # the set-up works: connecting hangs
            probe.connect(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_a_node_that_never_completes_a_connection_leaves_time_for_the_next(openbao: OpenBao) -> None:
    # The issue: a dead node is skipped for the others within `timeout`.
    # A refused connection is skipped at once; one that hangs (a host that
    # is down, SYNs unanswered) took the whole timeout for itself.
    value = "h-" + secrets.token_hex(12)
    openbao.kv_put("review/hung", {"H": value})
    with black_hole() as hung:
        provider = Vault(
            "secret/review/hung",
            url=[hung, openbao.address],
            auth=VaultToken(openbao.root_token),
            timeout=6.0,
        )
        started = time.monotonic()
        with load_secrets(provider) as store:
            same = store["H"] == value.encode()
        elapsed = time.monotonic() - started
    assert same, "H differs"
    assert elapsed < 6.0, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("duration", [2**64 - 1, 2**63 - 1])
def test_a_lease_duration_past_any_clock_is_not_a_panic(duration: int) -> None:
    # Instant + Duration overflowed: PanicException (a BaseException, not a
    # ProviderError) from the load, and again from closing the provider.
    raw = json.dumps({"lease_id": "x/1", "renewable": True, "lease_duration": duration, "data": {"A": "a"}})
    server = FakeVault(body(raw.encode()))
    try:
        provider = Vault("secret/app", url=server.address, auth=VaultToken("s.fake"), timeout=5)
        with load_secrets(provider) as store:
            same = store["A"] == b"a"
            left = store["A"].expires_in
    finally:
        server.close()
    assert same, "A differs"
    assert left is None or left > 3600 * 24 * 365


def test_the_lease_renewal_thread_blocks_every_signal_a_process_may_be_sent(openbao: OpenBao) -> None:
    # As the TTL reaper's (test_reaper): a process-directed SIGTERM must not
    # land on the renewal thread, where its default action ends the process
    # instead of reaching Python's handler or `cypher-cell run`'s forwarder.
    # The kernel's account: each thread's SigBlk in /proc/PID/task/TID/status.
    openbao.kv_put("review/signals", {"S": "s-" + secrets.token_hex(8)})
    code = (
        "import os, signal\n"
        "from cypher_cell import load_secrets\n"
        "from cypher_cell.providers import Vault\n"
        "names = ('SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGWINCH', 'SIGCHLD')\n"
        "def blocked():\n"
        "    out = {}\n"
        "    for tid in os.listdir('/proc/self/task'):\n"
        "        status = open(f'/proc/self/task/{tid}/status').read().splitlines()\n"
        "        mask = int(next(l for l in status if l.startswith('SigBlk:')).split()[1], 16)\n"
        "        out[tid] = [s for s in names if mask >> (getattr(signal, s) - 1) & 1]\n"
        "    return out\n"
        "before = set(blocked())\n"
        "with load_secrets(Vault('secret/review/signals')):\n"
        "    after = blocked()\n"
        "report(main=after[str(os.getpid())], new=[v for t, v in after.items() if t not in before])\n"
    )
    got = run_child(code, env=openbao.env())
    all_six = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGCHLD"]
    assert got["new"], "no thread was started (the renewal thread)"
    assert got["new"] == [all_six] * len(got["new"]), (
        f"a thread started by the load takes a signal: {got['new']}"
    )  # type: ignore[arg-type]
    assert got["main"] == [], "the caller's mask is restored"
