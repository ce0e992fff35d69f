"""Type stubs for the Rust core, `cypher_cell._native` (native/lib.rs maps it).

One section per file of the PyO3 layer: native/py/cell.rs (CypherCell),
native/pyffi/export.rs (Exposure), native/py/debug.rs (_wipe_all, _pool_stats,
_probe), native/py/faults.rs, native/py/prompt.rs, native/py/environ.rs,
native/py/secrets_file.rs, native/py/entry.rs (Entry),
native/py/dotenv_file.rs (DotenvFile), native/py/redact.rs (redact,
RedactStream) and native/py/run.rs (spawn_with_secrets, MaskedOutput). Argument checks shared by every
constructor (volatile, ttl_sec, protection) are native/py/options.rs.
"""

from collections.abc import Iterable
from types import TracebackType
from typing import Literal, NoReturn, final, overload

from typing_extensions import Buffer

__all__ = [
    "SPAWN_PTY",
    "CypherCell",
    "DotenvFile",
    "Entry",
    "Exposure",
    "MaskedOutput",
    "RedactStream",
    "__version__",
    "_fault_arm",
    "_fault_calls",
    "_fault_disarm",
    "_fault_kinds",
    "_pool_stats",
    "_probe",
    "_wipe_all",
    "environ_cell",
    "is_plain_name",
    "prompt_cell",
    "read_file_cell_at",
    "redact",
    "scrub_environ",
    "spawn_with_secrets",
    "stray_entry",
    "wipe_entries",
]
__version__: str

_Protection = Literal["auto", "secretmem", "locked", "unlocked"]

@final
class CypherCell:
    def __new__(
        cls,
        data: Buffer | str,
        *,
        volatile: bool = False,
        ttl_sec: float | None = None,
        wipe_source: bool = False,
        protection: _Protection = "auto",
    ) -> CypherCell: ...
    def reveal(self) -> bytes: ...
    def reveal_masked(self, suffix_len: int = 4) -> str: ...
    def expose(self) -> Exposure: ...
    def wipe(self) -> None: ...
    @property
    def wiped(self) -> bool: ...
    @property
    def protection(self) -> Literal["secretmem", "locked", "unlocked"]: ...
    @property
    def volatile(self) -> bool: ...
    @property
    def ttl_sec(self) -> float | None: ...
    def __enter__(self) -> CypherCell: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...
    def __format__(self, spec: str, /) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]
    def __reduce__(self) -> NoReturn: ...
    def __copy__(self) -> NoReturn: ...
    def __deepcopy__(self, memo: object, /) -> NoReturn: ...

@final
class Exposure:
    def __enter__(self) -> memoryview: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

# native/py/debug.rs: for the package's atexit hook and `cypher-cell doctor`.
def _wipe_all() -> int: ...
def _pool_stats() -> dict[str, int]: ...
def _probe() -> dict[str, object]: ...

# native/py/faults.rs: for the fault loops (tests/test_faults.py) only; inert until armed.
def _fault_arm(kind: str, nth: int, errno: int, persistent: bool = False) -> None: ...
def _fault_disarm() -> None: ...
def _fault_calls(kind: str) -> int: ...
def _fault_kinds() -> list[str]: ...

# native/py/prompt.rs: the native half of Prompt (the answer is read into locked memory).
def prompt_cell(
    prompt: str,
    *,
    volatile: bool = False,
    ttl_sec: float | None = None,
    protection: _Protection = "auto",
    max_len: int = 4096,
    tty_path: str = "/dev/tty",
) -> CypherCell: ...

# native/py/environ.rs and native/py/secrets_file.rs: the native halves of Environ and SecretsDir.
def environ_cell(
    name: bytes,
    *,
    volatile: bool = False,
    ttl_sec: float | None = None,
    protection: _Protection = "auto",
) -> CypherCell | None: ...
def scrub_environ(name: bytes) -> dict[str, int | bool]: ...
def read_file_cell_at(
    dir_fd: int,
    name: bytes,
    *,
    label: str,
    max_size: int,
    strip_newline: bool = True,
    volatile: bool = False,
    ttl_sec: float | None = None,
    protection: _Protection = "auto",
) -> CypherCell | None: ...
def is_plain_name(name: str) -> bool: ...

# native/py/run.rs: `cypher-cell run`'s child, its environment built in locked memory,
# and its outputs copied to ours masked.
SPAWN_PTY: int

@final
class MaskedOutput:
    def __new__(cls, source: int, sink: int) -> MaskedOutput: ...
    def pump(self) -> int: ...
    def pending(self) -> bool: ...
    def flush(self) -> None: ...
    def finish(self) -> None: ...
    @property
    def sink_open(self) -> bool: ...

def spawn_with_secrets(
    argv: list[bytes],
    inherited: list[bytes],
    secrets: list[tuple[str, CypherCell]],
    *,
    stdio: tuple[int | None, int | None, int | None],
    pty: bytes | None = None,
    default_signals: list[int] = ...,
) -> int: ...

# native/py/entry.rs: what providers hand to load_secrets (public as cypher_cell.providers.Entry).
@final
class Entry:
    def __new__(cls, cell: CypherCell, origin: str) -> Entry: ...
    @property
    def cell(self) -> CypherCell: ...
    @property
    def origin(self) -> str: ...

def wipe_entries(entries: Iterable[Entry]) -> None: ...
def stray_entry(entries: Iterable[object]) -> object | None: ...

# native/py/dotenv_file.rs: the native half of EnvFile (the file is read and parsed in locked memory).
@final
class DotenvFile:
    def __new__(
        cls,
        path: str,
        *,
        encoding: str = "utf-8",
        interpolate: bool = True,
        max_size: int = 67108864,
    ) -> DotenvFile: ...
    @property
    def path(self) -> str: ...
    @property
    def mode(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def nul_line(self) -> int | None: ...
    def keys(self) -> list[str]: ...
    def outline(self) -> list[tuple[str | None, int, bool]]: ...
    def line(self, key: str) -> int: ...
    def has_value(self, key: str) -> bool: ...
    def cell(
        self,
        key: str,
        *,
        volatile: bool = False,
        ttl_sec: float | None = None,
        protection: _Protection = "auto",
    ) -> CypherCell: ...
    def loadable(self) -> tuple[tuple[str, ...], list[int]]: ...
    def load(
        self,
        keys: Iterable[str],
        *,
        volatile: bool = False,
        ttl_sec: float | None = None,
        protection: _Protection = "auto",
    ) -> dict[str, Entry]: ...
    def problems(self) -> list[tuple[int, str]]: ...
    def duplicates(self) -> list[tuple[str, list[int]]]: ...
    def undefined_references(self) -> list[tuple[str, int, str | None]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> DotenvFile: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

# native/py/redact.rs: value-based redaction of every live cell (and its encoded forms).
@overload
def redact(data: str) -> str: ...
@overload
def redact(data: bytes) -> bytes: ...
@overload
def redact(data: bytearray) -> bytearray: ...

@final
class RedactStream:
    def __init__(self) -> None: ...
    def feed(self, data: bytes) -> bytes: ...
    def pending(self) -> bool: ...
    def flush(self) -> bytes: ...
    def finish(self) -> bytes: ...
