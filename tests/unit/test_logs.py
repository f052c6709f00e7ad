"""The JSON log lines: one object per line, UTC timestamps, the structured fields kept."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from connectra.logs import BoundLogger, JsonFormatter


@pytest.mark.parametrize(
    "created",
    [
        1763908204.0,
        1763908204.479,
        1763908204.9994999,
        1763908204.9995,
        1763908204.99999951,  # rounds up into the next second
        1763908205.001,
        0.0,
    ],
)
def test_timestamps_are_utc_with_milliseconds_as_datetime_writes_them(created: float) -> None:
    formatter = JsonFormatter()
    formatter.format(logging.makeLogRecord({"created": created - 7, "msg": "warm"}))
    line = formatter.format(logging.makeLogRecord({"created": created, "msg": "m"}))
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert json.loads(line)["ts"] == expected


def test_a_line_carries_level_logger_message_and_bound_and_call_fields() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("connectra.test_logs")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    try:
        bound = BoundLogger(logger, {"job_uuid": "u-1", "attempt": 2})
        bound.warning("job %s failed", "u-1", extra={"action": "job_fail", "attempt": 3})
    finally:
        logger.handlers.clear()
    entry = json.loads(JsonFormatter().format(records[0]))
    assert entry["level"] == "warning"
    assert entry["logger"] == "connectra.test_logs"
    assert entry["message"] == "job u-1 failed"
    assert (entry["job_uuid"], entry["action"], entry["attempt"]) == ("u-1", "job_fail", 3)
    assert not {"args", "levelno", "msg"} & set(entry)  # record internals stay out
