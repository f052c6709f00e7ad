"""How jobs read to a person: the `jobs list` table and the progress line of `--wait`."""

from __future__ import annotations

import io
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from connectra.job_table import Progress, age, byte_size, render_table
from connectra.job_watch import ProgressLine, exit_code, has_ended
from connectra.jobs import Job, JobStatus

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def a_job(**values: Any) -> Job:
    """A job with these fields; fields a test does not care about are None."""
    base: dict[str, Any] = {
        "id": 1,
        "uuid": UUID(int=1),
        "job_type": "insert_csv_file",
        "data": {},
        "queue": "default",
        "priority": 0,
        "status": JobStatus.PROCESSING,
        "job_response": {},
        "retry_count": 0,
        "attempts": 1,
        "checkpoint": None,
        "created_at": NOW,
    }
    return Job(**({f.name: None for f in fields(Job)} | base | values))


def an_import(processed: int, failed: int, offset: int, size: int, **values: Any) -> Job:
    """An import that has reported rows and saved a checkpoint at this byte offset."""
    checkpoint = {
        "offset": offset,
        "line": processed + failed + 1,
        "processed": processed,
        "failed": failed,
        "errors": [],
        "header": ["uuid"],
        "size": size,
        "etag": "e",
    }
    response = {"number_records_processed": processed, "number_records_failed": failed}
    return a_job(job_response=response, checkpoint=checkpoint, **values)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (5.9, "5s"), (59, "59s"), (60, "1m"), (3599, "59m"), (7200, "2h"),
     (4 * 86400 + 5, "4d"), (-3, "0s")],
)  # fmt: skip
def test_age_is_the_largest_whole_unit(seconds: float, shown: str) -> None:
    assert age(seconds) == shown


def test_byte_sizes_read_in_binary_units() -> None:
    assert [byte_size(n) for n in (512, 1536, 2 * 1024**2, 3.1 * 1024**3)] == [
        "512 B",
        "1.5 KiB",
        "2.0 MiB",
        "3.1 GiB",
    ]


def test_progress_counts_rows_ok_and_failed_or_nothing() -> None:
    assert Progress.of(an_import(1200, 3, 10, 100)).counts() == "1,200 ok / 3 failed"
    export = a_job(job_type="export_csv_file", job_response={"number_records_processed": 8000})
    assert Progress.of(export).counts() == "8,000 ok"
    assert Progress.of(a_job(job_response={"messages": "slept 1s"})).counts() == ""
    odd = a_job(job_response={"number_records_processed": "many", "number_records_failed": -1})
    assert Progress.of(odd).counts() == ""


def test_progress_knows_the_share_of_the_input_only_from_an_import_checkpoint() -> None:
    assert Progress.of(an_import(10, 0, 500, 2000)).fraction() == 0.25
    assert Progress.of(a_job(checkpoint={"cursor": "abc"})).fraction() is None
    assert Progress.of(an_import(0, 0, 0, 0)).fraction() is None


def test_the_table_has_a_header_and_one_aligned_row_per_job() -> None:
    jobs = [
        an_import(1200, 3, 10, 100, created_at=NOW - timedelta(minutes=3)),
        a_job(id=2, uuid=UUID(int=2), job_type="noop", status=JobStatus.OPEN, attempts=0,
              retry_count=2, created_at=NOW - timedelta(seconds=5)),
    ]  # fmt: skip
    header, first, second = render_table(jobs, NOW).splitlines()
    assert header.split() == ["UUID", "TYPE", "QUEUE", "STATUS", "PROGRESS", "ATTEMPTS", "AGE"]
    assert first.split("  ")[0] == str(UUID(int=1))
    assert "1,200 ok / 3 failed" in first
    assert first.endswith("1/1       3m")
    assert second.split()[1:] == ["noop", "default", "open", "-", "0/3", "5s"]
    assert header.index("STATUS") == first.index("processing") == second.index("open")


def test_the_table_cuts_long_types_and_queues_but_never_the_uuid() -> None:
    job = a_job(job_type="x" * 60, queue="q" * 63)
    row = render_table([job], NOW).splitlines()[1]
    cells = row.split()
    assert cells[0] == str(job.uuid)
    assert cells[1] == "x" * 23 + "…"
    assert cells[2] == "q" * 15 + "…"


def test_a_failed_job_with_a_retry_due_has_not_ended() -> None:
    assert not has_ended(a_job(status=JobStatus.FAILED))
    ended = {s: exit_code(a_job(status=s)) for s in JobStatus if has_ended(a_job(status=s))}
    assert ended == {JobStatus.COMPLETED: 0, JobStatus.FAILED_FINAL: 1, JobStatus.ABORTED: 1}


def test_off_a_terminal_the_progress_is_one_line_per_change() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream, live=False)
    assert line.show(a_job(status=JobStatus.OPEN, attempts=0))
    assert not line.show(a_job(status=JobStatus.OPEN, attempts=0))
    assert line.show(an_import(1200, 3, 500, 2 * 1024**2))
    assert line.show(an_import(2400, 3, 2 * 1024**2, 2 * 1024**2, status=JobStatus.COMPLETED))
    line.end()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith(f"job {UUID(int=1)} (insert_csv_file)")
    assert [text.rsplit("  ", 1)[0] for text in lines[1:]] == [
        "open",
        "processing  1,200 ok / 3 failed  0% of 2.0 MiB",
        "completed  2,400 ok / 3 failed",
    ]
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_the_line_is_rewritten_in_place_within_its_width() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream, live=True)
    line.show(an_import(1200, 3, 1024**2, 2 * 1024**2, retry_count=2))
    drawn = stream.getvalue().split("\n", 1)[1]
    assert drawn.startswith("\r| processing  1,200 ok / 3 failed  [")
    assert "] 50% of 2.0 MiB  attempt 1/3  0:00" in drawn
    assert len(drawn) == 1 + 79  # a StringIO has no terminal: 80 columns, less one
    line.show(a_job(status=JobStatus.COMPLETED, job_type="noop"))
    line.end()
    last = stream.getvalue().rsplit("\r", 1)[1]
    assert last.rstrip() == "  completed  0:00"
    assert len(last) == 80  # padded over the longer line before
    assert last.endswith("\n")


@pytest.mark.parametrize(
    ("columns", "shown"),
    [
        (120, "| processing  48,000 ok / 4 failed  [" + "#" * 12 + "-" * 18 + "] 41% of 2.1 MiB  "),
        (80, "| processing  48,000 ok / 4 failed  [" + "#" * 7 + "-" * 11 + "] 41%  "),
        (60, "| processing  48,000 ok / 4 failed  41% of 2.1 MiB  attemp…"),
    ],
)
def test_a_narrow_terminal_drops_the_size_then_the_bar(
    columns: int, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ProgressLine, "_columns", lambda self: columns)
    stream = io.StringIO()
    ProgressLine(stream, live=True).show(an_import(48000, 4, 900_000, 2_200_000, retry_count=2))
    drawn = stream.getvalue().split("\r", 1)[1]
    assert drawn.startswith(shown)
    assert len(drawn) <= columns - 1
