"""Real `connectra` processes: several runners on one database, signals, bad config."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from connectra.db.store import JobStore
from connectra.jobs import NewJob
from connectra.objectstore import ObjectStore
from tests.polling import eventually
from tests.processes import Process, spawn
from tests.services import moto_process_env

__all__ = ["spawn"]  # the fixture, requested by name


async def status_count(pool: asyncpg.Pool, status: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM jobs WHERE status = $1", status))


async def test_three_runner_processes_never_run_the_same_job_twice(
    spawn: Callable[..., Awaitable[Process]], store: JobStore, pool: asyncpg.Pool
) -> None:
    total = 300
    runners = [
        await spawn("jobs", "first_time", PARALLEL_JOBS="4", JOB_IN_QUEUE_SIZE="10")
        for _ in range(3)
    ]

    async def all_listening() -> bool:
        return all(any(e.get("action") == "listen" for e in r.events()) for r in runners)

    # The jobs come once every runner is up: on a busy machine, a runner still starting
    # would find the others done with all of them (and the test would prove nothing).
    await eventually(all_listening)
    await pool.executemany(
        "INSERT INTO jobs (job_type, data) VALUES ('sleep', $1)",
        [({"seconds": 0.02},) for _ in range(total)],
    )

    async def all_done() -> bool:
        return await status_count(pool, "completed") == total

    await eventually(all_done, within=60)
    for runner in runners:
        runner.send(signal.SIGTERM)
    assert [await runner.wait(30) for runner in runners] == [0, 0, 0]

    starts = Counter(
        str(event["job_uuid"])
        for runner in runners
        for event in runner.events()
        if event.get("action") == "job_start"
    )
    assert len(starts) == total
    assert set(starts.values()) == {1}
    per_runner = [
        sum(1 for e in runner.events() if e.get("action") == "job_start") for runner in runners
    ]
    assert all(n > 0 for n in per_runner), f"a runner did no work: {per_runner}"
    assert await pool.fetchval("SELECT max(attempts) FROM jobs") == 1


async def test_sigterm_hands_queued_jobs_back_and_exits_cleanly(
    spawn: Callable[..., Awaitable[Process]], store: JobStore, pool: asyncpg.Pool
) -> None:
    jobs = [await store.create(NewJob("sleep", {"seconds": 60})) for _ in range(4)]
    runner = await spawn(
        "jobs", "first_time", PARALLEL_JOBS="1", JOB_IN_QUEUE_SIZE="5",
        SHUTDOWN_GRACE_SECONDS="1",
    )  # fmt: skip

    async def settled() -> bool:
        return (await status_count(pool, "processing"), await status_count(pool, "in_queue")) == (
            1,
            3,
        )

    await eventually(settled)
    started = time.monotonic()
    runner.send(signal.SIGTERM)
    assert await runner.wait(20) == 0
    assert time.monotonic() - started < 10
    for job in jobs:
        back = await store.get(job.uuid)
        assert (back.status, back.attempts, back.runner_id) == ("open", 0, None)


async def test_a_second_signal_stops_at_once_despite_a_long_grace_period(
    spawn: Callable[..., Awaitable[Process]], store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 120}))
    runner = await spawn("jobs", "first_time", SHUTDOWN_GRACE_SECONDS="300")

    async def running() -> bool:
        return await status_count(pool, "processing") == 1

    await eventually(running)
    runner.send(signal.SIGTERM)
    await asyncio.sleep(0.5)  # the point: the process keeps running after one signal
    assert runner.proc.returncode is None, "the first signal must wait for the grace period"
    runner.send(signal.SIGINT)
    assert await runner.wait(15) == 0
    back = await store.get(job.uuid)
    assert (back.status, back.attempts) == ("open", 0)


async def test_invalid_configuration_is_one_line_and_exit_code_2(
    spawn: Callable[..., Awaitable[Process]],
) -> None:
    runner = await spawn("jobs", "first_time", JOB_IN_QUEUE_SIZE="lots")
    assert await runner.wait(30) == 2
    lines = runner.log_lines()
    assert len(lines) == 1
    assert lines[0].startswith("invalid configuration: JOB_IN_QUEUE_SIZE: ")
    assert "Traceback" not in runner.log_path.read_text()


async def test_runner_refuses_an_unmigrated_database(
    spawn: Callable[..., Awaitable[Process]], empty_database_url: str
) -> None:
    runner = await spawn("jobs", "first_time", DATABASE_URL=empty_database_url)
    assert await runner.wait(30) == 1
    assert "ERR_SCHEMA_OUTDATED" in runner.log_path.read_text()
    listing = await spawn("jobs", "list", DATABASE_URL=empty_database_url)
    assert await listing.wait(30) == 1
    assert "ERR_SCHEMA_OUTDATED" in listing.log_path.read_text()
    migrate = await spawn("migrate", DATABASE_URL=empty_database_url)
    assert await migrate.wait(30) == 0
    assert "applied: 0001_jobs" in migrate.output()


async def test_operator_commands_create_list_and_show_jobs(
    spawn: Callable[..., Awaitable[Process]],
) -> None:
    create = await spawn(
        "jobs", "create", "sleep", "--data", '{"seconds": 0}', "--retry-count", "2"
    )
    assert await create.wait(30) == 0
    created = json.loads(create.output())
    assert (created["status"], created["retry_count"], created["data"]) == (
        "open",
        2,
        {"seconds": 0.0, "fail_attempts": 0},
    )

    listing = await spawn("jobs", "list", "--status", "open", "--type", "sleep", "--json")
    assert await listing.wait(30) == 0
    assert [job["uuid"] for job in json.loads(listing.output())] == [created["uuid"]]

    show = await spawn("jobs", "show", created["uuid"])
    assert await show.wait(30) == 0
    assert json.loads(show.output())["uuid"] == created["uuid"]


async def test_operator_create_refuses_invalid_job_data_with_its_code(
    spawn: Callable[..., Awaitable[Process]],
) -> None:
    create = await spawn("jobs", "create", "sleep", "--data", '{"seconds": -1}')
    assert await create.wait(30) == 1
    assert create.log_path.read_text().startswith("ERR_INVALID_JOB_DATA: job_data.seconds")


async def test_without_database_url_commands_use_the_embedded_postgresql(
    spawn: Callable[..., Awaitable[Process]], tmp_path: Path
) -> None:
    env = {"DATABASE_URL": "", "EMBEDDED_DATA_DIR": str(tmp_path / "pgdata")}
    migrate = await spawn("migrate", **env)
    assert await migrate.wait(60) == 0, migrate.log_path.read_text()
    assert "embedded PostgreSQL ready" in migrate.log_path.read_text()
    create = await spawn("jobs", "create", "noop", **env, LOG_LEVEL="ERROR")
    assert await create.wait(60) == 0
    listing = await spawn("jobs", "list", "--json", **env, LOG_LEVEL="ERROR")
    assert await listing.wait(60) == 0
    assert len(json.loads(listing.output())) == 1


async def test_a_runner_with_a_long_tick_starts_a_new_job_at_once(
    spawn: Callable[..., Awaitable[Process]], store: JobStore, pool: asyncpg.Pool
) -> None:
    runner = await spawn(
        "jobs", "first_time", TICKER_INTERVAL_SECONDS="", TICKER_INTERVAL_MINUTES="5"
    )

    async def listening() -> bool:
        return any(e.get("action") == "listen" for e in runner.events())

    await eventually(listening)
    job = await store.create(NewJob("noop", {}))
    created = time.monotonic()

    async def done() -> bool:
        return (await store.get(job.uuid)).status == "completed"

    await eventually(done, within=5)
    assert time.monotonic() - created < 2
    runner.send(signal.SIGTERM)
    assert await runner.wait(20) == 0


async def test_a_killed_runners_job_is_rescued_by_another_runner(
    spawn: Callable[..., Awaitable[Process]], store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 60}, retry_count=1, retry_interval=0))
    fast_lease = {"HEARTBEAT_INTERVAL_SECONDS": "0.2", "LEASE_SECONDS": "1"}
    doomed = await spawn("jobs", "first_time", **fast_lease)

    async def running() -> bool:
        return (await store.get(job.uuid)).status == "processing"

    await eventually(running)
    doomed.send(signal.SIGKILL)
    await doomed.wait(10)
    survivor = await spawn("jobs", "retry", **fast_lease, SHUTDOWN_GRACE_SECONDS="1")

    async def retried_elsewhere() -> bool:
        current = await store.get(job.uuid)
        return current.status == "retrying" and current.runner_id is not None

    await eventually(retried_elsewhere, within=15)
    rescued = await store.get(job.uuid)
    assert rescued.rescue_count == 1
    assert rescued.attempts == 2
    assert any("ERR_RESCUED" in line for line in rescued.job_response["runtime_errors"])
    survivor.send(signal.SIGTERM)
    assert await survivor.wait(20) == 0


# Wide enough rows that the first COPY range (200,000 rows) fills several 8 MiB parts.
EXPORT_ROWS = """
INSERT INTO contacts (uuid, first_name, last_name, email, title, country, city)
SELECT gen_random_uuid(), 'First ' || i, md5(i::text), 'user' || i || '@example.com',
       'Engineer', 'US', md5((i * 7)::text) || md5(i::text)
FROM generate_series(1, $1) AS i
"""


async def test_an_export_killed_mid_upload_leaves_no_upload_once_rescued_and_retried(
    spawn: Callable[..., Awaitable[Process]],
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    await pool.execute(EXPORT_ROWS, 220_000)
    vql = {"select_columns": ["id", "first_name", "last_name", "email", "title", "city"]}
    data = {"service": "contact", "vql": vql}
    job = await store.create(NewJob("export_csv_file", data, retry_count=1, retry_interval=0))
    key = f"exports/{job.uuid}.csv"
    env = {
        **moto_process_env(s3_endpoint, s3_bucket),
        "S3_UPLOAD_FILE_PATH_PRIFIX": "exports",
        "ELASTICSEARCH_URL": "",
        "HEARTBEAT_INTERVAL_SECONDS": "0.2",
        "LEASE_SECONDS": "1",
    }

    async def copying() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND state = 'active'"
                " AND query LIKE 'COPY (%'"
            )
        )

    async def uploads() -> list[dict[str, Any]]:
        listed = await object_store.client.list_multipart_uploads(Bucket=s3_bucket, Prefix=key)
        return list(listed.get("Uploads", []))

    async def a_part_is_sent() -> bool:
        for upload in await uploads():
            parts = await object_store.client.list_parts(
                Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"]
            )
            if parts.get("Parts"):
                return True
        return False

    doomed = await spawn("jobs", "first_time", **env)
    async with pool.acquire() as locker:
        held = locker.transaction()
        await held.start()
        # Queued behind the first range's COPY: the export stops before its second range.
        await eventually(copying)
        lock = asyncio.create_task(locker.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE"))
        await eventually(a_part_is_sent)
        await asyncio.wait_for(lock, 30)
        doomed.send(signal.SIGKILL)
        await doomed.wait(10)
        left = await uploads()
        assert len(left) == 1, "the killed export left its multipart upload behind"
        await held.rollback()

    survivor = await spawn("jobs", "retry", **env, SHUTDOWN_GRACE_SECONDS="1")

    async def completed() -> bool:
        return (await store.get(job.uuid)).status == "completed"

    await eventually(completed, within=60)
    survivor.send(signal.SIGTERM)
    assert await survivor.wait(20) == 0
    done = await store.get(job.uuid)
    assert (done.attempts, done.rescue_count) == (2, 1)
    assert done.job_response["number_records_processed"] == 220_000
    assert done.job_response["runtime_errors"][0].startswith("ERR_RESCUED: ")
    assert await uploads() == []
    head = await object_store.client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] > 3 * 8 * 1024 * 1024


async def test_operator_cancel_and_requeue(
    spawn: Callable[..., Awaitable[Process]], store: JobStore, pool: asyncpg.Pool
) -> None:
    waiting = await store.create(NewJob("noop", {}))
    cancel = await spawn("jobs", "cancel", str(waiting.uuid), LOG_LEVEL="ERROR")
    assert await cancel.wait(30) == 0
    assert json.loads(cancel.output())["status"] == "aborted"

    again = await spawn("jobs", "cancel", str(waiting.uuid), LOG_LEVEL="ERROR")
    assert await again.wait(30) == 1
    assert again.log_path.read_text().startswith("ERR_JOB_FINISHED: ")

    failed = await store.create(NewJob("noop", {}))
    await pool.execute(
        "UPDATE jobs SET status = 'failed_final', attempts = 1 WHERE id = $1", failed.id
    )
    retry = await spawn("jobs", "requeue", str(failed.uuid), LOG_LEVEL="ERROR")
    assert await retry.wait(30) == 0
    reopened = await store.get(failed.uuid)
    assert (reopened.status, reopened.attempts) == ("open", 0)
