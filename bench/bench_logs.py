"""The cost of one runner log line's JSON encoding: orjson against the standard library, same run.

    python bench/bench_logs.py [--lines 20000] [--repeat 9]

A busy runner writes two JSON lines per job (`job started`, `job completed`). This times
encoding such a line (`connectra.logs.encode_line`, orjson) against the standard library's
encoder on the same entry, and a whole `BoundLogger.info` line (record, format, queue) with
each encoder; best of `--repeat` rounds, printed as ratios (below 1: orjson is cheaper).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import timeit
from typing import Any

from connectra import logs

ENTRY: dict[str, Any] = {
    "ts": "2026-12-03T14:07:12.123+00:00",
    "level": "info",
    "logger": "connectra.runners.execution",
    "message": "job started",
    "runner_id": "first_time-3f9a1c0b",
    "job_uuid": "3f9a1c0b-7d2e-4b1a-9c3e-1234567890ab",
    "attempt": 1,
    "action": "job_start",
}


def best(func: Any, lines: int, repeat: int) -> float:
    """Microseconds per call, best of `repeat` rounds."""
    return min(timeit.repeat(func, number=lines, repeat=repeat)) / lines * 1e6


def whole_line(lines: int, repeat: int) -> float:
    """Microseconds per `BoundLogger.info` line through the product's handler and formatter."""
    handler = logs.BufferedLineHandler(io.StringIO())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    log = logs.BoundLogger(
        logging.getLogger("connectra.runners.execution"),
        {"runner_id": ENTRY["runner_id"], "job_uuid": ENTRY["job_uuid"], "attempt": 1},
    )
    try:
        return best(lambda: log.info("job started", extra={"action": "job_start"}), lines, repeat)
    finally:
        handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    stdlib = json.JSONEncoder(default=str)
    ours = best(lambda: logs.encode_line(ENTRY), args.lines, args.repeat)
    theirs = best(lambda: stdlib.encode(ENTRY), args.lines, args.repeat)
    line_ours = whole_line(args.lines, args.repeat)
    original = logs.encode_line
    logs.encode_line = stdlib.encode  # type: ignore[assignment]
    try:
        line_theirs = whole_line(args.lines, args.repeat)
    finally:
        logs.encode_line = original  # type: ignore[assignment]
    print(f"{'figure':32} {'orjson':>10} {'stdlib':>10}  ratio")
    print(f"{'encode one entry (us)':32} {ours:10.2f} {theirs:10.2f}  {ours / theirs:.2f}x")
    ratio = line_ours / line_theirs
    print(f"{'one whole log line (us)':32} {line_ours:10.2f} {line_theirs:10.2f}  {ratio:.2f}x")


if __name__ == "__main__":
    main()
