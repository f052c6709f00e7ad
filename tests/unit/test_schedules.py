"""Cron schedules: ticks in a time zone, the missed-tick rule, and invalid definitions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from connectra.errors import InvalidPriorityError, InvalidQueueError, InvalidScheduleError
from connectra.schedules import Schedule


def at(text: str) -> datetime:
    """A UTC moment from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def every(cron: str, timezone: str = "UTC") -> Schedule:
    return Schedule("s", cron, "noop", timezone=timezone)


def test_latest_tick_is_at_or_before_now_and_next_tick_strictly_after() -> None:
    schedule = every("*/5 * * * *")
    assert schedule.latest_tick(at("2026-12-03 10:07:30")) == at("2026-12-03 10:05")
    assert schedule.next_tick(at("2026-12-03 10:07:30")) == at("2026-12-03 10:10")
    assert schedule.latest_tick(at("2026-12-03 10:05")) == at("2026-12-03 10:05")
    assert schedule.next_tick(at("2026-12-03 10:05")) == at("2026-12-03 10:10")
    assert schedule.latest_tick(at("2026-12-03 10:05:00.5")) == at("2026-12-03 10:05")


def test_ticks_follow_the_schedules_time_zone() -> None:
    paris = every("0 9 * * *", "Europe/Paris")
    assert paris.next_tick(at("2026-12-03 00:00")) == at("2026-12-03 08:00")  # CET, UTC+1
    assert paris.next_tick(at("2026-07-03 00:00")) == at("2026-07-03 07:00")  # CEST, UTC+2


def test_a_new_schedule_fires_first_at_its_next_tick_not_the_one_before_it_was_added() -> None:
    schedule = every("*/5 * * * *")
    added = at("2026-12-03 10:02:30")
    assert schedule.due_tick(at("2026-12-03 10:04:59"), since=added) is None
    assert schedule.due_tick(at("2026-12-03 10:05:00.2"), since=added) == at("2026-12-03 10:05")


def test_missed_ticks_collapse_into_the_latest_one() -> None:
    schedule = every("*/5 * * * *")
    last = at("2026-12-03 10:00")
    assert schedule.due_tick(at("2026-12-03 10:17"), since=last) == at("2026-12-03 10:15")
    assert schedule.due_tick(at("2026-12-03 10:17"), since=at("2026-12-03 10:15")) is None


def test_a_tick_skipped_by_the_spring_forward_gap_fires_just_after_it() -> None:
    # Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    daily = every("30 2 * * *", "Europe/Paris")
    assert daily.next_tick(at("2026-03-28 12:00")) == at("2026-03-29 01:00")  # 03:00 CEST
    assert daily.next_tick(at("2026-03-29 01:00")) == at("2026-03-30 00:30")  # 02:30 CEST
    half_past = every("30 * * * *", "Europe/Paris")
    ticks = [half_past.next_tick(at("2026-03-28 23:00"))]
    ticks.append(half_past.next_tick(ticks[-1]))
    ticks.append(half_past.next_tick(ticks[-1]))
    assert ticks == [at("2026-03-28 23:30"), at("2026-03-29 00:30"), at("2026-03-29 01:30")]


def test_a_fixed_time_in_the_repeated_fall_back_hour_fires_once() -> None:
    # New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
    daily = every("30 1 * * *", "America/New_York")
    first = at("2026-11-01 05:30")  # 01:30 EDT
    assert daily.next_tick(at("2026-11-01 04:00")) == first
    assert daily.next_tick(first) == at("2026-11-02 06:30")
    assert daily.latest_tick(at("2026-11-01 06:45")) == first  # not 01:30 EST
    assert daily.due_tick(at("2026-11-01 06:45"), since=first) is None


def test_a_wildcard_schedule_keeps_real_time_through_the_repeated_hour() -> None:
    hourly = every("0 * * * *", "America/New_York")
    start = at("2026-11-01 04:30")
    ticks = [hourly.next_tick(start)]
    for _ in range(3):
        ticks.append(hourly.next_tick(ticks[-1]))
    assert ticks == [start + timedelta(minutes=30 + 60 * n) for n in range(4)]


@pytest.mark.parametrize(
    ("cron", "timezone", "message"),
    [
        ("*/5 * * * * *", "UTC", "it must have 5 fields"),
        ("every minute", "UTC", "it must have 5 fields"),
        ("61 * * * *", "UTC", "invalid cron expression '61 * * * *': "),
        ("* * 32 * *", "UTC", "invalid cron expression"),
        ("", "UTC", "it must have 5 fields"),
        ("* * * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("* * * * *", "", "IANA time zone"),
    ],
)
def test_an_invalid_expression_or_time_zone_is_a_clear_error(
    cron: str, timezone: str, message: str
) -> None:
    with pytest.raises(InvalidScheduleError, match=re.escape(message)) as caught:
        Schedule("s", cron, "noop", timezone=timezone)
    assert caught.value.render().startswith("ERR_INVALID_SCHEDULE: ")


def test_names_queues_and_priorities_are_checked_when_the_schedule_is_made() -> None:
    with pytest.raises(InvalidScheduleError, match="invalid schedule name"):
        Schedule("no spaces", "* * * * *", "noop")
    with pytest.raises(InvalidQueueError):
        Schedule("s", "* * * * *", "noop", queue="bad queue")
    with pytest.raises(InvalidPriorityError):
        Schedule("s", "* * * * *", "noop", priority=101)
