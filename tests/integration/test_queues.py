"""Named queues, priorities and delayed jobs: what is claimed, in which order, and when."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, RETRY, JobStatus, NewJob
from connectra.processors.base import Services
from connectra.processors.registry import default_registry
from connectra.runners.daemon import Parts, Wiring, _runners
from connectra.settings import load_settings
from tests.integration.test_runners import Returns, config, count, running
from tests.polling import eventually
from tests.processes import Process, Spawn, spawn

__all__ = ["spawn"]

S = JobStatus
RUNNER = "queues-test"


async def test_higher_priority_is_claimed_first_then_the_oldest(store: JobStore) -> None:
    low = await store.create(NewJob("noop", {}, priority=-5))
    normal_old = await store.create(NewJob("noop", {}))
    high = await store.create(NewJob("noop", {}, priority=10))
    normal_new = await store.create(NewJob("noop", {}))
    claimed = [await store.claim(FIRST_TIME, RUNNER, 1) for _ in range(4)]
    assert [jobs[0].uuid for jobs in claimed] == [
        high.uuid,
        normal_old.uuid,
        normal_new.uuid,
        low.uuid,
    ]


async def test_a_claim_of_several_jobs_returns_them_in_claim_order(store: JobStore) -> None:
    for priority in (0, 3, 0, 7, 3):
        await store.create(NewJob("noop", {}, priority=priority))
    jobs = await store.claim(FIRST_TIME, RUNNER, 5)
    assert [job.priority for job in jobs] == [7, 3, 3, 0, 0]
    assert jobs[1].id < jobs[2].id


async def test_a_runner_claims_only_its_queues(store: JobStore) -> None:
    await store.create(NewJob("noop", {}, queue="reports"))
    await store.create(NewJob("noop", {}, queue="default"))
    await store.create(NewJob("noop", {}, queue="emails", priority=9))
    assert await store.claim(FIRST_TIME, RUNNER, 10, ["nothing-here"]) == []
    reports = await store.claim(FIRST_TIME, RUNNER, 10, ["reports"])
    assert [job.queue for job in reports] == ["reports"]
    rest = await store.claim(FIRST_TIME, RUNNER, 10, ["default", "emails"])
    assert [job.queue for job in rest] == ["emails", "default"]  # priority across queues


async def test_a_claim_over_several_queues_takes_the_best_jobs_of_all_of_them(
    store: JobStore,
) -> None:
    for _ in range(5):
        await store.create(NewJob("noop", {}, queue="a"))
    for _ in range(5):
        await store.create(NewJob("noop", {}, queue="b", priority=1))
    jobs = await store.claim(FIRST_TIME, RUNNER, 6, ["a", "b"])
    assert [job.queue for job in jobs] == ["b"] * 5 + ["a"]
    left = await store.claim(FIRST_TIME, RUNNER, 10, ["a", "b"])
    assert len(left) == 4, "rows read but not kept must stay claimable"


async def test_the_retry_runner_keeps_to_its_queues(store: JobStore, pool: asyncpg.Pool) -> None:
    for queue in ("a", "b"):
        await store.create(NewJob("noop", {}, queue=queue, retry_count=1))
    await pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, run_after = now() - interval '1 s'"
    )
    jobs = await store.claim(RETRY, RUNNER, 10, ["b"])
    assert [job.queue for job in jobs] == ["b"]


async def test_a_delayed_job_waits_as_scheduled_and_is_not_claimed_before_its_time(
    store: JobStore,
) -> None:
    job = await store.create(NewJob("noop", {}, delay_seconds=0.6))
    assert job.status is S.SCHEDULED
    assert job.run_after is not None
    assert abs((job.run_after - job.created_at).total_seconds() - 0.6) < 0.05
    assert await store.claim(FIRST_TIME, RUNNER, 10) == []
    assert await store.promote_due() == 0, "promoted before its time"

    async def due() -> bool:
        return bool(await store.seconds_until_due(FIRST_TIME) < 0)

    await eventually(due, within=5)
    assert await store.promote_due() == 1
    claimed = await store.claim(FIRST_TIME, RUNNER, 10)
    assert [c.uuid for c in claimed] == [job.uuid]
    assert claimed[0].run_at == job.run_at == job.run_after, "the job keeps its due time"


async def test_a_run_at_in_the_past_runs_now(store: JobStore) -> None:
    past = datetime(2020, 1, 1, tzinfo=UTC)
    job = await store.create(NewJob("noop", {}, run_at=past))
    assert job.status is S.OPEN
    assert job.run_at == past
    assert job.run_after is None
    assert len(await store.claim(FIRST_TIME, RUNNER, 10)) == 1


async def test_an_idle_runner_picks_a_delayed_job_up_within_a_second_of_its_time(
    store: JobStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A one-minute tick: only the runner's own sleep until the due time can be this quick.
    # The create tells the runner of a delayed job (as the API or the listener does); it
    # finds the job not due yet and sleeps until it is.
    idle = Returns(monkeypatch, store, "seconds_until_due")  # asked after an empty claim
    async with running(store, config(tick_interval=timedelta(minutes=1))) as (runner, _):
        await eventually(idle.happened, within=5)
        job = await store.create(NewJob("noop", {}, delay_seconds=1.5))
        runner.expect_due()
        await eventually(lambda: _done(store, job.uuid), within=10)
    done = await store.get(job.uuid)
    assert done.started_at is not None
    assert done.run_at is not None
    late = (done.started_at - done.run_at).total_seconds()
    assert 0 <= late < 1.0


async def _running(pool: asyncpg.Pool) -> bool:
    return await count(pool, "processing") > 0


async def _done(store: JobStore, uuid: object) -> bool:
    return (await store.get(uuid)).status is S.COMPLETED  # type: ignore[arg-type]


async def test_a_scheduled_job_can_be_cancelled_before_its_time(store: JobStore) -> None:
    job = await store.create(NewJob("noop", {}, delay_seconds=3600))
    cancelled = await store.cancel(job.uuid)
    assert cancelled.status is S.ABORTED


async def test_the_database_refuses_a_bad_queue_or_priority(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO jobs (job_type, priority) VALUES ('noop', 101)")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO jobs (job_type, queue) VALUES ('noop', '')")


async def test_listing_filters_by_queue_and_pages_with_a_cursor(store: JobStore) -> None:
    created = [
        await store.create(NewJob("noop", {}, queue="a" if n % 2 else "b")) for n in range(7)
    ]
    in_a = [job.uuid for job in reversed(created) if job.queue == "a"]
    first = await store.find(queues=["a"], limit=2)
    second = await store.find(queues=["a"], limit=2, after=first[-1].id)
    assert [job.uuid for job in first + second] == in_a[:4]
    assert await store.find(queues=["nothing"]) == []


async def test_a_flood_in_one_queue_does_not_starve_another(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    # QUEUES=bulk=1,urgent=1: each queue has its own runner and handler slot.
    settings = load_settings(QUEUES="bulk=1,urgent=1", TICKER_INTERVAL_SECONDS="0.05")
    groups = settings.first_time_groups()
    assert groups == [(("bulk",), 1), (("urgent",), 1)]
    for _ in range(20):
        await store.create(NewJob("sleep", {"seconds": 0.5}, queue="bulk", priority=100))
    async with runners_for(store, groups):
        await eventually(lambda: _running(pool))  # the bulk queue's one slot is taken
        urgent = await store.create(NewJob("noop", {}, queue="urgent"))
        started = time.monotonic()
        await eventually(lambda: _done(store, urgent.uuid), within=10)
        waited = time.monotonic() - started
        bulk_done = await count(pool, "completed") - 1
    assert waited < 1.0, "the urgent job waited behind the bulk queue"
    assert bulk_done <= 3, "the bulk flood finished: the test proves nothing"


@contextlib.asynccontextmanager
async def runners_for(
    store: JobStore, groups: list[tuple[tuple[str, ...] | None, int]]
) -> AsyncIterator[None]:
    """One in-process first_time runner per queue group, as the daemon builds them."""
    async with contextlib.AsyncExitStack() as stack:
        for queues, slots in groups:
            cfg = config(queues=queues, concurrency=slots, tick_interval=timedelta(seconds=0.05))
            await stack.enter_async_context(running(store, cfg))
        yield


def test_the_daemon_builds_one_runner_per_queue_with_slots_and_one_for_the_rest(
    store: JobStore,
) -> None:
    settings = load_settings(QUEUES="reports=2,default=8,misc,other", PARALLEL_JOBS="3")
    wiring = Wiring(settings, "", store, Services(), default_registry())
    runners = _runners(wiring, Parts(first_time=True, retry=True))
    described = [(r.kind.name, r.config.queues, r.config.concurrency) for r in runners]
    assert described == [
        ("first_time", ("reports",), 2),
        ("first_time", ("default",), 8),
        ("first_time", ("misc", "other"), 3),
        ("retry", ("reports", "default", "misc", "other"), 1),
    ]


async def test_a_runner_process_with_a_long_tick_starts_a_delayed_job_on_time(
    spawn: Spawn, store: JobStore
) -> None:
    runner = await spawn("jobs", "first_time", TICKER_INTERVAL_SECONDS="3600")
    await eventually(lambda: _listening(runner), within=20)
    # Its first idle wait looked up delayed jobs (there were none); a process logs no event
    # for that, so give it the time.
    await asyncio.sleep(0.3)
    job = await store.create(NewJob("noop", {}, delay_seconds=1.0))
    await eventually(lambda: _done(store, job.uuid), within=10)
    done = await store.get(job.uuid)
    assert done.started_at is not None
    assert done.run_at is not None
    assert 0 <= (done.started_at - done.run_at).total_seconds() < 1.0


async def _listening(process: Process) -> bool:
    return "listening for new jobs" in process.log_path.read_text()
