"""Names, keys, cron expressions and due times are checked whole: a trailing newline, which a
regular expression's `$` lets through, a cron that never fires and a due time with no UTC
value are refused wherever a job or a schedule is made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from connectra.api.payloads import idempotency_key
from connectra.errors import (
    InvalidIdempotencyKeyError,
    InvalidQueueError,
    InvalidRunAtError,
    InvalidScheduleError,
)
from connectra.jobs import NewJob, check_queue, parse_run_at
from connectra.schedules import Schedule, check_cron, check_schedule_name


def test_a_queue_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidQueueError):
        check_queue("default\n")
    with pytest.raises(InvalidQueueError):
        NewJob(job_type="noop", data={}, queue="default\n")


def test_a_schedule_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidScheduleError):
        check_schedule_name("nap\n")


def test_an_idempotency_key_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidIdempotencyKeyError):
        idempotency_key("key\n")
    assert idempotency_key("key") == "key"


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *"])
def test_a_cron_expression_that_never_fires_is_refused(cron: str) -> None:
    with pytest.raises(InvalidScheduleError, match="failed to find next date"):
        check_cron(cron)
    with pytest.raises(InvalidScheduleError):
        Schedule(name="never", cron=cron, job_type="noop")


def test_a_cron_expression_that_fires_once_in_four_years_is_taken() -> None:
    assert check_cron("0 0 29 2 *") == "0 0 29 2 *"


@pytest.mark.parametrize(
    "text",
    ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "0001-01-01", "1969-12-31"],
)
def test_a_run_at_outside_1970_to_9999_is_refused(text: str) -> None:
    with pytest.raises(InvalidRunAtError, match="1970"):
        parse_run_at(text)


def test_a_new_job_due_outside_the_range_is_refused() -> None:
    with pytest.raises(InvalidRunAtError):
        NewJob(job_type="noop", data={}, run_at=datetime(1, 1, 1, tzinfo=UTC))
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=12)))
    with pytest.raises(InvalidRunAtError):
        NewJob(job_type="noop", data={}, run_at=late)


def test_a_run_at_keeps_its_offset() -> None:
    moment = parse_run_at("2026-12-03T19:00:00+01:00")
    assert moment.utcoffset() == timedelta(hours=1)
    assert moment == datetime(2026, 12, 3, 18, tzinfo=UTC)
