"""The first_time and retry runners against real PostgreSQL, in process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.errors import InvalidTransitionError, JobLostError
from connectra.jobs import FIRST_TIME, RETRY, JobStatus, NewJob, RunnerKind
from connectra.processors.base import JobContext, JobType, JobTypeRegistry
from connectra.processors.demo import NoopData
from connectra.processors.registry import default_registry
from connectra.retry import RetryPolicy
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.settings import load_settings
from tests.polling import eventually

S = JobStatus


def config(kind: RunnerKind = FIRST_TIME, **overrides: Any) -> RunnerConfig:
    values: dict[str, Any] = {
        "kind": kind,
        "concurrency": 2,
        "queue_size": 10,
        "tick_interval": timedelta(seconds=0.05),
        "shutdown_grace": timedelta(seconds=5),
        "retry_policy": RetryPolicy(),
    }
    values.update(overrides)
    return RunnerConfig(**values)


@contextlib.asynccontextmanager
async def running(
    store: JobStore, cfg: RunnerConfig, registry: JobTypeRegistry | None = None
) -> AsyncIterator[tuple[Runner, Stopping]]:
    """A runner working in the background for the duration of the block."""
    runner = Runner(store, registry or default_registry(), load_settings(), cfg)
    stopping = Stopping()
    task = asyncio.create_task(runner.run(stopping))
    try:
        yield runner, stopping
    finally:
        stopping.request()
        await asyncio.wait_for(task, 30)


class Returns:
    """Counts the returns of one object's async method, patched for the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.count = 0
        method = getattr(target, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            finally:
                self.count += 1

        monkeypatch.setattr(target, name, counted)

    async def happened(self) -> bool:
        return self.count > 0


async def count(pool: asyncpg.Pool, status: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM jobs WHERE status = $1", status))


async def test_first_time_runner_takes_open_jobs_to_completed(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    jobs = [await store.create(NewJob("noop", {})) for _ in range(20)]
    async with running(store, config()):
        await eventually(lambda: _all_in(pool, "completed", 20))
    for job in jobs:
        done = await store.get(job.uuid)
        assert done.status is S.COMPLETED
        assert done.attempts == 1
        assert done.runner_id is None
        assert done.started_at is not None
        assert done.completed_at is not None
        assert done.job_response == {"runtime_errors": [], "messages": "noop completed"}


async def _all_in(pool: asyncpg.Pool, status: str, expected: int) -> bool:
    return await count(pool, status) == expected


async def test_ticker_never_claims_more_than_the_queue_has_room_for(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    for _ in range(12):
        await store.create(NewJob("sleep", {"seconds": 0.15}))
    seen_held, seen_queued, seen_running = [], [], []
    async with running(store, config(concurrency=1, queue_size=3)):

        async def sample() -> bool:
            queued, processing, completed = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'in_queue'),"
                " count(*) FILTER (WHERE status = 'processing'),"
                " count(*) FILTER (WHERE status = 'completed') FROM jobs"
            )
            seen_held.append(queued + processing)
            seen_queued.append(queued)
            seen_running.append(processing)
            return bool(completed == 12)

        await eventually(sample, within=20)
    # Held at most: a full queue of 3, plus one job per consumer: the one slot's consumer
    # holds the job it runs, the other a finished job whose outcome is being written.
    assert max(seen_held) <= 3 + 2
    assert max(seen_queued) >= 2, "the queue was never filled: the test proves nothing"
    assert 1 <= max(seen_running) <= 2


async def test_a_failed_job_with_retries_is_rescheduled_after_retry_interval(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(
        NewJob("sleep", {"seconds": 0, "fail_attempts": 1}, retry_count=2, retry_interval=1)
    )
    async with running(store, config()):
        await eventually(lambda: _all_in(pool, "failed", 1))
    failed = await store.get(job.uuid)
    assert failed.attempts == 1
    assert failed.run_after is not None
    assert failed.completed_at is not None
    wait = (failed.run_after - failed.completed_at).total_seconds()
    assert 0.9 <= wait <= 1.1
    assert failed.job_response["runtime_errors"] == [
        "ERR_JOB_FAILED: failing attempt 1 of 1 on purpose"
    ]
    assert failed.job_response["error"]["code"] == "ERR_JOB_FAILED"


async def test_a_job_that_completes_on_retry_keeps_the_failed_attempts_error_lines(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(
        NewJob("sleep", {"seconds": 0, "fail_attempts": 2}, retry_count=2, retry_interval=0)
    )
    async with running(store, config()), running(store, config(RETRY, concurrency=1)):
        await eventually(lambda: _all_in(pool, "completed", 1))
    done = await store.get(job.uuid)
    assert done.attempts == 3
    assert done.job_response["messages"] == "slept 0s"
    assert done.job_response["runtime_errors"] == [
        "ERR_JOB_FAILED: failing attempt 1 of 2 on purpose",
        "ERR_JOB_FAILED: failing attempt 2 of 2 on purpose",
    ]


async def test_retry_runner_honours_run_after(store: JobStore, pool: asyncpg.Pool) -> None:
    job = await store.create(
        NewJob("sleep", {"seconds": 0, "fail_attempts": 1}, retry_count=1, retry_interval=2)
    )
    async with running(store, config()):
        await eventually(lambda: _all_in(pool, "failed", 1))
    failed_at = time.monotonic()
    async with running(store, config(RETRY, concurrency=1)):
        await asyncio.sleep(1.0)  # the point: nothing may happen before run_after (2 s)
        assert (await store.get(job.uuid)).status is S.FAILED, "retried before run_after"
        await eventually(lambda: _all_in(pool, "completed", 1))
    assert time.monotonic() - failed_at >= 1.5
    done = await store.get(job.uuid)
    assert done.attempts == 2
    assert done.run_after is None


async def test_retry_count_zero_is_never_retried(store: JobStore, pool: asyncpg.Pool) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 0, "fail_attempts": 1}, retry_interval=0))
    async with running(store, config()):
        await eventually(lambda: _all_in(pool, "failed_final", 1))
    assert (await store.get(job.uuid)).run_after is None
    async with running(store, config(RETRY, concurrency=1)):
        await asyncio.sleep(0.5)  # the point: ten ticks of a retry runner leave the job alone
    final = await store.get(job.uuid)
    assert (final.status, final.attempts) == (S.FAILED_FINAL, 1)
    assert final.job_response["messages"] == "job failed (no retries left)"


async def test_a_job_is_failed_final_once_its_retries_are_used_up(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(
        NewJob("sleep", {"seconds": 0, "fail_attempts": 10}, retry_count=2, retry_interval=0)
    )
    async with running(store, config()):
        await eventually(lambda: _all_in(pool, "failed", 1))
    async with running(store, config(RETRY, concurrency=1)):
        await eventually(lambda: _all_in(pool, "failed_final", 1))
        await asyncio.sleep(0.3)  # the point: no further attempt in the next six ticks
    final = await store.get(job.uuid)
    assert (final.status, final.attempts, final.run_after) == (S.FAILED_FINAL, 3, None)
    assert len(final.job_response["runtime_errors"]) == 3
    assert final.job_response["messages"] == "job failed (no retries left)"


async def test_shutdown_hands_queued_jobs_back_to_open_with_attempts_unchanged(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    jobs = [await store.create(NewJob("sleep", {"seconds": 60})) for _ in range(4)]
    cfg = config(concurrency=1, shutdown_grace=timedelta(seconds=0.2))
    async with running(store, cfg):
        await eventually(lambda: _all_in(pool, "in_queue", 3))
        await eventually(lambda: _all_in(pool, "processing", 1))
    for job in jobs:
        back = await store.get(job.uuid)
        assert (back.status, back.attempts, back.runner_id) == (S.OPEN, 0, None)
        assert "runtime_errors" not in back.job_response


async def test_running_jobs_finish_within_the_grace_period(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 0.5}))
    async with running(store, config(shutdown_grace=timedelta(seconds=10))):
        await eventually(lambda: _all_in(pool, "processing", 1))
    assert (await store.get(job.uuid)).status is S.COMPLETED


async def test_hard_stop_hands_back_running_jobs_at_once(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 60}))
    started = time.monotonic()
    async with running(store, config(shutdown_grace=timedelta(seconds=60))) as (_, stopping):
        await eventually(lambda: _all_in(pool, "processing", 1))
        stopping.request()
        stopping.request()
    assert time.monotonic() - started < 10
    back = await store.get(job.uuid)
    assert (back.status, back.attempts) == (S.OPEN, 0)


async def test_retry_runner_hands_back_to_failed_and_keeps_the_job_due(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(
        NewJob("sleep", {"seconds": 60, "fail_attempts": 1}, retry_count=1, retry_interval=0)
    )
    await pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, run_after = now() WHERE id = $1", job.id
    )
    cfg = config(RETRY, concurrency=1, shutdown_grace=timedelta(seconds=0.1))
    async with running(store, cfg):
        await eventually(lambda: _all_in(pool, "retrying", 1))
    back = await store.get(job.uuid)
    assert (back.status, back.attempts, back.runner_id) == (S.FAILED, 1, None)
    assert back.run_after is not None


async def test_wake_claims_without_waiting_for_the_tick(
    store: JobStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle = Returns(monkeypatch, store, "seconds_until_due")  # asked after an empty claim
    async with running(store, config(tick_interval=timedelta(minutes=5))) as (runner, _):
        await eventually(idle.happened, within=5)  # the first (empty) tick has happened
        await store.create(NewJob("noop", {}))
        runner.wake()
        await eventually(lambda: _all_in(pool, "completed", 1), within=3)


async def test_an_unknown_job_type_fails_the_job_not_the_runner(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("no_such_type", {}, retry_count=3))
    async with running(store, config()):
        await eventually(lambda: _all_in(pool, "failed_final", 1))
    failed = await store.get(job.uuid)
    assert failed.job_response["error"]["code"] == "ERR_UNKNOWN_JOB_TYPE"


async def test_concurrent_claims_never_hand_out_a_job_twice(store: JobStore) -> None:
    for _ in range(200):
        await store.create(NewJob("noop", {}))
    claims = await asyncio.gather(*(store.claim(FIRST_TIME, f"r{i}", 30) for i in range(8)))
    ids = [job.id for claim in claims for job in claim]
    assert len(ids) == len(set(ids)) == 200


async def test_a_move_of_a_job_held_by_another_runner_is_an_error(store: JobStore) -> None:
    await store.create(NewJob("noop", {}))
    [job] = await store.claim(FIRST_TIME, "owner", 1)
    with pytest.raises(JobLostError):
        await store.start(job, FIRST_TIME, "intruder")
    await store.start(job, FIRST_TIME, "owner")
    await store.complete(job, FIRST_TIME, "owner", {})
    with pytest.raises(JobLostError):
        await store.complete(job, FIRST_TIME, "owner", {})


async def test_the_database_rejects_a_status_outside_the_machine(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO jobs (job_type, status) VALUES ('noop', 'done')")


def test_a_runner_kind_must_follow_the_state_machine() -> None:
    with pytest.raises(InvalidTransitionError):
        RunnerKind("bad", S.OPEN, S.PROCESSING, S.COMPLETED, S.OPEN)


async def test_retry_runner_wakes_when_a_job_falls_due_not_at_the_next_tick(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("noop", {}, retry_count=1))
    await pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, run_after = now() + interval '1 second'"
        " WHERE id = $1",
        job.id,
    )
    cfg = config(RETRY, concurrency=1, tick_interval=timedelta(minutes=5))
    async with running(store, cfg):
        await eventually(lambda: _all_in(pool, "completed", 1), within=4)


class Probe:
    """A job type that records how many of its handlers run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.ran = 0

    def has_run(self, n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return self.ran == n

        return check

    def registry(self) -> JobTypeRegistry:
        async def run(ctx: JobContext, data: NoopData) -> None:
            self.running += 1
            self.most = max(self.most, self.running)
            await asyncio.sleep(0.02)
            self.running -= 1
            self.ran += 1

        return JobTypeRegistry([JobType("probe", NoopData, run)])


def hold_completions(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Completions of this runner wait until the returned event is set."""
    release = asyncio.Event()
    complete = runner.writer.complete

    async def held(*args: Any) -> None:
        await release.wait()
        await complete(*args)

    monkeypatch.setattr(runner.writer, "complete", held)
    return release


async def test_a_job_waiting_for_its_completion_write_does_not_hold_a_handler_slot(
    store: JobStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe()
    for _ in range(2):
        await store.create(NewJob("probe", {}))
    async with running(store, config(concurrency=1), probe.registry()) as (runner, _):
        release = hold_completions(runner, monkeypatch)
        await eventually(probe.has_run(2))  # the second ran while the first's write waited
        assert await count(pool, "processing") == 2
        release.set()
        await eventually(lambda: _all_in(pool, "completed", 2))


async def test_handlers_never_outnumber_parallel_jobs_nor_waiting_writes_the_consumers(
    store: JobStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe()
    for _ in range(10):
        await store.create(NewJob("probe", {}))
    async with running(store, config(concurrency=2), probe.registry()) as (runner, _):
        release = hold_completions(runner, monkeypatch)
        await eventually(probe.has_run(6))
        await asyncio.sleep(0.2)  # the point: no seventh job starts while the writes wait
        # Two slots, six consumers: two handlers at a time, and once six jobs wait for their
        # writes no consumer is left to take a seventh.
        assert (probe.ran, probe.most) == (6, 2)
        assert await count(pool, "in_queue") == 4
        release.set()
        await eventually(lambda: _all_in(pool, "completed", 10))
    assert probe.most == 2
