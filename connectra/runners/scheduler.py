"""The cron scheduler of a runner process: creates the job of every due schedule tick.

Every process hosting a first_time runner runs one; there is no leader. Each tick creates
exactly one job however many schedulers race for it (`ScheduleStore.fire`), and ticks are
judged by the database's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from connectra.db.driver_errors import DATABASE_DOWN
from connectra.db.schedule_store import FireResult, ScheduleStore
from connectra.errors import ConnectraError
from connectra.jobs import NewJob
from connectra.processors.base import JobTypeRegistry, tick_job
from connectra.schedules import Schedule

log = logging.getLogger(__name__)

# The longest sleep: schedules added or resumed at run time are seen within it.
MAX_SLEEP_SECONDS = 5.0
# Woken this long after a tick, so that the tick is due by the database's clock too.
TICK_MARGIN_SECONDS = 0.005
RETRY_SECONDS = 2.0


class Scheduler:
    """Declares the registry's schedules, then fires due ticks until stopped."""

    def __init__(
        self,
        store: ScheduleStore,
        registry: JobTypeRegistry,
        max_sleep: float = MAX_SLEEP_SECONDS,
    ) -> None:
        self.store = store
        self.registry = registry
        self.max_sleep = max_sleep
        self._declared = False
        # Why each schedule was last skipped, so a problem is logged once, not every round.
        self._skipped: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Fire due ticks, then sleep until the next tick (at most `max_sleep`)."""
        while not stop.is_set():
            delay = await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def run_once(self, now: datetime | None = None) -> float:
        """One round: declare the code's schedules (until that succeeds once), fire what is
        due; return how long to sleep. A database outage is logged and retried."""
        try:
            await self._declare()
            now = now or await self.store.now()
            result = await self.store.fire_due(now, self._new_job)
        except DATABASE_DOWN as exc:
            log.warning("scheduler round failed: %s", exc, extra={"action": "schedule_failed"})
            return RETRY_SECONDS
        self._report(result)
        return self._sleep_after(result, now)

    def _new_job(self, schedule: Schedule) -> NewJob:
        """The job of a tick, with this process's job types."""
        return tick_job(self.registry, schedule)

    async def _declare(self) -> None:
        """Upsert the schedules declared in code, once per process."""
        if self._declared:
            return
        written = await self.store.declare(self.registry.schedules)
        self._declared = True
        if written:
            log.info(
                "schedules declared in code: %s",
                ", ".join(written),
                extra={"action": "schedules_declared"},
            )

    def _report(self, result: FireResult) -> None:
        """Log each job created, and each schedule skipped once per reason."""
        for stored, tick, job in result.fired:
            self._skipped.pop(stored.name, None)
            log.info(
                "schedule %s fired for %s",
                stored.name,
                tick.isoformat(),
                extra={
                    "action": "schedule_fired",
                    "schedule": stored.name,
                    "tick": tick.isoformat(),
                    "job_uuid": str(job.uuid),
                },
            )
        for name, error in result.skipped:
            self._skip(name, error)

    def _skip(self, name: str, error: ConnectraError) -> None:
        """A due schedule this process cannot fire: another process that knows its job type
        may; logged once until it fires or the reason changes."""
        reason = error.render()
        if self._skipped.get(name) == reason:
            return
        self._skipped[name] = reason
        log.warning(
            "schedule %s skipped here: %s",
            name,
            reason,
            extra={"action": "schedule_skipped", "schedule": name},
        )

    def _sleep_after(self, result: FireResult, now: datetime) -> float:
        """Until just after the earliest next tick, but at most `max_sleep`."""
        if result.next_tick_at is None:
            return self.max_sleep
        seconds = (result.next_tick_at - now).total_seconds() + TICK_MARGIN_SECONDS
        return min(self.max_sleep, max(seconds, TICK_MARGIN_SECONDS))
