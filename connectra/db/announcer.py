"""Telling idle runners that new jobs exist: one NOTIFY after the creates commit.

Creates that commit while an announcement is sent share the next one; a failed one is only
logged, as runners also poll.
Why after the commit: a NOTIFY inside the creating transaction serialises all such commits.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from connectra.db.queries import JOBS_ANNOUNCE

log = logging.getLogger(__name__)

CHANNEL = "connectra_jobs"
# The payload announcing delayed jobs (new open jobs are announced as 'open').
DELAYED = "scheduled"


class Announcer:
    """Sends `NOTIFY connectra_jobs, 'open'` for new jobs, batching concurrent callers."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._lock = asyncio.Lock()
        self._started = 0  # announcements started so far
        self.sent = 0  # announcements that went out (for tests and metrics)

    async def new_jobs(self) -> None:
        """Announce jobs committed before this call; returns once an announcement went out."""
        wanted = self._started + 1  # the first announcement to start after this moment
        async with self._lock:
            if self._started >= wanted:
                return  # one started after our commit while we waited, and it is done
            self._started += 1
            try:
                await self.pool.execute(JOBS_ANNOUNCE, CHANNEL, "open")
            except Exception as exc:  # the jobs are stored: never fail their create for this
                log.warning("could not announce new jobs: %s", exc, extra={"action": "announce"})
                return
            self.sent += 1

    async def delayed_jobs(self) -> None:
        """Announce that a delayed job exists: idle first_time runners then look up when the
        earliest one falls due (they do not while they know of none). Rare: not batched."""
        try:
            await self.pool.execute(JOBS_ANNOUNCE, CHANNEL, DELAYED)
        except Exception as exc:  # the job is stored; the runners' tick looks anyway
            log.warning("could not announce a delayed job: %s", exc, extra={"action": "announce"})
