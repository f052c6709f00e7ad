"""Background duties of every runner process: rescuing jobs of dead runners, and retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from functools import partial

from connectra import metrics
from connectra.db.monitor_store import MonitorStore
from connectra.db.pool import DATABASE_DOWN
from connectra.db.store import JobStore
from connectra.objectstore import ObjectStore, ObjectStoreError
from connectra.rescue import decide_rescue
from connectra.retry import RetryPolicy

log = logging.getLogger(__name__)

RESCUE_BATCH = 100
CLEANUP_BATCH = 200
# Rows of the runners table not refreshed for this long belong to runners that died.
STALE_RUNNER_ROWS = timedelta(days=1)


async def every(interval: timedelta, stop: asyncio.Event) -> bool:
    """Sleep one interval; False once `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), interval.total_seconds())
    return not stop.is_set()


class Rescuer:
    """Takes back jobs whose runner stopped heartbeating (crash, kill -9, lost network)."""

    def __init__(self, store: JobStore, policy: RetryPolicy, lease: timedelta) -> None:
        self.store = store
        self.lease = lease
        self.decide = partial(decide_rescue, policy=policy)

    async def run(self, stop: asyncio.Event) -> None:
        """Look for expired leases four times per lease until stopped."""
        while await every(self.lease / 4, stop):
            await self.rescue_once()

    async def rescue_once(self) -> int:
        """Rescue every expired job now; return how many."""
        total = 0
        while True:
            try:
                rescued = await self.store.rescue_expired(self.lease, self.decide, RESCUE_BATCH)
            except DATABASE_DOWN as exc:
                log.warning("rescue failed: %s", exc, extra={"action": "rescue_failed"})
                return total
            for job, rescue in rescued:
                log.warning(
                    "rescued job from %s: now %s",
                    job.runner_id,
                    rescue.status,
                    extra={"action": "job_rescued", "job_uuid": str(job.uuid)},
                )
                metrics.JOBS_RESCUED.labels(job.job_type, rescue.status).inc()
            total += len(rescued)
            if len(rescued) < RESCUE_BATCH:
                return total


class Cleaner:
    """Deletes finished jobs after JOB_TTL_DAYS and their result files after RESULT_TTL_DAYS."""

    def __init__(
        self,
        store: JobStore,
        objects: ObjectStore | None,
        job_ttl: timedelta,
        result_ttl: timedelta,
        default_bucket: str | None,
    ) -> None:
        self.store = store
        self.objects = objects
        self.job_ttl = job_ttl
        self.result_ttl = result_ttl
        self.default_bucket = default_bucket
        self.monitor = MonitorStore(store.pool)

    async def run(self, interval: timedelta, stop: asyncio.Event) -> None:
        """Clean up once per interval until stopped."""
        while await every(interval, stop):
            try:
                await self.clean_once()
            except DATABASE_DOWN as exc:
                log.warning("cleanup failed: %s", exc, extra={"action": "cleanup_failed"})

    async def clean_once(self) -> tuple[int, int]:
        """One pass, in small batches; return (result files deleted, jobs deleted)."""
        files = 0
        while batch := await self.store.results_expired(self.result_ttl, CLEANUP_BATCH):
            for job_id, locations in batch:
                files += await self._delete_files(locations)
                await self.store.mark_results_deleted(job_id)
            if len(batch) < CLEANUP_BATCH:
                break
        jobs = 0
        while batch := await self.store.delete_expired(self.job_ttl, CLEANUP_BATCH):
            for _, locations in batch:
                files += await self._delete_files(locations)
            jobs += len(batch)
            if len(batch) < CLEANUP_BATCH:
                break
        await self.store.delete_expired_idempotency_keys(CLEANUP_BATCH)
        await self.monitor.delete_stale_runners(STALE_RUNNER_ROWS)
        if files or jobs:
            log.info(
                "deleted %d finished jobs and %d result files",
                jobs,
                files,
                extra={"action": "cleanup"},
            )
        return files, jobs

    async def _delete_files(self, locations: list[tuple[str | None, str]]) -> int:
        """Delete result objects; a missing one is already gone."""
        if self.objects is None:
            return 0
        deleted = 0
        for bucket, key in locations:
            bucket = bucket or self.default_bucket
            if bucket is None:
                continue
            try:
                await self.objects.delete(bucket, key)
                deleted += 1
            except ObjectStoreError as exc:
                log.warning("could not delete %s/%s: %s", bucket, key, exc)
        return deleted
