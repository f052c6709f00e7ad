"""The schedule store: every read and write of the schedules table, and the firing of ticks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from connectra.db import queries as q
from connectra.db.announcer import CHANNEL
from connectra.db.store import job_from_row
from connectra.errors import ConnectraError, ScheduleExistsError, ScheduleNotFoundError
from connectra.jobs import Job, NewJob, iso_utc
from connectra.schedules import Schedule

# Turns a schedule into the job of its tick (validated by its job type); raises a
# ConnectraError when this process cannot (an unknown job type, data the type refuses).
JobBuilder = Callable[[Schedule], NewJob]


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule as the table holds it: its definition, where it came from, its last tick."""

    schedule: Schedule
    source: str
    last_tick_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        """The schedule's name."""
        return self.schedule.name

    def due_tick(self, now: datetime) -> datetime | None:
        """The tick to fire at `now`, if any: the latest one after the last tick fired (or
        after the schedule was added); missed ticks collapse into it."""
        return self.schedule.due_tick(now, since=self.last_tick_at or self.created_at)

    def next_tick(self, now: datetime) -> datetime | None:
        """The next tick after `now`; None while paused."""
        return None if self.schedule.paused else self.schedule.next_tick(now)


class Fired(NamedTuple):
    """A job created for a schedule's tick."""

    stored: StoredSchedule
    tick: datetime
    job: Job


@dataclass(slots=True)
class FireResult:
    """What one `fire_due` call did."""

    fired: list[Fired] = field(default_factory=list)
    # Due schedules this process could not fire, with why (another process may).
    skipped: list[tuple[str, ConnectraError]] = field(default_factory=list)
    # The earliest next tick of the active schedules; None when there are none.
    next_tick_at: datetime | None = None


def schedule_from_row(row: Mapping[str, Any]) -> StoredSchedule:
    """Turn a schedules row into a StoredSchedule (the definition is checked again)."""
    return StoredSchedule(
        schedule=Schedule(
            name=row["name"],
            cron=row["cron"],
            job_type=row["job_type"],
            data=row["data"],
            timezone=row["timezone"],
            queue=row["queue"],
            priority=row["priority"],
            paused=row["paused"],
        ),
        source=row["source"],
        last_tick_at=row["last_tick_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def schedule_to_json(stored: StoredSchedule, now: datetime) -> dict[str, Any]:
    """The public shape of a schedule, JSON-ready; `next_tick_at` is as of `now`."""
    schedule = stored.schedule
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "job_type": schedule.job_type,
        "data": schedule.data,
        "queue": schedule.queue,
        "priority": schedule.priority,
        "paused": schedule.paused,
        "source": stored.source,
        "last_tick_at": iso_utc(stored.last_tick_at),
        "next_tick_at": iso_utc(stored.next_tick(now)),
        "created_at": iso_utc(stored.created_at),
        "updated_at": iso_utc(stored.updated_at),
    }


class ScheduleStore:
    """Lists and changes schedules, and creates the job of each due tick exactly once."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def now(self) -> datetime:
        """The database's clock, by which every runner judges ticks."""
        moment: datetime = await self.pool.fetchval(q.DATABASE_NOW)
        return moment

    async def all(self) -> list[StoredSchedule]:
        """Every schedule, by name."""
        return [schedule_from_row(row) for row in await self.pool.fetch(q.SCHEDULE_LIST)]

    async def get(self, name: str) -> StoredSchedule:
        """The schedule with this name."""
        return schedule_from_row(_found(await self.pool.fetchrow(q.SCHEDULE_GET, name), name))

    async def add(self, schedule: Schedule) -> StoredSchedule:
        """Add a schedule at run time (source 'api'); a name that is taken is refused."""
        row = await self.pool.fetchrow(
            q.SCHEDULE_INSERT,
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.job_type,
            schedule.data,
            schedule.queue,
            schedule.priority,
        )
        if row is None:
            raise ScheduleExistsError(f"a schedule named {schedule.name!r} exists already")
        return schedule_from_row(row)

    async def declare(self, schedules: Sequence[Schedule]) -> list[str]:
        """Upsert the schedules declared in code (source 'code'): their definition is
        written, whether they are paused and their last tick are kept. Returns the names
        written (new or changed)."""
        if not schedules:
            return []
        ordered = sorted(schedules, key=lambda schedule: schedule.name)
        rows = await self.pool.fetch(
            q.SCHEDULE_UPSERT_FROM_CODE,
            [s.name for s in ordered],
            [s.cron for s in ordered],
            [s.timezone for s in ordered],
            [s.job_type for s in ordered],
            [s.data for s in ordered],
            [s.queue for s in ordered],
            [s.priority for s in ordered],
        )
        return [row["name"] for row in rows]

    async def remove(self, name: str) -> StoredSchedule:
        """Delete a schedule; the jobs it created stay."""
        return schedule_from_row(_found(await self.pool.fetchrow(q.SCHEDULE_DELETE, name), name))

    async def pause(self, name: str) -> StoredSchedule:
        """Stop a schedule from firing until it is resumed."""
        return schedule_from_row(_found(await self.pool.fetchrow(q.SCHEDULE_PAUSE, name), name))

    async def resume(self, name: str) -> StoredSchedule:
        """Let a paused schedule fire again, from its next tick on: ticks that passed while
        it was paused are passed over, not fired. Resuming an active schedule changes
        nothing."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = _found(await conn.fetchrow(q.SCHEDULE_LOCK, name), name)
            stored = schedule_from_row(row)
            passed = stored.due_tick(row["db_now"]) if stored.schedule.paused else None
            row = await conn.fetchrow(q.SCHEDULE_RESUME, name, passed)
        return schedule_from_row(row)

    async def fire_due(self, now: datetime, build: JobBuilder) -> FireResult:
        """Create the job of the due tick of every active schedule, as of `now`.

        Any number of processes may call this at once: each tick creates exactly one job.
        """
        result = FireResult()
        for row in await self.pool.fetch(q.SCHEDULE_LIST_ACTIVE):
            try:
                stored = schedule_from_row(row)
                fired = await self._fire_if_due(stored, now, build)
            except ConnectraError as exc:
                result.skipped.append((row["name"], exc))
                continue
            if fired is not None:
                result.fired.append(fired)
            result.next_tick_at = _earliest(result.next_tick_at, stored.next_tick(now))
        return result

    async def _fire_if_due(
        self, stored: StoredSchedule, now: datetime, build: JobBuilder
    ) -> Fired | None:
        """Fire the schedule's due tick, if it has one and nobody fired it first."""
        tick = stored.due_tick(now)
        if tick is None:
            return None
        job = await self.fire(stored, tick, build(stored.schedule))
        return None if job is None else Fired(stored, tick, job)

    async def fire(self, stored: StoredSchedule, tick: datetime, new: NewJob) -> Job | None:
        """Create the job of one tick, in one transaction with the move of `last_tick_at`;
        None when another process fired this tick (or a later one) first, or the schedule
        was paused or removed meanwhile."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(q.SCHEDULE_CLAIM_TICK, stored.name, tick) is None:
                return None
            row = await conn.fetchrow(
                q.JOB_INSERT_FOR_TICK,
                new.job_type,
                new.data,
                new.retry_count,
                new.retry_interval,
                new.queue,
                new.priority,
                stored.name,
                tick,
            )
            if row is None:
                return None
            await conn.execute(q.JOBS_ANNOUNCE, CHANNEL, "open")
        return job_from_row(row)


def _earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    """The earlier of two optional moments."""
    if first is None or second is None:
        return first or second
    return min(first, second)


def _found(row: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    """A row that must exist."""
    if row is None:
        raise _not_found(name)
    return row


def _not_found(name: str) -> ScheduleNotFoundError:
    """The error for an unknown schedule name."""
    return ScheduleNotFoundError(f"no schedule is named {name[:70]!r}")
