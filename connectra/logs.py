"""Structured JSON logs: one object per line, with the stable fields the runners add."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# One encoder for every line (`json.dumps(..., default=str)` builds a new one per call).
_ENCODER = json.JSONEncoder(default=str)


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
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)

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


def configure_logging(level: str) -> None:
    """Send JSON logs to stderr at the given level."""
    # The JSON lines carry no caller, thread or process fields, so skip collecting them
    # (the logging HOWTO's "Optimization"): a busy runner logs two lines per job.
    logging._srcfile = None  # a documented knob without a public name
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
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
