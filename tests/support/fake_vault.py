"""A fake Vault HTTP server on loopback, for replies no real server sends
(a real OpenBao serves everything else: support.openbao).

It speaks just enough HTTP/1.1 to be asked for one path: the mount probe
(``GET /v1/sys/internal/ui/mounts/<path>``) is answered as OpenBao answers
it for a KV v1 mount named ``secret/``, so the client then reads
``GET /v1/secret/<name>``; that read gets the reply under test, written to
the socket byte for byte by a `Reply` (a function of the connection), which
is how it can lie about ``Content-Length``, stop half-way, stream 100 MB or
never answer at all.

Runs in a thread of the test process and is stopped by `close()`; every
connection is closed when the server stops.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator

#: Writes the reply to a read of the secret onto the connection.
Reply = Callable[[socket.socket], None]

MOUNT_REPLY = {
    "request_id": "00000000-0000-0000-0000-000000000000",
    "data": {"path": "secret/", "type": "kv", "options": {"version": "1"}, "description": ""},
}


def http_response(body: bytes, *, status: str = "200 OK", length: int | None = None) -> bytes:
    """Status line and headers, then `body`; `length` overrides Content-Length."""
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def body(data: bytes, *, length: int | None = None, status: str = "200 OK") -> Reply:
    """A reply of `data` (Content-Length `length` if given), then the
    connection closes."""

    def reply(conn: socket.socket) -> None:
        conn.sendall(http_response(data, length=length, status=status))

    return reply


def kv_reply(data: dict[str, object]) -> bytes:
    """A KV v1 read's JSON with `data` as its fields (compact separators, so
    a nested value's JSON text is the same however a parser re-renders it)."""
    return json.dumps(
        {"request_id": "1", "lease_id": "", "renewable": False, "lease_duration": 2764800, "data": data},
        separators=(",", ":"),
    ).encode()


def streamed(head: bytes, chunk: bytes, total: int) -> Reply:
    """Sends `head` then `chunk` repeatedly until `total` bytes of body went
    out or the client hung up (a client that refuses a large body closes)."""

    def reply(conn: socket.socket) -> None:
        conn.sendall(head)
        sent = 0
        with contextlib.suppress(OSError):
            while sent < total:
                piece = chunk[: total - sent]
                conn.sendall(piece)
                sent += len(piece)

    return reply


def chunked(data: bytes, chunk: int = 1 << 20) -> Reply:
    """`data` with ``Transfer-Encoding: chunked`` (no Content-Length: the
    client learns the size only by reading), until the client hangs up."""

    def reply(conn: socket.socket) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            conn.sendall(head.encode())
            view = memoryview(data)
            for at in range(0, len(data), chunk):
                piece = view[at : at + chunk]
                conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            conn.sendall(b"0\r\n\r\n")

    return reply


def silent(hold: threading.Event) -> Reply:
    """Accepts the request and never answers (until the server stops)."""

    def reply(conn: socket.socket) -> None:
        hold.wait()

    return reply


class FakeVault:
    """A loopback server whose reads of ``secret/<name>`` get `reply`."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.address = f"http://127.0.0.1:{self.port}"
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="fake-vault", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                request = _read_request(conn)
                if request is None:
                    return
                self.requests.append(request)
                if request.split(" ")[1].startswith("/v1/sys/internal/ui/mounts/"):
                    mount = json.dumps(MOUNT_REPLY).encode()
                    head = (
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(mount)}\r\n\r\n"
                    )
                    conn.sendall(head.encode() + mount)  # keep-alive: the read may follow here
                    continue
                self.reply(conn)
                return
        except OSError:
            return
        finally:
            # The reply's end is the connection's end (a truncated body is
            # seen as such, not as a slow server).
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        self._acceptor.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)


def _read_request(conn: socket.socket) -> str | None:
    """Reads one request (headers and a Content-Length body); returns its
    request line, or None when the client closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        piece = conn.recv(65536)
        if not piece:
            return None
        rest += piece
    return lines[0]


@contextlib.contextmanager
def fake_vault(reply: Reply) -> Iterator[FakeVault]:
    server = FakeVault(reply)
    try:
        yield server
    finally:
        server.close()
