"""Leases: heartbeats, rescue of jobs whose runner died, and runners that lost their lease."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, RETRY, JobStatus, NewJob
from connectra.objectstore import ObjectStore
from connectra.processors.exporting.checkpoint import OpenUpload
from connectra.processors.registry import default_registry
from connectra.retry import RetryPolicy
from connectra.runners.maintenance import Rescuer
from connectra.runners.runner import Runner, Stopping
from connectra.settings import load_settings
from tests.integration.test_runners import config, running
from tests.polling import eventually

S = JobStatus
LEASE = timedelta(seconds=60)


async def expire(pool: asyncpg.Pool, job_id: int) -> None:
    """Make a held job look abandoned: its last heartbeat is older than the lease."""
    await pool.execute(
        "UPDATE jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1", job_id
    )


async def test_rescue_returns_a_queued_job_to_open_with_attempts_unchanged(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("noop", {}))
    [claimed] = await store.claim(FIRST_TIME, "dead-runner", 1)
    await expire(pool, claimed.id)
    assert await Rescuer(store, RetryPolicy(), LEASE).rescue_once() == 1
    back = await store.get(job.uuid)
    assert (back.status, back.attempts, back.runner_id, back.rescue_count) == (S.OPEN, 0, None, 1)
    assert back.job_response["runtime_errors"][0].startswith("ERR_RESCUED: runner dead-runner")


async def test_rescue_fails_a_running_job_and_schedules_its_retry(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("noop", {}, retry_count=2, retry_interval=30))
    [claimed] = await store.claim(FIRST_TIME, "dead-runner", 1)
    await store.start(claimed, FIRST_TIME, "dead-runner")
    await expire(pool, claimed.id)
    await Rescuer(store, RetryPolicy(), LEASE).rescue_once()
    back = await store.get(job.uuid)
    assert (back.status, back.attempts) == (S.FAILED, 1)
    assert back.run_after is not None
    assert back.completed_at is not None
    assert 29 <= (back.run_after - back.completed_at).total_seconds() <= 31
    assert back.job_response["error"]["code"] == "ERR_RESCUED"


async def test_a_rescued_job_that_completes_on_retry_keeps_the_rescue_line(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("noop", {}, retry_count=1, retry_interval=0))
    [claimed] = await store.claim(FIRST_TIME, "dead-runner", 1)
    await store.start(claimed, FIRST_TIME, "dead-runner")
    await expire(pool, claimed.id)
    await Rescuer(store, RetryPolicy(), LEASE).rescue_once()
    async with running(store, config(RETRY, concurrency=1)):
        await eventually(lambda: _status_is(store, job.uuid, S.COMPLETED))
    done = await store.get(job.uuid)
    assert (done.attempts, done.rescue_count) == (2, 1)
    [line] = done.job_response["runtime_errors"]
    assert line.startswith("ERR_RESCUED: runner dead-runner stopped heartbeating")


async def test_rescue_of_a_running_job_without_retries_left_is_failed_final(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("noop", {}))
    [claimed] = await store.claim(FIRST_TIME, "dead-runner", 1)
    await store.start(claimed, FIRST_TIME, "dead-runner")
    await expire(pool, claimed.id)
    await Rescuer(store, RetryPolicy(), LEASE).rescue_once()
    assert (await store.get(job.uuid)).status is S.FAILED_FINAL


async def test_rescue_aborts_the_multipart_upload_a_dead_runners_export_left(
    store: JobStore, pool: asyncpg.Pool, object_store: ObjectStore, s3_bucket: str
) -> None:
    job = await store.create(NewJob("export_csv_file", {"service": "contact"}))
    [claimed] = await store.claim(FIRST_TIME, "dead-runner", 1)
    await store.start(claimed, FIRST_TIME, "dead-runner")
    key = f"exports/{job.uuid}.csv"
    created = await object_store.client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    upload = OpenUpload(s3_bucket, key, created["UploadId"])
    await store.save_checkpoint(claimed, FIRST_TIME, "dead-runner", upload.to_checkpoint())
    await expire(pool, claimed.id)
    await Rescuer(store, RetryPolicy(), LEASE, object_store).rescue_once()
    assert (await store.get(job.uuid)).status is S.FAILED_FINAL
    listed = await object_store.client.list_multipart_uploads(Bucket=s3_bucket)
    assert listed.get("Uploads", []) == []


async def test_rescue_aborts_a_job_whose_cancel_was_requested(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("noop", {}, retry_count=5))
    [claimed] = await store.claim(FIRST_TIME, "dead-runner", 1)
    await store.start(claimed, FIRST_TIME, "dead-runner")
    await store.cancel(job.uuid)
    await expire(pool, claimed.id)
    await Rescuer(store, RetryPolicy(), LEASE).rescue_once()
    assert (await store.get(job.uuid)).status is S.ABORTED


async def test_a_job_with_a_fresh_heartbeat_is_left_alone(store: JobStore) -> None:
    await store.create(NewJob("noop", {}))
    await store.claim(FIRST_TIME, "live-runner", 1)
    assert await Rescuer(store, RetryPolicy(), LEASE).rescue_once() == 0


async def test_a_retry_queued_job_is_rescued_back_to_failed_and_due(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("noop", {}, retry_count=1))
    await pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, run_after = now() WHERE id = $1", job.id
    )
    [claimed] = await store.claim(RETRY, "dead-runner", 1)
    await expire(pool, claimed.id)
    await Rescuer(store, RetryPolicy(), LEASE).rescue_once()
    back = await store.get(job.uuid)
    assert (back.status, back.attempts) == (S.FAILED, 1)
    assert [j.id for j in await store.claim(RETRY, "live-runner", 1)] == [job.id]


async def test_running_runners_heartbeat_their_jobs(store: JobStore, pool: asyncpg.Pool) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 60}))
    cfg = config(heartbeat_interval=timedelta(seconds=0.1), shutdown_grace=timedelta(0))
    async with running(store, cfg):
        await eventually(lambda: _status_is(store, job.uuid, S.PROCESSING))
        await expire(pool, job.id)
        await eventually(lambda: _renewed(pool, job.id), within=5)


async def _renewed(pool: asyncpg.Pool, job_id: int) -> bool:
    """Whether the job's heartbeat is less than a second old."""
    age = await pool.fetchval("SELECT now() - heartbeat_at FROM jobs WHERE id = $1", job_id)
    return bool(age < timedelta(seconds=1))


async def test_a_held_job_the_runner_does_not_know_is_not_renewed(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    # A claim whose answer was lost (the connection dropped after the commit) leaves a job
    # held under the runner's name that no part of the runner knows; it must expire.
    orphan = await store.create(NewJob("noop", {}))
    await store.claim(FIRST_TIME, "runner-x", 1)
    await expire(pool, orphan.id)
    job = await store.create(NewJob("sleep", {"seconds": 60}))
    cfg = config(heartbeat_interval=timedelta(seconds=0.1), shutdown_grace=timedelta(0))
    runner = Runner(store, default_registry(), load_settings(), cfg, runner_id="runner-x")
    stopping = Stopping()
    task = asyncio.create_task(runner.run(stopping))
    try:
        await eventually(lambda: _status_is(store, job.uuid, S.PROCESSING))
        await expire(pool, job.id)
        await eventually(lambda: _renewed(pool, job.id), within=5)  # the job it runs
        age = await pool.fetchval("SELECT now() - heartbeat_at FROM jobs WHERE id = $1", orphan.id)
        assert age > LEASE  # the orphan is left for the rescuer
    finally:
        stopping.request()
        await asyncio.wait_for(task, 30)
    assert await Rescuer(store, RetryPolicy(), LEASE).rescue_once() == 1
    assert (await store.get(orphan.uuid)).status is S.OPEN


async def test_a_runner_stops_a_job_that_was_taken_from_it(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 60}, retry_count=1))
    cfg = config(heartbeat_interval=timedelta(seconds=0.1))
    async with running(store, cfg) as (runner, _):
        await eventually(lambda: _status_is(store, job.uuid, S.PROCESSING))
        await expire(pool, job.id)
        await Rescuer(store, RetryPolicy(), LEASE).rescue_once()
        await eventually(lambda: _no_running(runner), within=5)
    # The rescue's outcome stands: the old runner wrote nothing over it.
    back = await store.get(job.uuid)
    assert back.status is S.FAILED
    assert back.job_response["error"]["code"] == "ERR_RESCUED"


async def test_a_runner_that_cannot_heartbeat_gives_up_its_jobs_before_the_lease_ends(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 60}))
    cfg = config(heartbeat_interval=timedelta(seconds=0.1), lease=timedelta(seconds=0.8))
    async with running(store, cfg) as (runner, _):
        await eventually(lambda: _status_is(store, job.uuid, S.PROCESSING))

        async def unreachable(*_: object) -> dict[int, bool]:
            raise ConnectionResetError("database unreachable")

        monkeypatch.setattr(store, "heartbeat", unreachable)
        await eventually(lambda: _no_running(runner), within=3)


STARTS, COMPLETIONS = 0, 1  # the two halves of a status writer round's result


class FlakyRounds:
    """The status writer's statement fails `failures` times with a dropped connection: before
    it reaches the server, or after its commit (the answer lost), in rounds whose result holds
    starts or completions (`of`)."""

    def __init__(
        self,
        store: JobStore,
        monkeypatch: pytest.MonkeyPatch,
        failures: int,
        *,
        after_commit: bool,
        of: int,
    ) -> None:
        self.failures = failures
        real = store.start_and_complete

        async def flaky(*args: Any) -> tuple[dict[int, int], set[int]]:
            if self.failures and not after_commit:
                self.failures -= 1
                raise ConnectionResetError("database unreachable")
            result = await real(*args)
            if self.failures and result[of]:
                self.failures -= 1
                raise ConnectionResetError("connection lost after the commit")
            return result

        monkeypatch.setattr(store, "start_and_complete", flaky)


@pytest.mark.parametrize(
    ("failures", "after_commit"),
    [(3, False), (1, True)],
    ids=["database-down-before-the-start", "answer-lost-after-the-commit"],
)
async def test_a_start_that_fails_while_the_database_is_down_is_retried_not_left_to_the_lease(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, failures: int, after_commit: bool
) -> None:
    # The start met an unreachable database: either before it reached the server, or after
    # its commit, with the answer lost with the connection (the retry then finds the job
    # already running for this runner). Left to its lease (600 s here) the job would wait a
    # whole lease after a blip of a second or two; it must go on, and run once.
    job = await store.create(NewJob("noop", {}))
    flaky = FlakyRounds(store, monkeypatch, failures, after_commit=after_commit, of=STARTS)
    async with running(store, config(lease=timedelta(seconds=600))):
        await eventually(lambda: _status_is(store, job.uuid, S.COMPLETED), within=10)
    assert flaky.failures == 0
    done = await store.get(job.uuid)
    assert (done.attempts, done.rescue_count) == (1, 0)


async def _status_is(store: JobStore, uuid: object, status: JobStatus) -> bool:
    return (await store.get(uuid)).status is status  # type: ignore[arg-type]


async def _no_running(runner: object) -> bool:
    return not runner.executor.running  # type: ignore[attr-defined]


async def test_a_completion_committed_whose_answer_was_lost_counts_as_recorded(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The retry of the completion fails its guard (the job is completed already): that is
    # this attempt's own completion, not a lost job, and must not be reported as a failure.
    job = await store.create(NewJob("noop", {}))
    flaky = FlakyRounds(store, monkeypatch, 1, after_commit=True, of=COMPLETIONS)
    with caplog.at_level(logging.INFO, logger="connectra.runners.execution"):
        async with running(store, config(lease=timedelta(seconds=600))):
            await eventually(lambda: _status_is(store, job.uuid, S.COMPLETED), within=10)
            await eventually(lambda: _logged(caplog, "job completed"), within=5)
    assert flaky.failures == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    done = await store.get(job.uuid)
    assert (done.attempts, done.rescue_count) == (1, 0)


async def _logged(caplog: pytest.LogCaptureFixture, message: str) -> bool:
    return any(r.getMessage() == message for r in caplog.records)
