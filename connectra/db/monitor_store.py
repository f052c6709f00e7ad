"""What the health endpoints and `/metrics` read and write: runner presence rows, and job
counts that stay cheap with millions of finished jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from connectra.db import queries as q
from connectra.jobs import JobStatus

FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED_FINAL, JobStatus.ABORTED)


@dataclass(frozen=True, slots=True)
class RunnerPresence:
    """Who a runner is, as its row in the runners table says."""

    runner_id: str
    kind: str
    queues: tuple[str, ...] | None
    host: str
    pid: int
    heartbeat_interval: timedelta


@dataclass(frozen=True, slots=True)
class LiveRunners:
    """Runners by kind: how many are live, and how long ago any was last seen."""

    by_kind: dict[str, int]
    last_seen_seconds: float | None

    @property
    def live(self) -> int:
        """Live runners of every kind."""
        return sum(self.by_kind.values())


@dataclass(frozen=True, slots=True)
class JobCounts:
    """Jobs waiting or running by (status, queue), counted; finished ones by status,
    estimated."""

    unfinished: dict[tuple[str, str], int]
    finished_estimate: dict[str, int]


class MonitorStore:
    """Reads and writes of the runners table, and the job counts of `/metrics`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def runner_seen(self, runner: RunnerPresence) -> None:
        """Write the runner's row, or refresh its `last_seen_at`."""
        await self.pool.execute(
            q.RUNNER_UPSERT,
            runner.runner_id,
            runner.kind,
            None if runner.queues is None else list(runner.queues),
            runner.host,
            runner.pid,
            runner.heartbeat_interval.total_seconds(),
        )

    async def runner_gone(self, runner_id: str) -> None:
        """Delete a stopping runner's row."""
        await self.pool.execute(q.RUNNER_DELETE, runner_id)

    async def delete_stale_runners(self, older_than: timedelta) -> None:
        """Delete the rows of runners not seen for this long."""
        await self.pool.execute(q.RUNNER_DELETE_STALE, older_than.total_seconds())

    async def live_runners(self) -> LiveRunners:
        """Live runners by kind, and how long ago any runner was last seen."""
        rows = await self.pool.fetch(q.RUNNER_LIVE_BY_KIND)
        seen = [row["last_seen_seconds"] for row in rows]
        return LiveRunners(
            by_kind={row["kind"]: row["live"] for row in rows},
            last_seen_seconds=min(seen) if seen else None,
        )

    async def job_counts(self) -> JobCounts:
        """Jobs by status and queue: exact for waiting and running states, estimated for
        finished ones (see `queries.py`)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.JOB_COUNTS_PLAN)
            rows = await conn.fetch(q.JOB_COUNT_UNFINISHED_BY_QUEUE)
            estimates = await conn.fetch(q.JOB_ESTIMATE_FINISHED, _values(FINISHED))
        return JobCounts(
            unfinished={(row["status"], row["queue"]): row["jobs"] for row in rows},
            finished_estimate={row["status"]: row["jobs"] for row in estimates},
        )


def _values(statuses: Sequence[JobStatus]) -> list[str]:
    """Statuses as the text the column holds."""
    return [str(status) for status in statuses]
