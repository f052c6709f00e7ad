"""The status writer: many consumers' starts and completions, one statement per batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.errors import JobLostError
from connectra.jobs import FIRST_TIME, Job, JobStatus, NewJob
from connectra.runners.status_writer import StatusWriter
from tests.integration.test_runners import config, running
from tests.polling import eventually

S = JobStatus
RUNNER = "writer-test"


@pytest.fixture
async def writer(store: JobStore) -> AsyncIterator[StatusWriter]:
    writer = StatusWriter(store, FIRST_TIME, RUNNER)
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def claimed(store: JobStore, n: int) -> list[Job]:
    """`n` new no-op jobs, claimed for this runner (queued, not started)."""
    for _ in range(n):
        await store.create(NewJob("noop", {}))
    return await store.claim(FIRST_TIME, RUNNER, n)


async def test_concurrent_starts_and_completions_share_statements(
    store: JobStore, writer: StatusWriter
) -> None:
    jobs = await claimed(store, 40)
    first, second = jobs[:20], jobs[20:]
    assert await asyncio.gather(*(writer.start(job) for job in first)) == [1] * 20
    assert writer.batches == 1
    # The next round carries starts and completions together: one statement for 40 writes.
    results = await asyncio.gather(
        *(writer.start(job) for job in second),
        *(writer.complete(job, FIRST_TIME, RUNNER, {"n": job.id}) for job in first),
    )
    assert results == [1] * 20 + [None] * 20
    assert writer.batches == 2
    await asyncio.gather(
        *(writer.complete(job, FIRST_TIME, RUNNER, {"n": job.id}) for job in second)
    )
    for job in jobs:
        done = await store.get(job.uuid)
        assert (done.status, done.attempts, done.runner_id) == (S.COMPLETED, 1, None)
        assert done.job_response == {"n": job.id}


async def test_starts_of_consumers_woken_together_go_out_in_one_statement(
    store: JobStore, writer: StatusWriter
) -> None:
    # Consumers freed by one round's results wake in the same pass of the event loop but
    # reach their write a step apart (one went straight on, the others had a step to take
    # first). The first write must not take the next round alone and leave the rest for the
    # round after it.
    jobs = await claimed(store, 10)
    go = asyncio.Event()

    async def consumer(job: Job, steps: int) -> int:
        await go.wait()
        for _ in range(steps):
            await asyncio.sleep(0)
        return await writer.start(job)

    consumers = [asyncio.create_task(consumer(job, min(i, 1))) for i, job in enumerate(jobs)]
    await asyncio.sleep(0.05)  # every consumer waits on the event; the writer is idle
    go.set()
    assert await asyncio.gather(*consumers) == [1] * 10
    assert writer.batches == 1


async def test_a_rounds_completions_are_told_once_the_next_round_is_on_its_way(
    store: JobStore, writer: StatusWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A completion's waiter has work left (a log line, then back to the queue). Told before
    # the next round goes out, that work delays the round; told after, it runs while the
    # round's statement is in flight.
    done, follower = await claimed(store, 2)
    assert await writer.start(done) == 1
    events: list[str] = []
    returned = asyncio.Event()
    send = store.start_and_complete

    async def watched(*args: Any) -> Any:
        events.append(f"sent {len(args[2])} starts, {len(args[3])} completions")
        result = await send(*args)
        returned.set()
        return result

    monkeypatch.setattr(store, "start_and_complete", watched)

    async def complete() -> None:
        await writer.complete(done, FIRST_TIME, RUNNER, {})
        events.append("completion told")

    async def follow() -> int:
        await returned.wait()  # the completion's round has returned: start the next job
        return await writer.start(follower)

    _, attempt = await asyncio.gather(complete(), follow())
    assert attempt == 1
    assert events == [
        "sent 0 starts, 1 completions",
        "sent 1 starts, 0 completions",
        "completion told",
    ]


async def test_a_completion_is_told_even_when_no_round_follows(
    store: JobStore, writer: StatusWriter
) -> None:
    (job,) = await claimed(store, 1)
    assert await writer.start(job) == 1
    await asyncio.wait_for(writer.complete(job, FIRST_TIME, RUNNER, {}), 1)
    assert (await store.get(job.uuid)).status is S.COMPLETED


async def test_a_job_taken_away_fails_alone_in_its_batch(
    store: JobStore, pool: asyncpg.Pool, writer: StatusWriter
) -> None:
    kept, taken, other = await claimed(store, 3)
    await pool.execute("UPDATE jobs SET runner_id = 'someone-else' WHERE id = $1", taken.id)
    results = await asyncio.gather(
        writer.start(kept), writer.start(taken), writer.start(other), return_exceptions=True
    )
    assert results[0] == results[2] == 1
    assert isinstance(results[1], JobLostError)
    assert (await store.get(taken.uuid)).status is S.IN_QUEUE  # untouched


@pytest.mark.parametrize(
    "error",
    [ConnectionResetError("database unreachable"), asyncpg.QueryCanceledError("statement timeout")],
)
async def test_a_database_error_fails_every_write_of_the_batch(
    store: JobStore, writer: StatusWriter, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    jobs = await claimed(store, 2)

    async def failing(*_: object) -> None:
        raise error

    monkeypatch.setattr(store, "start_and_complete", failing)
    results = await asyncio.gather(*(writer.start(job) for job in jobs), return_exceptions=True)
    assert all(r is error for r in results)
    monkeypatch.undo()
    assert await writer.start(jobs[0]) == 1  # the writer goes on after the outage


async def test_writes_in_flight_or_waiting_when_the_writer_stops_fail_instead_of_hanging(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = await claimed(store, 2)
    sent = asyncio.Event()

    async def stuck(*_: object) -> None:
        sent.set()
        await asyncio.Event().wait()  # a statement that never returns

    monkeypatch.setattr(store, "start_and_complete", stuck)
    writer = StatusWriter(store, FIRST_TIME, RUNNER)
    task = asyncio.create_task(writer.run())
    in_flight = asyncio.create_task(writer.start(first))
    await sent.wait()
    waiting = asyncio.create_task(writer.start(second))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for write in (in_flight, waiting):
        with pytest.raises(JobLostError):
            await asyncio.wait_for(write, 1)


async def test_heartbeats_never_overlap_a_batch(
    store: JobStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A heartbeat and a batch both update several of the runner's rows; sent side by side
    # from two connections they can lock them in opposite orders and deadlock (seen with
    # three runner processes). The runner must send them one after the other.
    in_flight: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    def watched(name: str, method: Any) -> Any:
        async def call(*args: Any) -> Any:
            if in_flight:
                overlaps.append((*in_flight, name))
            in_flight.append(name)
            try:
                return await method(*args)
            finally:
                in_flight.remove(name)

        return call

    for name in ("heartbeat", "start_and_complete"):
        monkeypatch.setattr(store, name, watched(name, getattr(store, name)))
    await pool.execute(
        "INSERT INTO jobs (job_type, data) SELECT 'noop', '{}' FROM generate_series(1, 1500)"
    )
    cfg = config(concurrency=10, queue_size=40, heartbeat_interval=timedelta(seconds=0.001))
    async with running(store, cfg):
        await eventually(lambda: _completed(pool, 1500), within=60)
    assert overlaps == []


async def _completed(pool: asyncpg.Pool, expected: int) -> bool:
    done = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
    return bool(done == expected)
