"""The job store: every read and write of the jobs table goes through here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

from connectra.db import queries as q
from connectra.db.announcer import CHANNEL, DELAYED, Announcer
from connectra.errors import (
    IdempotencyKeyReusedError,
    JobFinishedError,
    JobLostError,
    JobNotFoundError,
    JobNotRetryableError,
)
from connectra.jobs import (
    FIRST_TIME,
    Job,
    JobStatus,
    NewJob,
    RunnerKind,
    check_transition,
    result_files,
)
from connectra.rescue import Rescue


class JobState(NamedTuple):
    """A job's status, attempt count and holder, read on their own."""

    status: JobStatus
    attempts: int
    runner_id: str | None


def job_from_row(row: Mapping[str, Any]) -> Job:
    """Turn a jobs row into a Job."""
    return Job(
        id=row["id"],
        uuid=row["uuid"],
        job_type=row["job_type"],
        data=row["data"],
        queue=row["queue"],
        priority=row["priority"],
        status=JobStatus(row["status"]),
        job_response=row["job_response"],
        retry_count=row["retry_count"],
        retry_interval=row["retry_interval"],
        run_after=row["run_after"],
        run_at=row["run_at"],
        request_id=row["request_id"],
        attempts=row["attempts"],
        runner_id=row["runner_id"],
        heartbeat_at=row["heartbeat_at"],
        cancel_requested_at=row["cancel_requested_at"],
        checkpoint=row["checkpoint"],
        rescue_count=row["rescue_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        schedule_name=row["schedule_name"],
        created_by=row["created_by"],
    )


def _decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row read on a caller's own connection, whose jsonb may come back as text."""
    fields = dict(row)
    for name in ("data", "job_response", "checkpoint"):
        if isinstance(fields[name], str):
            fields[name] = json.loads(fields[name])
    return fields


def _insert_args(jobs: Sequence[NewJob]) -> tuple[list[Any], ...]:
    """The column arrays of `JOB_INSERT` for these jobs."""
    return (
        [job.job_type for job in jobs],
        [json.dumps(job.data) for job in jobs],
        [job.retry_count for job in jobs],
        [job.retry_interval for job in jobs],
        [job.queue for job in jobs],
        [job.priority for job in jobs],
        [job.run_at for job in jobs],
        [job.delay_seconds for job in jobs],
        [job.request_id for job in jobs],
        [job.created_by for job in jobs],
    )


async def insert_jobs(conn: asyncpg.Connection | asyncpg.Pool, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert jobs in one statement on this connection and announce them to the runners.

    The announcement is a NOTIFY in the same transaction, which PostgreSQL delivers only when
    it commits: inside a caller's transaction, the jobs exist and are announced only if that
    transaction commits. Outside one (or given a pool), the insert and the NOTIFY commit
    together.
    """
    if not jobs:
        return []
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await insert_jobs(acquired, jobs)
    async with conn.transaction():
        rows = await conn.fetch(q.JOB_INSERT, *_insert_args(jobs))
        created = sorted((job_from_row(_decoded(row)) for row in rows), key=lambda job: job.id)
        for payload in sorted({_announced_as(job) for job in created}):
            await conn.execute(q.JOBS_ANNOUNCE, CHANNEL, payload)
    return created


def _announced_as(job: Job) -> str:
    """The notification a new job is announced with: 'open', or 'scheduled' when delayed."""
    return DELAYED if job.status is JobStatus.SCHEDULED else "open"


class JobStore:
    """Creates, lists and moves jobs; each move is checked against the state machine."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.announcer = Announcer(pool)

    async def create(self, new: NewJob) -> Job:
        """Insert a new job (open, or scheduled when it is due later) and wake idle runners."""
        job = job_from_row(await self.pool.fetchrow(q.JOB_INSERT, *_insert_args([new])))
        await self._announce([job])
        return job

    async def _announce(self, jobs: Sequence[Job]) -> None:
        """Tell the runners of new jobs: open ones (batched), delayed ones (rare)."""
        if any(job.status is JobStatus.OPEN for job in jobs):
            await self.announcer.new_jobs()
        if any(job.status is JobStatus.SCHEDULED for job in jobs):
            await self.announcer.delayed_jobs()

    async def create_many(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert many jobs in one statement and wake idle runners."""
        if not jobs:
            return []
        rows = await self.pool.fetch(q.JOB_INSERT, *_insert_args(jobs))
        created = sorted((job_from_row(row) for row in rows), key=lambda job: job.id)
        await self._announce(created)
        return created

    async def create_once(
        self, key: str, fingerprint: str, ttl: timedelta, new: NewJob
    ) -> tuple[Job, bool]:
        """Create a job under an idempotency key; a repeat returns the first job.

        Returns the job and whether it was created now. The key is claimed by a unique
        index, never by check-then-insert: of two concurrent requests one inserts and the
        other waits for it, rolls back its own job, and reads the winner's.
        """
        for _ in range(3):
            try:
                job, created = await self._create_once(key, fingerprint, ttl, new)
            except _LostKeyRace:
                continue  # our job was rolled back; the next round reads the winner's
            if created:
                await self._announce([job])
            return job, created
        raise IdempotencyKeyReusedError("this Idempotency-Key is being used concurrently")

    async def _create_once(
        self, key: str, fingerprint: str, ttl: timedelta, new: NewJob
    ) -> tuple[Job, bool]:
        """One transaction of `create_once`."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.IDEMPOTENCY_KEY_DROP_EXPIRED, key)
            existing = await conn.fetchrow(q.IDEMPOTENCY_KEY_GET, key)
            if existing is not None:
                return _replayed(existing, fingerprint, key), False
            row = await conn.fetchrow(q.JOB_INSERT, *_insert_args([new]))
            claimed = await conn.fetchval(
                q.IDEMPOTENCY_KEY_INSERT, key, fingerprint, row["id"], ttl.total_seconds()
            )
            if claimed is None:
                raise _LostKeyRace
            return job_from_row(row), True

    async def get(self, uuid: UUID, owner: str | None = None) -> Job:
        """The job with this uuid; with `owner`, only if that API key created it (another
        key's job is not found, so that its existence is not revealed)."""
        if owner is None:
            row = await self.pool.fetchrow(q.JOB_GET_BY_UUID, uuid)
        else:
            row = await self.pool.fetchrow(q.JOB_GET_BY_UUID_OWNED, uuid, owner)
        if row is None:
            raise JobNotFoundError(f"no job has the uuid {uuid}")
        return job_from_row(row)

    async def find(
        self,
        *,
        job_type: str | None = None,
        statuses: Sequence[JobStatus] | None = None,
        queues: Sequence[str] | None = None,
        limit: int = 25,
        after: int | None = None,
        owner: str | None = None,
    ) -> list[Job]:
        """Jobs newest first, optionally filtered; `after` is the id the last page ended at;
        with `owner`, only the jobs that API key created."""
        status_values = [str(s) for s in statuses] if statuses else None
        queue_values = list(queues) if queues else None
        args = (job_type, status_values, limit, queue_values, after)
        if owner is None:
            rows = await self.pool.fetch(q.JOB_LIST, *args)
        else:
            rows = await self.pool.fetch(q.JOB_LIST_OWNED, *args, owner)
        return [job_from_row(row) for row in rows]

    async def count_owned_by_status_and_queue(
        self, owner: str, newest: int
    ) -> dict[tuple[JobStatus, str], int]:
        """The newest `newest` jobs an API key created, per (status, queue)."""
        rows = await self.pool.fetch(q.JOB_COUNT_OWNED_BY_QUEUE, owner, newest)
        return {(JobStatus(row["status"]), row["queue"]): row["jobs"] for row in rows}

    async def count_by_status_and_queue(
        self, statuses: Iterable[JobStatus], cap: int
    ) -> dict[tuple[JobStatus, str], int]:
        """Jobs of these states per (status, queue), counting at most `cap` of each state."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.JOB_COUNT_BOUNDED_PLAN)
            rows = await conn.fetch(q.JOB_COUNT_BOUNDED_BY_QUEUE, [str(s) for s in statuses], cap)
        return {(JobStatus(row["status"]), row["queue"]): row["jobs"] for row in rows}

    async def claim(
        self,
        kind: RunnerKind,
        runner_id: str,
        limit: int,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        """Claim up to `limit` jobs of these queues (None: every queue) for this runner:
        higher priority first, then the oldest (retries: the longest due first)."""
        if limit <= 0:
            return []
        query = q.JOB_CLAIM_OPEN if kind is FIRST_TIME else q.JOB_CLAIM_RETRY
        rows = await self.pool.fetch(query, limit, runner_id, _queue_list(queues))
        jobs = (job_from_row(row) for row in rows)
        if kind is FIRST_TIME:
            return sorted(jobs, key=lambda job: (-job.priority, job.id))
        return sorted(jobs, key=lambda job: (job.run_after or job.created_at, job.id))

    async def promote_due(self, limit: int = 1000) -> int:
        """Make delayed jobs that are due open; return how many."""
        return int(await self.pool.fetchval(q.JOB_PROMOTE_DUE, limit))

    async def seconds_until_due(
        self, kind: RunnerKind, queues: Sequence[str] | None = None
    ) -> float | None:
        """How long until the next job this runner may claim falls due: a delayed job
        (first_time) or a failed one (retry); None when none waits."""
        query = q.JOB_SCHEDULED_NEXT_DUE if kind is FIRST_TIME else q.JOB_RETRY_NEXT_DUE
        seconds = await self.pool.fetchval(query, _queue_list(queues))
        return None if seconds is None else float(seconds)

    async def start(self, job: Job, kind: RunnerKind, runner_id: str) -> int:
        """Mark a queued job as running; return its attempt number."""
        started, _ = await self.start_and_complete(kind, runner_id, [job.id], [])
        return int(_held(started.get(job.id), job))

    async def start_and_complete(
        self,
        kind: RunnerKind,
        runner_id: str,
        start_ids: Sequence[int],
        completions: Sequence[tuple[int, dict[str, Any]]],
    ) -> tuple[dict[int, int], set[int]]:
        """Mark queued jobs as running and running ones completed (each with its response),
        in one statement; return the attempt number of each job started and the ids completed.

        A job missing from the result was not held by this runner in the expected state.
        """
        check_transition(kind.queued, kind.running)
        check_transition(kind.running, JobStatus.COMPLETED)
        rows = await self.pool.fetch(
            q.JOB_START_AND_COMPLETE,
            list(start_ids),
            kind.queued,
            runner_id,
            kind.running,
            [job_id for job_id, _ in completions],
            [response for _, response in completions],
        )
        started = {row["id"]: row["attempts"] for row in rows if row["attempts"] is not None}
        completed = {row["id"] for row in rows if row["attempts"] is None}
        return started, completed

    async def state(self, job: Job) -> JobState | None:
        """Where the job stands now (status, attempts, holder); None if it is gone."""
        row = await self.pool.fetchrow(q.JOB_STATE, job.id)
        if row is None:
            return None
        return JobState(JobStatus(row["status"]), row["attempts"], row["runner_id"])

    async def report_progress(
        self, job: Job, kind: RunnerKind, runner_id: str, progress: dict[str, Any]
    ) -> None:
        """Merge progress fields into a running job's job_response."""
        done = await self.pool.fetchval(
            q.JOB_REPORT_PROGRESS, job.id, kind.running, runner_id, progress
        )
        _held(done, job)

    async def complete(
        self, job: Job, kind: RunnerKind, runner_id: str, response: dict[str, Any]
    ) -> None:
        """Mark a running job completed with its response."""
        _, done = await self.start_and_complete(kind, runner_id, [], [(job.id, response)])
        _held(job.id if job.id in done else None, job)

    async def fail(
        self,
        job: Job,
        kind: RunnerKind,
        runner_id: str,
        response: dict[str, Any],
        retry_in: timedelta | None,
    ) -> JobStatus:
        """Mark a running job failed, or failed_final when `retry_in` is None; return which."""
        status = JobStatus.FAILED if retry_in is not None else JobStatus.FAILED_FINAL
        check_transition(kind.running, status)
        delay = None if retry_in is None else retry_in.total_seconds()
        done = await self.pool.fetchval(
            q.JOB_FAIL, job.id, kind.running, runner_id, response, status, delay
        )
        _held(done, job)
        return status

    async def abort_running(
        self, job: Job, kind: RunnerKind, runner_id: str, response: dict[str, Any]
    ) -> None:
        """Mark a running job aborted after it stopped on a user's request."""
        check_transition(kind.running, JobStatus.ABORTED)
        done = await self.pool.fetchval(
            q.JOB_ABORT_RUNNING, job.id, kind.running, runner_id, response
        )
        _held(done, job)

    async def save_checkpoint(
        self, job: Job, kind: RunnerKind, runner_id: str, checkpoint: dict[str, Any]
    ) -> None:
        """Record how far a running job got, for its next attempt to resume from."""
        done = await self.pool.fetchval(
            q.JOB_SAVE_CHECKPOINT, job.id, kind.running, runner_id, checkpoint
        )
        _held(done, job)

    async def open_upload_ids(self) -> set[str]:
        """The ids of the multipart uploads that held jobs have open."""
        rows = await self.pool.fetch(q.JOB_OPEN_UPLOAD_IDS)
        return {row["upload_id"] for row in rows if row["upload_id"]}

    async def heartbeat(
        self, kind: RunnerKind, runner_id: str, job_ids: Iterable[int]
    ) -> dict[int, bool]:
        """Refresh these held jobs; map each still held to whether a cancel was requested."""
        rows = await self.pool.fetch(
            q.JOB_HEARTBEAT, runner_id, kind.queued, kind.running, list(job_ids)
        )
        return {row["id"]: row["cancel_requested"] for row in rows}

    async def rescue_expired(
        self, lease: timedelta, decide: Callable[[Job], Rescue], limit: int = 100
    ) -> list[tuple[Job, Rescue]]:
        """Take back held jobs whose heartbeat is older than the lease, a batch at a time."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(q.JOB_RESCUE_CANDIDATES, lease.total_seconds(), limit)
            rescued = [(job, decide(job)) for job in map(job_from_row, rows)]
            for job, rescue in rescued:
                delay = None if rescue.retry_in is None else rescue.retry_in.total_seconds()
                await conn.execute(q.JOB_RESCUE, job.id, rescue.status, delay, rescue.response)
        return rescued

    async def results_expired(
        self, ttl: timedelta, limit: int
    ) -> list[tuple[int, list[tuple[str | None, str]]]]:
        """Finished jobs whose result files are older than `ttl`, with those files."""
        return await self._expired(q.JOB_RESULTS_EXPIRED, ttl, limit)

    async def mark_results_deleted(self, job_id: int) -> None:
        """Record that a job's result files are gone."""
        await self.pool.execute(q.JOB_MARK_RESULTS_DELETED, job_id)

    async def delete_expired(
        self, ttl: timedelta, limit: int
    ) -> list[tuple[int, list[tuple[str | None, str]]]]:
        """Delete finished jobs older than `ttl`; return their result files still to delete."""
        return await self._expired(q.JOB_DELETE_EXPIRED, ttl, limit)

    async def _expired(
        self, query: str, ttl: timedelta, limit: int
    ) -> list[tuple[int, list[tuple[str | None, str]]]]:
        """Run a retention query; return each job's id with its result files."""
        rows = await self.pool.fetch(query, ttl.total_seconds() / 86_400, limit)
        return [(row["id"], _files(row)) for row in rows]

    async def delete_expired_idempotency_keys(self, limit: int) -> None:
        """Forget idempotency keys past their expiry."""
        await self.pool.execute(q.IDEMPOTENCY_KEY_DELETE_EXPIRED, limit)

    async def cancel(self, uuid: UUID) -> Job:
        """Abort a waiting job at once, or ask the runner of a running job to stop it."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q.JOB_CANCEL_WAITING, uuid)
            row = row or await conn.fetchrow(q.JOB_CANCEL_RUNNING, uuid)
        if row is not None:
            return job_from_row(row)
        job = await self.get(uuid)
        raise JobFinishedError(f"job {uuid} is {job.status} and cannot be cancelled")

    async def reopen(self, uuid: UUID) -> Job:
        """A manual retry: reopen a failed or finally failed job with a fresh attempt budget."""
        row = await self.pool.fetchrow(q.JOB_REOPEN, uuid)
        if row is not None:
            return job_from_row(row)
        job = await self.get(uuid)
        raise JobNotRetryableError(
            f"job {uuid} is {job.status}; only failed or failed_final jobs can be retried"
        )

    async def hand_back(self, jobs: Iterable[Job], kind: RunnerKind, runner_id: str) -> int:
        """Give back queued or running jobs on shutdown; return how many went back."""
        check_transition(kind.queued, kind.handed_back)
        check_transition(kind.running, kind.handed_back)
        ids = [job.id for job in jobs]
        if not ids:
            return 0
        rows = await self.pool.fetch(
            q.JOB_HAND_BACK, ids, kind.queued, kind.running, kind.handed_back, runner_id
        )
        return len(rows)


def _queue_list(queues: Sequence[str] | None) -> list[str] | None:
    """Queues as the claims take them: None for every queue."""
    return list(queues) if queues is not None else None


class _LostKeyRace(Exception):
    """Another request inserted the same idempotency key first."""


def _replayed(row: Mapping[str, Any], fingerprint: str, key: str) -> Job:
    """The job a repeated key stands for, if the request is the same one."""
    if row["fingerprint"] != fingerprint:
        raise IdempotencyKeyReusedError(
            f"the Idempotency-Key {key[:40]!r} was already used with a different request"
        )
    return job_from_row(row)


def _files(row: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """The result files of a jobs row."""
    return result_files(row["job_type"], row["data"], row["job_response"])


def _held(value: Any, job: Job) -> Any:
    """A guarded update that matched nothing means the job is no longer ours."""
    if value is None:
        raise job_lost(job)
    return value


def job_lost(job: Job) -> JobLostError:
    """The error of a guarded write that matched nothing: the job is no longer ours."""
    return JobLostError(f"job {job.uuid} is no longer held by this runner in the expected state")
