"""The core invariants, each guarded so that a restructure cannot break it unseen.

1. A claim never waits for a job another transaction holds (`SKIP LOCKED`): not for a row
   lock, not for another runner's claim still uncommitted; both claims, every queue or named
   queues.
2. A runner's write to a job another runner now holds in the same state changes nothing and
   raises `JobLostError` (the holder guard, beside the state guard).
3. Two rescuers at once rescue an expired job once.
4. An Idempotency-Key covers `retry_count` and `retry_interval`.

Guarded elsewhere, and not repeated here: the start of a job held by another runner
(test_runners), a completion after the job is completed (test_runners), a job taken away in a
status writer round (test_status_writer), the other fields of the idempotency fingerprint
(test_job_control, test_api_queues).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from connectra.db import queries as q
from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from connectra.errors import JobLostError
from connectra.jobs import FIRST_TIME, RETRY, Job, JobStatus, NewJob, RunnerKind
from connectra.retry import RetryPolicy
from connectra.runners.maintenance import Rescuer
from connectra.runners.status_writer import StatusWriter
from tests.api_client import Client, started
from tests.polling import eventually

S = JobStatus
AUTH = {"X-API-Key": "k1"}
LEASE = timedelta(seconds=60)
QUEUE = "imports"
# A claim that waits for a locked row fails after this instead of hanging.
LOCK_WAIT = "1s"
ALL_QUEUES = None

KINDS = pytest.mark.parametrize("kind", [FIRST_TIME, RETRY], ids=lambda kind: kind.name)
QUEUE_SETS = pytest.mark.parametrize(
    "queues", [ALL_QUEUES, [QUEUE]], ids=["every-queue", "named-queue"]
)


async def row(pool: asyncpg.Pool, job_id: int) -> dict[str, Any]:
    """The job's whole row."""
    return dict(await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id))


async def expire(pool: asyncpg.Pool, job_id: int) -> None:
    """Make a held job look abandoned: its last heartbeat is older than the lease."""
    await pool.execute(
        "UPDATE jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1", job_id
    )


@contextlib.asynccontextmanager
async def open_transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction left open for the block, then rolled back."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            yield conn
        finally:
            await transaction.rollback()


# --- 1. a claim skips what others hold --------------------------------------------------------


@pytest.fixture
async def impatient_store(database_url: str) -> AsyncIterator[JobStore]:
    """The job store on connections that give up waiting for a row lock after LOCK_WAIT."""

    async def impatient(conn: asyncpg.Connection) -> None:
        await conn.execute(f"SET lock_timeout = '{LOCK_WAIT}'")

    pool = await create_pool(database_url, max_size=2, setup=impatient)
    try:
        yield JobStore(pool)
    finally:
        await pool.close()


async def claimable(store: JobStore, pool: asyncpg.Pool, kind: RunnerKind, n: int) -> list[int]:
    """`n` jobs of QUEUE this kind of runner may claim; their ids in claim order."""
    jobs = [await store.create(NewJob("noop", {}, queue=QUEUE, retry_count=1)) for _ in range(n)]
    ids = [job.id for job in jobs]
    if kind is RETRY:
        await pool.execute(
            "UPDATE jobs SET status = 'failed', attempts = 1, completed_at = now(), "
            "run_after = now() - interval '1 hour' + id * interval '1 second' "
            "WHERE id = ANY($1)",
            ids,
        )
    return ids


async def claimed_at_once(
    store: JobStore, kind: RunnerKind, queues: Sequence[str] | None
) -> list[int]:
    """The ids a claim returns; a claim that waits for a locked job fails the test."""
    try:
        async with asyncio.timeout(10):
            jobs = await store.claim(kind, "runner-a", 10, queues)
    except asyncpg.LockNotAvailableError:
        pytest.fail("the claim waited for a job another transaction holds")
    return [job.id for job in jobs]


@KINDS
@QUEUE_SETS
async def test_a_claim_skips_the_first_job_while_another_transaction_locks_it(
    store: JobStore,
    pool: asyncpg.Pool,
    impatient_store: JobStore,
    kind: RunnerKind,
    queues: list[str] | None,
) -> None:
    first, *others = await claimable(store, pool, kind, 3)
    async with open_transaction(pool) as holder:
        await holder.execute("SELECT id FROM jobs WHERE id = $1 FOR UPDATE", first)
        assert await claimed_at_once(impatient_store, kind, queues) == others
    assert (await row(pool, first))["status"] == kind.claims, "the locked job is left waiting"


@KINDS
@QUEUE_SETS
async def test_a_claim_skips_the_jobs_of_another_runners_uncommitted_claim(
    store: JobStore,
    pool: asyncpg.Pool,
    impatient_store: JobStore,
    kind: RunnerKind,
    queues: list[str] | None,
) -> None:
    first, *others = await claimable(store, pool, kind, 3)
    claim = q.JOB_CLAIM_OPEN if kind is FIRST_TIME else q.JOB_CLAIM_RETRY
    async with open_transaction(pool) as runner_b:
        taken = await runner_b.fetch(claim, 1, "runner-b", queues)
        assert [job["id"] for job in taken] == [first]
        assert await claimed_at_once(impatient_store, kind, queues) == others


# --- 2. a stale runner's write changes nothing ------------------------------------------------

STALE, CURRENT = "stale-runner", "current-runner"


async def taken_over(store: JobStore, pool: asyncpg.Pool, kind: RunnerKind) -> Job:
    """A job the stale runner started and lost to the rescuer, which the current runner now
    runs in the same state; returns the stale runner's copy of it."""
    if kind is FIRST_TIME:
        job = await store.create(NewJob("noop", {}))  # no retry: rescued to failed_final
    else:
        job = await store.create(NewJob("noop", {}, retry_count=5, retry_interval=0))
        await pool.execute(
            "UPDATE jobs SET status = 'failed', attempts = 1, run_after = now() WHERE id = $1",
            job.id,
        )
    [stale] = await store.claim(kind, STALE, 1)
    await store.start(stale, kind, STALE)
    await expire(pool, job.id)
    assert await Rescuer(store, RetryPolicy(), LEASE).rescue_once() == 1
    if kind is FIRST_TIME:
        await store.reopen(job.uuid)  # a manual retry
    [current] = await store.claim(kind, CURRENT, 1)
    await store.start(current, kind, CURRENT)
    now = await row(pool, job.id)
    assert (now["status"], now["runner_id"]) == (kind.running, CURRENT)
    return stale


async def complete(store: JobStore, job: Job, kind: RunnerKind) -> None:
    await store.complete(job, kind, STALE, {"rows": 1})


async def complete_through_the_status_writer(store: JobStore, job: Job, kind: RunnerKind) -> None:
    writer = StatusWriter(store, kind, STALE)
    task = asyncio.create_task(writer.run())
    try:
        await asyncio.wait_for(writer.complete(job, kind, STALE, {"rows": 1}), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def fail_with_a_retry(store: JobStore, job: Job, kind: RunnerKind) -> None:
    await store.fail(job, kind, STALE, {"messages": "stale"}, timedelta(seconds=30))


async def fail_for_good(store: JobStore, job: Job, kind: RunnerKind) -> None:
    await store.fail(job, kind, STALE, {"messages": "stale"}, None)


async def abort(store: JobStore, job: Job, kind: RunnerKind) -> None:
    await store.abort_running(job, kind, STALE, {"messages": "stale"})


async def report_progress(store: JobStore, job: Job, kind: RunnerKind) -> None:
    await store.report_progress(job, kind, STALE, {"rows_done": 99})


async def save_checkpoint(store: JobStore, job: Job, kind: RunnerKind) -> None:
    await store.save_checkpoint(job, kind, STALE, {"offset": 99})


StaleWrite = Callable[[JobStore, Job, RunnerKind], Awaitable[None]]


@KINDS
@pytest.mark.parametrize(
    "write",
    [
        complete,
        complete_through_the_status_writer,
        fail_with_a_retry,
        fail_for_good,
        abort,
        report_progress,
        save_checkpoint,
    ],
    ids=lambda write: write.__name__,
)
async def test_a_stale_runners_write_to_a_job_another_runner_runs_is_lost_and_changes_nothing(
    store: JobStore, pool: asyncpg.Pool, kind: RunnerKind, write: StaleWrite
) -> None:
    stale = await taken_over(store, pool, kind)
    before = await row(pool, stale.id)
    with pytest.raises(JobLostError):
        await write(store, stale, kind)
    assert await row(pool, stale.id) == before


# --- 3. two rescuers rescue a job once --------------------------------------------------------


class FirstFetchPauses:
    """A pool whose first `fetch` returns only once `pause` has run, with the connection's
    transaction, and the row locks it took, still open."""

    def __init__(
        self, pool: asyncpg.Pool, pause: Callable[[asyncpg.Connection], Awaitable[None]]
    ) -> None:
        self.pool = pool
        self.pause = pause
        self.paused = False

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_PausingConnection]:
        async with self.pool.acquire() as conn:
            yield _PausingConnection(conn, self)


class _PausingConnection:
    """A connection whose first `fetch` pauses after its result arrived."""

    def __init__(self, conn: asyncpg.Connection, owner: FirstFetchPauses) -> None:
        self._conn = conn
        self._owner = owner

    async def fetch(self, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._conn.fetch(*args)
        if not self._owner.paused:
            self._owner.paused = True
            await self._owner.pause(self._conn)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def _done_or_blocked_by(task: asyncio.Task[int], pool: asyncpg.Pool, pid: int) -> bool:
    """Whether the task finished, or a backend waits for a lock the backend `pid` holds."""
    if task.done():
        return True
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))",
            pid,
        )
    )


@pytest.mark.parametrize(("held", "rescued"), [(S.IN_QUEUE, S.OPEN), (S.PROCESSING, S.FAILED)])
async def test_two_rescuers_at_once_rescue_an_expired_job_once(
    store: JobStore, pool: asyncpg.Pool, database_url: str, held: JobStatus, rescued: JobStatus
) -> None:
    job = await store.create(NewJob("noop", {}, retry_count=3))
    [claimed] = await store.claim(FIRST_TIME, "dead-runner", 1)
    if held is S.PROCESSING:
        await store.start(claimed, FIRST_TIME, "dead-runner")
    await expire(pool, job.id)
    other_pool = await create_pool(database_url, max_size=2)
    second = Rescuer(JobStore(other_pool), RetryPolicy(), LEASE)
    second_run: list[asyncio.Task[int]] = []

    async def run_the_second_meanwhile(conn: asyncpg.Connection) -> None:
        # The first rescuer has read its candidates and holds its transaction open: the
        # second runs now, until it is done or waits for a lock the first holds.
        second_run.append(asyncio.create_task(second.rescue_once()))
        pid = conn.get_server_pid()
        await eventually(lambda: _done_or_blocked_by(second_run[0], pool, pid), within=10)

    first_pool = FirstFetchPauses(pool, run_the_second_meanwhile)
    first = Rescuer(JobStore(first_pool), RetryPolicy(), LEASE)
    try:
        rescued_first = await asyncio.wait_for(first.rescue_once(), 15)
        assert first_pool.paused, "the first rescuer read its candidates through the pausing pool"
        rescued_second = await asyncio.wait_for(second_run[0], 15)
    finally:
        await other_pool.close()
    assert rescued_first + rescued_second == 1
    back = await row(pool, job.id)
    assert back["rescue_count"] == 1
    assert back["status"] == rescued
    assert len(back["job_response"]["runtime_errors"]) == 1


# --- 4. an Idempotency-Key covers the retry options -------------------------------------------


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    async for client in started(store):
        yield client


async def create(client: Client, body: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
    """Create under one Idempotency-Key: status, body and whether it was a replay."""
    headers = AUTH | {"Idempotency-Key": "retry-options-1"}
    response = await client.post("/common/jobs/create", json=body, headers=headers)
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return response.status, await response.json(), replayed


@pytest.mark.parametrize(("option", "other_value"), [("retry_count", 2), ("retry_interval", 60)])
async def test_the_same_idempotency_key_with_other_retry_options_is_409(
    client: Client, pool: asyncpg.Pool, option: str, other_value: int
) -> None:
    body = {"job_type": "noop", "job_data": {"n": 1}, "retry_count": 1, "retry_interval": 30}
    status, first, _ = await create(client, body)
    assert status == 201
    status, again, replayed = await create(client, body)
    assert (status, again["uuid"], replayed) == (201, first["uuid"], True)
    status, refused, _ = await create(client, {**body, option: other_value})
    assert status == 409
    assert refused["error"].startswith("ERR_IDEMPOTENCY_KEY_REUSED: ")
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1
