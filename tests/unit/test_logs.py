"""The JSON log lines: one object per line, UTC timestamps, the structured fields kept."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from connectra.logs import BoundLogger, BufferedLineHandler, JsonFormatter


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


class SlowStream(io.StringIO):
    """A stream whose writes wait until `open` is set, counting them."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.open.set()
        self.writes = 0

    def write(self, text: str) -> int:
        self.open.wait(10)
        self.writes += 1
        return super().write(text)


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(f"connectra.test_logs.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_buffered_lines_are_written_in_order_in_few_writes_and_all_by_close() -> None:
    stream = SlowStream()
    handler = BufferedLineHandler(stream, delay=0.2)
    logger = _logger(handler, "order")
    for i in range(1000):
        logger.info("line %d", i)
    handler.close()
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(1000)]
    assert stream.writes <= 3  # one per gathered batch, not one per line


def test_a_warning_is_written_at_once_with_the_lines_before_it() -> None:
    stream = SlowStream()
    handler = BufferedLineHandler(stream, delay=30)
    logger = _logger(handler, "urgent")
    try:
        logger.info("before")
        time.sleep(0.05)
        assert stream.getvalue() == ""  # info waits for its batch
        logger.warning("trouble")
        deadline = time.monotonic() + 5
        while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue() == "before\ntrouble\n"
    finally:
        handler.close()


def test_a_stream_that_cannot_keep_up_holds_the_logging_code_back_instead_of_growing() -> None:
    stream = SlowStream()
    stream.open.clear()  # the reader stopped reading
    handler = BufferedLineHandler(stream, delay=0, limit=100)
    logger = _logger(handler, "bounded")
    done = threading.Event()

    def log_a_lot() -> None:
        for i in range(100):
            logger.info("%020d", i)
        done.set()

    thread = threading.Thread(target=log_a_lot)
    thread.start()
    assert not done.wait(0.3)  # blocked: at most `limit` characters wait in memory
    stream.open.set()
    assert done.wait(5)
    thread.join()
    handler.close()
    assert len(stream.getvalue().splitlines()) == 100
