"""Replies no real server sends, from a fake Vault on loopback
(support.fake_vault): the client must give a clear error (a ProviderError
naming the address or path), keep its memory bounded and never crash.

Each load runs in a child process (support.child): a crash (a stack
overflow on deep nesting, an abort) shows as the child's exit status, and
its peak memory is the kernel's account, VmHWM in /proc/PID/status, read
by this process while the child waits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from support.child import start_child
from support.fake_vault import FakeVault, Reply, body, chunked, http_response, kv_reply, silent, streamed
from support.procfs import status_kib

MIB = 1 << 20

#: The child: loads secret/app from the address in argv[1] with the timeout
#: in argv[2]; reports the outcome (field values here are test data, not
#: secrets: the non-string test compares them), VmRSS before and the time.
LOAD = """
import signal
signal.alarm(int(float(sys.argv[2])) + 60)  # a load that never returns kills the child, not the run
from cypher_cell import load_secrets
from cypher_cell.providers import Vault, VaultToken
from support.procfs import status_kib
urls = sys.argv[1].split(",")
timeout = float(sys.argv[2])
url = urls if len(urls) > 1 else urls[0]
vault = Vault("secret/app", url=url, auth=VaultToken("s.fake"), timeout=timeout)
rss = status_kib("VmRSS")
started = time.monotonic()
try:
    store = load_secrets(vault)
except BaseException as exc:
    mro = [c.__name__ for c in type(exc).__mro__]
    outcome = {"error": type(exc).__name__, "message": str(exc), "mro": mro}
else:
    sizes = {k: len(store[k].reveal()) for k in store}
    small = {k: store[k].reveal().decode() for k in store if sizes[k] < 4096}
    outcome = {"values": small, "sizes": sizes}
    store.close()
signal.alarm(0)
report(rss_kib=rss, seconds=time.monotonic() - started, **outcome)
hold()
"""


def run_load(server_urls: str, timeout: float = 10.0) -> tuple[dict[str, object], int]:
    """The child's report and its VmHWM (KiB) after the load."""
    child = start_child(LOAD, server_urls, str(timeout))
    try:
        peak = status_kib("VmHWM", child.pid)
    finally:
        child.finish()  # asserts the child exited 0: no crash
    return child.report, peak


@pytest.fixture
def serve() -> Iterator[list[FakeVault]]:
    servers: list[FakeVault] = []
    yield servers
    for server in servers:
        server.close()


def fake(servers: list[FakeVault], reply: Reply) -> FakeVault:
    server = FakeVault(reply)
    servers.append(server)
    return server


def assert_provider_error(report: dict[str, object], *named: str) -> str:
    assert "error" in report, f"the load succeeded: {report.get('sizes')}"
    assert "ProviderError" in report["mro"], f"{report['error']}: {report['message']}"  # type: ignore[operator]
    message = str(report["message"])
    for name in named:
        assert name in message, f"{name!r} not in the error: {message}"
    return message


def test_a_body_that_is_not_json_is_a_clear_error(serve: list[FakeVault]) -> None:
    server = fake(serve, body(b"<html><body>502 Bad Gateway (proxy)</body></html>"))
    report, _ = run_load(server.address)
    message = assert_provider_error(report, "secret/app")
    assert "json" in message.lower(), message


def test_a_truncated_body_is_a_clear_error(serve: list[FakeVault]) -> None:
    whole = kv_reply({"API_KEY": "x" * 200})
    server = fake(serve, body(whole[:60], length=len(whole)))
    report, _ = run_load(server.address, timeout=3.0)
    assert_provider_error(report, server.address)


def test_a_content_length_of_2_gb_is_refused_with_bounded_memory(serve: list[FakeVault]) -> None:
    # The body really comes (up to 512 MiB, then the server hangs up): a
    # client that trusts Content-Length or reads without a limit holds it.
    head = http_response(b"", length=2 * 1024 * MIB)
    server = fake(serve, streamed(head, b'{"data":{"k":"' + b"x" * (MIB - 15), total=512 * MIB))
    report, peak = run_load(server.address, timeout=20.0)
    assert_provider_error(report, server.address)
    grown = (peak - int(report["rss_kib"])) // 1024  # type: ignore[call-overload]
    assert grown < 160, f"peak memory grew by {grown} MiB for a body announced as 2 GiB"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_100_mb_json_is_bounded(serve: list[FakeVault], framing: str) -> None:
    # Chunked, the size is known only by reading: the limit must hold while reading.
    size = 100 * MIB
    data = b'{"lease_duration":0,"data":{"BIG":"' + b"y" * size + b'"}}'
    server = fake(serve, body(data) if framing == "content-length" else chunked(data))
    report, peak = run_load(server.address, timeout=30.0)
    grown = (peak - int(report["rss_kib"])) // 1024  # type: ignore[call-overload]
    if "error" in report:
        # Refused as too large: then nothing near its size was held.
        assert_provider_error(report, "secret/app")
        assert grown < 160, f"peak memory grew by {grown} MiB refusing a 100 MiB reply"
    else:
        assert report["sizes"] == {"BIG": size}
        # The body (locked) and the cell, not copy after copy of it.
        assert grown < 4 * 100, f"peak memory grew by {grown} MiB for a 100 MiB reply"


def test_nesting_100000_deep_does_not_crash(serve: list[FakeVault]) -> None:
    depth = 100_000
    nested = b"[" * depth + b"]" * depth
    server = fake(serve, body(b'{"data":{"DEEP":' + nested + b',"FLAT":"f"}}'))
    report, peak = run_load(server.address)
    # The child exited normally (run_load checks): no stack overflow.
    if "error" in report:
        assert_provider_error(report, "secret/app")
    else:
        assert report["sizes"] == {"DEEP": 2 * depth, "FLAT": 1}
    grown = (peak - int(report["rss_kib"])) // 1024  # type: ignore[call-overload]
    assert grown < 64, f"peak memory grew by {grown} MiB for a 200 KB reply"


#: Field -> its JSON text exactly as the server sends it.
NON_STRINGS = {
    "INT": b"42",
    "NEGATIVE_EXP": b"-3e5",
    "FLOAT": b"1.50",
    "TRUE": b"true",
    "FALSE": b"false",
    "ARRAY": b'["a",1,{"b":null},"q\\"uote"]',
    "OBJECT": b'{"x":"y","z":[1,2]}',
    "STRING": b'"plain"',
}


def test_fields_that_are_not_strings_become_their_json_text(serve: list[FakeVault]) -> None:
    fields = b",".join(b'"' + k.encode() + b'":' + v for k, v in NON_STRINGS.items())
    server = fake(serve, body(b'{"lease_duration":0,"data":{' + fields + b"}}"))
    report, _ = run_load(server.address)
    assert "values" in report, f"{report.get('error')}: {report.get('message')}"
    expected = {k: v.decode() for k, v in NON_STRINGS.items()}
    expected["STRING"] = "plain"  # a string is its value, unquoted
    assert report["values"] == expected


def test_a_server_that_never_answers_fails_within_the_timeout(serve: list[FakeVault]) -> None:
    hold = threading.Event()
    try:
        server = fake(serve, silent(hold))
        report, _ = run_load(server.address, timeout=1.5)
    finally:
        hold.set()
    assert_provider_error(report, server.address)
    assert "ProviderUnavailableError" in report["mro"]  # type: ignore[operator]
    assert float(report["seconds"]) < 1.5 + 1.0, f"took {report['seconds']:.2f} s with timeout=1.5"  # type: ignore[str-format]
