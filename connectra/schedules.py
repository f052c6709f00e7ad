"""Cron schedules: a 5-field cron expression in a time zone that creates a job at each tick.
Pure; the ticks are computed by croniter."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from connectra.errors import InvalidScheduleError
from connectra.jobs import DEFAULT_QUEUE, check_priority, check_queue

SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


def check_cron(expression: object) -> str:
    """A standard 5-field cron expression (minute hour day-of-month month day-of-week)."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise InvalidScheduleError(
            f"invalid cron expression {str(expression)[:60]!r}: it must have 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '*/5 * * * *'"
        )
    try:
        # A first tick must exist: '0 0 31 2 *' parses but never fires.
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise InvalidScheduleError(f"invalid cron expression {expression!r}: {exc}") from None
    return expression


def check_timezone(name: object) -> ZoneInfo:
    """An IANA time zone such as 'UTC' or 'Europe/Paris'."""
    if not isinstance(name, str) or not name:
        raise InvalidScheduleError("'timezone' must be an IANA time zone name such as 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidScheduleError(f"unknown time zone {name[:60]!r}") from None


def check_schedule_name(name: object) -> str:
    """A schedule name: the same rule as a queue name."""
    if not isinstance(name, str) or not SCHEDULE_NAME.fullmatch(name):
        raise InvalidScheduleError(
            f"invalid schedule name {str(name)[:60]!r}: 1 to 63 letters, digits, '_', '.', "
            "':' or '-', starting with a letter or a digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class Schedule:
    """Create a `job_type` job with `data` at every tick of `cron` in `timezone`.

    `queue` and `priority` default to the job type's own when None.
    """

    name: str
    cron: str
    job_type: str
    data: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    queue: str | None = None
    priority: int | None = None
    paused: bool = False

    def __post_init__(self) -> None:
        """Everything is checked when the schedule is made, never at its first tick."""
        check_schedule_name(self.name)
        check_cron(self.cron)
        check_timezone(self.timezone)
        if self.queue is not None:
            check_queue(self.queue)
        if self.priority is not None:
            check_priority(self.priority)

    def latest_tick(self, now: datetime) -> datetime:
        """The most recent tick at or before `now` (aware), in UTC."""
        local = now.astimezone(check_timezone(self.timezone))
        ticks = croniter(self.cron, local)
        if ticks.match(self.cron, local.replace(microsecond=0)) and local.second == 0:
            moment = local.replace(microsecond=0)
        else:
            moment = ticks.get_prev(datetime)
        while self._repeats(moment):
            moment = ticks.get_prev(datetime)
        return moment.astimezone(UTC)

    def next_tick(self, now: datetime) -> datetime:
        """The first tick strictly after `now` (aware), in UTC."""
        ticks = croniter(self.cron, now.astimezone(check_timezone(self.timezone)))
        moment: datetime = ticks.get_next(datetime)
        while self._repeats(moment):
            moment = ticks.get_next(datetime)
        return moment.astimezone(UTC)

    def _repeats(self, local: datetime) -> bool:
        """Whether this tick is the second pass of a wall-clock time repeated when the clocks
        go back, for a fixed-time schedule (no '*' in its minute and hour fields): as cron
        does, a daily 01:30 runs once on that day, while '*/15 * * * *' keeps real time."""
        if local.fold == 0 or any("*" in part for part in self.cron.split()[:2]):
            return False
        return local.replace(fold=0).utcoffset() != local.utcoffset()

    def due_tick(self, now: datetime, since: datetime) -> datetime | None:
        """The tick to fire now, if any: the most recent one after `since` (the last tick
        fired, or when the schedule was added). Ticks missed while no runner ran collapse
        into this one: a runner back after an outage fires once, not once per missed tick."""
        tick = self.latest_tick(now)
        return tick if tick > since else None

    def queue_or(self, default: str = DEFAULT_QUEUE) -> str:
        """The queue its jobs go to."""
        return self.queue if self.queue is not None else default
