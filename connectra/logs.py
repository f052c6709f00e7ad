"""Structured JSON logs: one object per line, with the stable fields the runners add."""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
from collections.abc import MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# The X-Request-ID being handled: an API request, or an attempt of a job created by one.
# Every line logged while it is set carries it as `request_id`.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# Lines are encoded by orjson: a runner's line took about 31,000 instructions in the standard
# library's encoder and 4,800 in orjson (bench/bench_logs.py). The standard one (made once:
# `json.dumps(..., default=str)` builds a new one per call) takes what orjson refuses, such as
# an integer beyond 64 bits.
_ENCODER = json.JSONEncoder(default=str)
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def encode_line(entry: dict[str, Any]) -> str:
    """One log entry as a line of JSON; values JSON has no type for are written as text."""
    try:
        return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return _ENCODER.encode(entry)


_LEVELS = {level: logging.getLevelName(level).lower() for level in (10, 20, 30, 40, 50)}
# Set on a record after it was made (by a formatter that ran before ours): not `extra=` fields.
_ADDED_LATER = frozenset({"message", "asctime"})


def _extra_fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The record's `extra=` fields, in the order given.

    A record holds its standard attributes first and its `extra=` fields after them (set by
    `Logger.makeRecord`), so the scan runs from the end and stops at the first standard one:
    a few steps instead of one per attribute (a busy runner writes two lines per job).
    """
    fields = []
    for key in reversed(record.__dict__):
        if key in _STANDARD:
            if key in _ADDED_LATER:
                continue
            break
        fields.append((key, record.__dict__[key]))
    fields.reverse()
    return fields


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (a busy runner writes two per job, so it is lean)."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        """Time, level, logger, message, then the structured fields."""
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": _LEVELS.get(record.levelno) or record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra_fields(record))
        request_id = REQUEST_ID.get()
        if request_id is not None and "request_id" not in entry:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return encode_line(entry)

    def _timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds, e.g. 2026-11-23T14:30:04.479+00:00."""
        fraction, whole = math.modf(created)  # rounded as datetime.fromtimestamp does
        second, micros = int(whole), round(fraction * 1_000_000)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:  # most lines share their second with the one before
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{micros // 1000:03d}+00:00"


class BufferedLineHandler(logging.Handler):
    """Writes formatted lines from a thread of its own, many per write.

    A busy runner logs two lines per job. Written one `write` and `flush` at a time from the
    event loop, they cost it about a fifth of its CPU, and a slow reader of the stream (a full
    pipe) would stall the loop itself. Here `emit` only formats the line and appends it to a
    buffer; the writer thread writes what gathered every `delay` seconds, and at once after a
    warning or worse, so problems show without delay. `flush()` (also called by
    `logging.shutdown` at exit) writes everything waiting. Lines keep their order. Past `limit`
    characters waiting, `emit` waits for the writer: memory stays bounded and a stream that
    cannot keep up slows the logging code down, as a plain StreamHandler would.
    """

    def __init__(self, stream: TextIO, *, delay: float = 0.05, limit: int = 1 << 20) -> None:
        super().__init__()
        self.stream = stream
        self.delay = delay
        self.limit = limit
        self._lines: list[str] = []
        self._size = 0
        self._urgent = False
        self._closed = False
        self._buffer = threading.Condition()
        self._write_lock = threading.Lock()  # one batch written at a time, in order
        self._writer = threading.Thread(target=self._write_batches, name="log-writer", daemon=True)
        self._writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit without the handler's own lock: `emit` is safe from any thread (it
        formats, then queues the line under the buffer's lock)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record and queue its line."""
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        urgent = record.levelno >= logging.WARNING
        with self._buffer:
            while self._size >= self.limit and not self._closed:
                self._buffer.wait()
            first = not self._lines
            self._lines.append(line)
            self._size += len(line)
            if urgent:
                self._urgent = True
            if first or urgent:  # wake the writer only when it has something new to do
                self._buffer.notify_all()

    def flush(self) -> None:
        """Write every line waiting, now."""
        with self._write_lock:
            with self._buffer:
                lines, self._lines, self._size, self._urgent = self._lines, [], 0, False
                self._buffer.notify_all()  # emitters waiting on `limit` may go on
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # the stream is gone (closed pipe): nowhere left to log to

    def close(self) -> None:
        """Write what is waiting and stop the writer thread."""
        with self._buffer:
            self._closed = True
            self._buffer.notify_all()
        self._writer.join(timeout=5)
        self.flush()
        super().close()

    def _write_batches(self) -> None:
        """The writer thread: wait for a first line, let more gather, write them all."""
        while True:
            with self._buffer:
                while not self._lines and not self._closed:
                    self._buffer.wait()
                if self._closed:
                    return  # close() writes the rest
                if not self._urgent:
                    self._buffer.wait_for(lambda: self._urgent or self._closed, self.delay)
            self.flush()


def configure_logging(level: str) -> None:
    """Send JSON logs to stderr at the given level, written in batches (BufferedLineHandler)."""
    # The JSON lines carry no caller, thread or process fields, so skip collecting them
    # (the logging HOWTO's "Optimization"): a busy runner logs two lines per job.
    logging._srcfile = None  # a documented knob without a public name
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BufferedLineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "botocore", "aiobotocore", "elastic_transport", "pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger with fixed fields that still accepts per-call `extra=` fields."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the bound fields under the call's own."""
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
