"""Background duties of every runner process: rescuing jobs of dead runners, and retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from functools import partial

from connectra import metrics
from connectra.bucket_policy import BucketPolicy
from connectra.db.driver_errors import DATABASE_DOWN
from connectra.db.monitor_store import MonitorStore
from connectra.db.store import JobStore
from connectra.errors import ObjectStoreError
from connectra.jobs import Job
from connectra.objectstore import ObjectStore, PendingUpload
from connectra.processors.exporting.upload import abort_left_upload
from connectra.rescue import decide_rescue
from connectra.retry import RetryPolicy
from connectra.settings import Settings

log = logging.getLogger(__name__)

RESCUE_BATCH = 100
CLEANUP_BATCH = 200
# Rows of the runners table not refreshed for this long belong to runners that died.
STALE_RUNNER_ROWS = timedelta(days=1)
# MULTIPART_UPLOAD_TTL_HOURS's default.
_DEFAULT_UPLOAD_TTL = timedelta(hours=Settings.model_fields["multipart_upload_ttl_hours"].default)


async def every(interval: timedelta, stop: asyncio.Event) -> bool:
    """Sleep one interval; False once `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), interval.total_seconds())
    return not stop.is_set()


class Rescuer:
    """Takes back jobs whose runner stopped heartbeating (crash, kill -9, lost network), and
    aborts the multipart upload a job's checkpoint names (an export killed mid-upload)."""

    def __init__(
        self,
        store: JobStore,
        policy: RetryPolicy,
        lease: timedelta,
        objects: ObjectStore | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.decide = partial(decide_rescue, policy=policy)
        self.objects = objects

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
                await self._abort_upload(job)
            total += len(rescued)
            if len(rescued) < RESCUE_BATCH:
                return total

    async def _abort_upload(self, job: Job) -> None:
        """Abort the multipart upload the dead runner's attempt left open, if any."""
        if self.objects is None:
            return
        await abort_left_upload(
            self.objects,
            job.checkpoint,
            log,
            failed="could not abort a rescued job's upload: %s",
            aborted="aborted the upload s3://%s/%s of a rescued job",
            aborted_action="rescue_upload_aborted",
            failed_action="rescue_upload_abort_failed",
            fields={"job_uuid": str(job.uuid)},
        )


class Cleaner:
    """Deletes finished jobs after JOB_TTL_DAYS and their result files after RESULT_TTL_DAYS,
    and aborts multipart uploads left unfinished under the export prefix (`export_prefix`;
    None: none are looked for) for `upload_ttl`."""

    def __init__(
        self,
        store: JobStore,
        objects: ObjectStore | None,
        job_ttl: timedelta,
        result_ttl: timedelta,
        policy: BucketPolicy,
        *,
        export_prefix: str | None = None,
        upload_ttl: timedelta = _DEFAULT_UPLOAD_TTL,
    ) -> None:
        self.store = store
        self.objects = objects
        self.job_ttl = job_ttl
        self.result_ttl = result_ttl
        self.policy = policy
        self.export_prefix = export_prefix
        self.upload_ttl = upload_ttl
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
        await self.abort_stale_uploads()
        if files or jobs:
            log.info(
                "deleted %d finished jobs and %d result files",
                jobs,
                files,
                extra={"action": "cleanup"},
            )
        return files, jobs

    async def abort_stale_uploads(self) -> int:
        """Abort the multipart uploads under the export prefix, in every bucket jobs may use,
        begun more than `upload_ttl` ago and open in no held job; return how many."""
        objects = self.objects
        if objects is None or self.export_prefix is None:
            return 0
        folder = self.export_prefix.rstrip("/")
        prefix = f"{folder}/" if folder else ""
        cutoff = datetime.now(UTC) - self.upload_ttl
        held: set[str] | None = None  # fetched once, and only when some upload is stale
        aborted = 0
        for bucket in self._buckets():
            try:
                stale = await _stale_in(objects, bucket, prefix, cutoff)
                if not stale:
                    continue
                if held is None:
                    held = await self.store.open_upload_ids()
                aborted += await _abort_unheld(objects, bucket, stale, held)
            except ObjectStoreError as exc:
                log.warning(
                    "could not abort stale uploads in %s: %s",
                    bucket,
                    exc,
                    extra={"action": "cleanup_uploads_failed"},
                )
        return aborted

    def _buckets(self) -> list[str]:
        """Every bucket jobs may use."""
        named = {self.policy.default_bucket, *self.policy.buckets}
        return sorted(bucket for bucket in named if bucket)

    async def _delete_files(self, locations: list[tuple[str | None, str]]) -> int:
        """Delete result objects; a missing one is already gone, and one outside the allowed
        buckets and prefixes (a job from before they changed) is left alone."""
        if self.objects is None:
            return 0
        deleted = 0
        for bucket, key in locations:
            bucket = bucket or self.policy.default_bucket
            if bucket is None:
                continue
            if not self.policy.allows(bucket, key):
                log.warning(
                    "not deleting s3://%s/%s: outside the allowed buckets and prefixes",
                    bucket,
                    key,
                    extra={"action": "cleanup_not_allowed"},
                )
                continue
            try:
                await self.objects.delete(bucket, key)
                deleted += 1
            except ObjectStoreError as exc:
                log.warning("could not delete %s/%s: %s", bucket, key, exc)
        return deleted


async def _stale_in(
    objects: ObjectStore, bucket: str, prefix: str, cutoff: datetime
) -> list[PendingUpload]:
    """A bucket's uploads under `prefix` begun before `cutoff`."""
    return [
        upload
        async for upload in objects.pending_uploads(bucket, prefix)
        if upload.initiated < cutoff
    ]


async def _abort_unheld(
    objects: ObjectStore, bucket: str, stale: list[PendingUpload], held: set[str]
) -> int:
    """Abort the stale uploads no held job has open; how many."""
    aborted = 0
    for upload in stale:
        if upload.upload_id in held:
            continue
        if await objects.abort_upload(bucket, upload.key, upload.upload_id):
            aborted += 1
            log.info(
                "aborted the stale upload s3://%s/%s",
                bucket,
                upload.key,
                extra={"action": "cleanup_upload_aborted", "upload_id": upload.upload_id},
            )
    return aborted
