"""Value-based redaction: `redact()` and `install_log_redaction()`.

`redact(data)` replaces every live cell's value, and its common encodings
(base64 at every alignment, URL percent-encoding, JSON and ``repr()``
escaping, each line of a multi-line value), with ``[REDACTED]``. The
matcher is in Rust (native/redact/); this module wires it into `logging`
and, on request, `sys.stdout`/`sys.stderr`.

`logging` is imported only when `install_log_redaction()` runs, so that
``import cypher_cell`` stays cheap.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from cypher_cell._native import RedactStream, redact

if TYPE_CHECKING:
    import logging

__all__ = ["install_log_redaction", "redact"]

_lock = threading.Lock()

#: The attributes every LogRecord has; any other string attribute came from
#: ``extra=`` and is masked too.
_STANDARD_ATTRS = frozenset(
    {
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
        "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
        "relativeCreated", "thread", "threadName", "processName", "process", "taskName",
    }
)  # fmt: skip


def _mask_record(record: logging.LogRecord) -> None:
    """Renders what a handler would render from `record`, masked, and drops
    what could be rendered again unmasked (args, the exception object)."""
    import logging  # noqa: PLC0415  (kept out of `import cypher_cell`)

    try:
        message = record.getMessage()
    except Exception as err:  # logging must not raise here
        # logging's own error report would print the args: show neither.
        message = f"{record.msg!s} [arguments not shown: formatting failed with {type(err).__name__}]"
    record.msg = redact(message)
    record.args = ()
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        # The exception object would let a formatter render it afresh.
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _mask_extra(record: logging.LogRecord) -> None:
    """Masks the string fields ``extra=`` added to `record`."""
    for name, value in vars(record).items():
        if name not in _STANDARD_ATTRS and isinstance(value, str):
            setattr(record, name, redact(value))


def _install() -> None:
    import logging  # noqa: PLC0415  (kept out of `import cypher_cell`)

    previous = logging.getLogRecordFactory()

    def masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    masking_factory._cypher_cell_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masking_factory)

    # Logger.makeRecord sets ``extra=`` fields after the factory returns.
    make_record = logging.Logger.makeRecord
    if not getattr(make_record, "_cypher_cell_masking", False):

        def masking_make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(self, *args, **kwargs)
            _mask_extra(record)
            return record

        masking_make_record._cypher_cell_masking = True  # type: ignore[attr-defined]
        logging.Logger.makeRecord = masking_make_record  # type: ignore[method-assign]


class _MaskedTextStream:
    """A text stream whose writes are masked before they reach `inner`. A
    secret split across writes is masked whole: only a trailing partial
    match is held back, until the next write or `flush()` (which emits it
    as [REDACTED])."""

    def __init__(self, inner: TextIO) -> None:
        import codecs  # noqa: PLC0415  (kept out of `import cypher_cell`)

        self._inner = inner
        self._stream = RedactStream()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cypher_cell_masking = True

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "surrogatepass")
        out = self._decoder.decode(self._stream.feed(data))
        if out:
            self._inner.write(out)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        out = self._decoder.decode(self._stream.flush())
        if out:
            self._inner.write(out)
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _wrap_stdio() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not getattr(stream, "_cypher_cell_masking", False):
            setattr(sys, name, _MaskedTextStream(stream))


def install_log_redaction(stdio: bool = False) -> None:
    """Masks every log record of every logger before any handler sees it:
    the message (with %-style args, however built), the traceback of
    ``exc_info``/``logger.exception`` (the exception object is dropped from
    the record once its text is rendered), ``stack_info``, ``extra=`` string
    fields and ``logging.captureWarnings`` output, for handlers added before
    or after this call and loggers that do not propagate. It works through
    the LogRecord factory (and ``Logger.makeRecord`` for ``extra=``): a
    factory set later by the application without calling the one it
    replaces undoes it. Idempotent. ``stdio=True`` also masks what is written to
    ``sys.stdout`` and ``sys.stderr`` (not to their ``.buffer``)."""
    import logging  # noqa: PLC0415  (kept out of `import cypher_cell`)

    with _lock:
        if not getattr(logging.getLogRecordFactory(), "_cypher_cell_masking", False):
            _install()
        if stdio:
            _wrap_stdio()
