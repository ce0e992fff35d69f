"""Reading the kernel's own accounts of a process's memory.

These helpers never ask cypher_cell what it did: they read /proc (status,
maps, smaps, mem) and CPython's buffer protocol. They are the tests' own
readers on purpose (the doctor and the benchmarks have theirs): a test must
not trust the library it checks. Scans look at a *child* process
(support.child), because the scanner's needle is itself a copy of the secret.
"""

from __future__ import annotations

import ctypes
import secrets
from dataclasses import dataclass, field
from pathlib import Path


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]


def buffer_address(obj: object) -> int:
    """The address CPython's buffer protocol reports for ``obj``'s bytes."""
    view = _PyBuffer()
    if _get_buffer(obj, ctypes.byref(view), 0) != 0:
        raise BufferError("no buffer")
    try:
        return int(view.buf or 0)
    finally:
        _release_buffer(ctypes.byref(view))


def cell_address(cell: object) -> int:
    """Where a (non-volatile) cell's bytes live, from its exposed view."""
    with cell.expose() as view:  # type: ignore[attr-defined]
        return buffer_address(view)


def status_kib(field_name: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    path: str
    fields: dict[str, int] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.start <= addr < self.end


def maps(pid: int | str = "self") -> list[Mapping]:
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append(Mapping(lo, hi, parts[1], parts[5] if len(parts) > 5 else ""))
    return out


def smaps(pid: int | str = "self") -> list[Mapping]:
    out: list[Mapping] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            out.append(Mapping(lo, hi, head[1], head[5] if len(head) > 5 else ""))
        elif line.startswith("VmFlags:"):
            out[-1].flags = set(line.split()[1:])
        elif head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
            out[-1].fields[head[0][:-1]] = int(head[1])
    return out


def mapping_of(addr: int, pid: int | str = "self") -> Mapping:
    for m in smaps(pid):
        if addr in m:
            return m
    raise LookupError(f"no mapping contains {addr:#x}")


def secret_forms(secret: bytes) -> list[bytes]:
    """The raw bytes and the UTF-16-LE/UTF-32-LE forms a str copy would take."""
    text = secret.decode("ascii")
    return [secret, text.encode("utf-16-le"), text.encode("utf-32-le")]


@dataclass
class Scan:
    copies: int = 0
    unreadable_regions: int = 0
    unreadable_paths: list[str] = field(default_factory=list)


def scan_memory(pid: int, needles: list[bytes]) -> Scan:
    """Counts every occurrence of each needle in a process's readable memory."""
    scan = Scan()
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for m in maps(pid):
            if m.path in ("[vvar]", "[vsyscall]", "[vvar_vclock]") or m.perms.startswith("---"):
                continue
            chunks = []
            for pos in range(m.start, m.end, 1 << 20):
                try:
                    mem.seek(pos)
                    chunks.append(mem.read(min(1 << 20, m.end - pos)))
                except OSError:
                    scan.unreadable_regions += 1
                    scan.unreadable_paths.append(m.path)
                    break
            data = b"".join(chunks)
            scan.copies += sum(data.count(n) for n in needles)
    return scan


def read_memory(pid: int, addr: int, length: int) -> bytes | None:
    """`length` bytes of another process at `addr`, or None if refused."""
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(addr)
            return mem.read(length)
    except OSError:
        return None


def random_secret() -> bytes:
    """A printable secret that appears nowhere by chance."""
    return b"ccTEST-" + secrets.token_hex(20).encode()
