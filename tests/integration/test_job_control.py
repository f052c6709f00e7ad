"""Job control: cancel, manual retry, idempotency keys, time limits, retention, instant pickup."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from connectra.bucket_policy import BucketPolicy
from connectra.db.listener import Listener
from connectra.db.store import JobStore
from connectra.jobs import JobStatus, NewJob
from connectra.objectstore import ObjectStore
from connectra.processors.exporting.checkpoint import OpenUpload
from connectra.processors.registry import default_registry
from connectra.runners.maintenance import Cleaner
from connectra.runners.runner import Runner, Stopping
from connectra.settings import load_settings
from tests.api_client import Client, started
from tests.integration.test_runners import config, running
from tests.polling import eventually

S = JobStatus
AUTH = {"X-API-Key": "k1"}


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    async for client in started(store):
        yield client


async def status_of(store: JobStore, uuid: object) -> JobStatus:
    return (await store.get(uuid)).status  # type: ignore[arg-type]


# --- cancel -----------------------------------------------------------------------------------


async def test_cancelling_an_open_job_aborts_it_at_once(client: Client, store: JobStore) -> None:
    job = await store.create(NewJob("noop", {}))
    response = await client.post(f"/common/jobs/{job.uuid}/cancel", headers=AUTH)
    assert response.status == 200
    assert (await response.json())["data"]["status"] == "aborted"
    assert await status_of(store, job.uuid) is S.ABORTED


async def test_the_seeds_patch_form_cancels_too(client: Client, store: JobStore) -> None:
    job = await store.create(NewJob("noop", {}))
    response = await client.patch(
        f"/common/jobs/{job.uuid}", json={"status": "aborted"}, headers=AUTH
    )
    assert response.status == 200
    assert await status_of(store, job.uuid) is S.ABORTED


async def test_patch_to_any_other_status_is_refused(client: Client, store: JobStore) -> None:
    job = await store.create(NewJob("noop", {}))
    response = await client.patch(
        f"/common/jobs/{job.uuid}", json={"status": "completed"}, headers=AUTH
    )
    assert response.status == 400
    assert (await response.json())["error"].startswith("ERR_INVALID_STATUS: ")


async def test_a_queued_job_cancelled_before_it_starts_never_runs(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    first = await store.create(NewJob("sleep", {"seconds": 0.5}))
    second = await store.create(NewJob("sleep", {"seconds": 0}))
    async with running(store, config(concurrency=1)) as (runner, _):
        await eventually(lambda: _is(store, second.uuid, S.IN_QUEUE))
        await store.cancel(second.uuid)
        await eventually(lambda: _is(store, first.uuid, S.COMPLETED))
        await eventually(lambda: _true(runner.queue_depth() == runner.busy_slots() == 0))
    cancelled = await store.get(second.uuid)
    assert (cancelled.status, cancelled.attempts, cancelled.started_at) == (S.ABORTED, 0, None)


async def test_a_running_job_stops_soon_after_it_is_cancelled(
    client: Client, store: JobStore
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 60}, retry_count=3))
    cfg = config(heartbeat_interval=timedelta(seconds=0.2))
    async with running(store, cfg):
        await eventually(lambda: _is(store, job.uuid, S.PROCESSING))
        response = await client.post(f"/common/jobs/{job.uuid}/cancel", headers=AUTH)
        assert response.status == 202
        assert (await response.json())["data"]["cancel_requested_at"] is not None
        await eventually(lambda: _is(store, job.uuid, S.ABORTED), within=3)
    aborted = await store.get(job.uuid)
    assert aborted.attempts == 1
    assert aborted.job_response["messages"] == "job cancelled while running"


async def test_a_finished_job_cannot_be_cancelled(client: Client, store: JobStore) -> None:
    job = await store.create(NewJob("noop", {}))
    await store.cancel(job.uuid)
    response = await client.post(f"/common/jobs/{job.uuid}/cancel", headers=AUTH)
    assert response.status == 409
    assert (await response.json())["error"].startswith("ERR_JOB_FINISHED: ")


async def test_cancel_of_an_unknown_job_is_404(client: Client) -> None:
    url = "/common/jobs/00000000-0000-0000-0000-000000000000/cancel"
    assert (await client.post(url, headers=AUTH)).status == 404


# --- manual retry -----------------------------------------------------------------------------


async def test_a_failed_final_job_is_reopened_with_a_fresh_attempt_budget(
    client: Client, store: JobStore, pool: asyncpg.Pool
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 0, "fail_attempts": 1}))
    async with running(store, config()):
        await eventually(lambda: _is(store, job.uuid, S.FAILED_FINAL))
    response = await client.post(f"/common/jobs/{job.uuid}/retry", headers=AUTH)
    assert response.status == 200
    reopened = await store.get(job.uuid)
    assert (reopened.status, reopened.attempts, reopened.run_after) == (S.OPEN, 0, None)
    async with running(store, config()):
        await eventually(lambda: _is(store, job.uuid, S.FAILED_FINAL))
    # It ran once more (attempt 1 of a fresh budget), keeping the earlier run's error.
    rerun = await store.get(job.uuid)
    assert rerun.attempts == 1
    assert len(rerun.job_response["runtime_errors"]) == 2


async def test_only_failed_jobs_can_be_retried(client: Client, store: JobStore) -> None:
    job = await store.create(NewJob("noop", {}))
    response = await client.post(f"/common/jobs/{job.uuid}/retry", headers=AUTH)
    assert response.status == 409
    assert (await response.json())["error"].startswith("ERR_JOB_NOT_RETRYABLE: ")


# --- idempotency keys -------------------------------------------------------------------------

BODY = {"job_type": "noop", "job_data": {"n": 1}}


async def create(client: Client, key: str, body: dict[str, object]) -> tuple[int, dict[str, str]]:
    response = await client.post(
        "/common/jobs/create", json=body, headers=AUTH | {"Idempotency-Key": key}
    )
    payload = await response.json()
    return response.status, payload | {"replayed": response.headers.get("Idempotent-Replayed")}


async def test_the_same_key_and_body_return_the_original_job(
    client: Client, pool: asyncpg.Pool
) -> None:
    first_status, first = await create(client, "key-1", BODY)
    again_status, again = await create(client, "key-1", BODY)
    assert (first_status, again_status) == (201, 201)
    assert first["uuid"] == again["uuid"]
    assert (first["replayed"], again["replayed"]) == (None, "true")
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1


async def test_the_same_key_with_another_body_is_409(client: Client) -> None:
    await create(client, "key-2", BODY)
    status, body = await create(client, "key-2", {"job_type": "noop", "job_data": {"n": 2}})
    assert status == 409
    assert body["error"].startswith("ERR_IDEMPOTENCY_KEY_REUSED: ")


async def test_concurrent_requests_with_one_key_create_one_job(
    client: Client, pool: asyncpg.Pool
) -> None:
    results = await asyncio.gather(*(create(client, "key-3", BODY) for _ in range(10)))
    assert {status for status, _ in results} == {201}
    assert len({body["uuid"] for _, body in results}) == 1
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1


async def test_an_expired_key_creates_a_new_job(client: Client, pool: asyncpg.Pool) -> None:
    _, first = await create(client, "key-4", BODY)
    await pool.execute("UPDATE job_idempotency_keys SET expires_at = now() - interval '1 second'")
    _, second = await create(client, "key-4", BODY)
    assert first["uuid"] != second["uuid"]


async def test_a_malformed_key_is_400(client: Client) -> None:
    status, body = await create(client, "bad key with spaces", BODY)
    assert status == 400
    assert body["error"].startswith("ERR_INVALID_IDEMPOTENCY_KEY: ")


# --- time limits ------------------------------------------------------------------------------


async def test_a_job_past_its_hard_time_limit_fails_with_err_timeout(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await store.create(NewJob("sleep", {"seconds": 30}, retry_count=0))
    monkeypatch.setenv("JOB_TIME_LIMITS", '{"sleep": {"soft": 0.1, "hard": 0.3}}')
    settings = load_settings()
    runner = Runner(store, default_registry(), settings, config())
    stopping = Stopping()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runner.run(stopping))
        await eventually(lambda: _is(store, job.uuid, S.FAILED_FINAL), within=5)
        stopping.request()
    failed = await store.get(job.uuid)
    assert failed.job_response["error"]["code"] == "ERR_TIMEOUT"
    assert "0.3s" in failed.job_response["error"]["message"]


# --- retention --------------------------------------------------------------------------------


async def test_finished_jobs_and_their_result_files_are_deleted_after_their_ttl(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    old_export = await store.create(NewJob("export_csv_file", {"service": "contact"}))
    recent = await store.create(NewJob("noop", {}))
    running_job = await store.create(NewJob("noop", {}))
    await object_store.put_bytes(s3_bucket, "exports/old.csv", b"a\n")
    await pool.execute(
        "UPDATE jobs SET status = 'completed', completed_at = now() - interval '8 days',"
        " job_response = $2 WHERE id = $1",
        old_export.id,
        {"s3_key": "exports/old.csv", "s3_bucket": s3_bucket},
    )
    await pool.execute(
        "UPDATE jobs SET status = 'completed', completed_at = now() WHERE id = $1", recent.id
    )
    cleaner = Cleaner(
        store, object_store, timedelta(days=7), timedelta(days=7), BucketPolicy.of(s3_bucket)
    )
    assert await cleaner.clean_once() == (1, 1)
    remaining = {row["id"] for row in await pool.fetch("SELECT id FROM jobs")}
    assert remaining == {recent.id, running_job.id}
    listing = await object_store.client.list_objects_v2(Bucket=s3_bucket)
    assert listing["KeyCount"] == 0


async def test_result_files_can_expire_before_their_job(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    job = await store.create(NewJob("export_csv_file", {"service": "contact"}))
    await object_store.put_bytes(s3_bucket, "exports/x.csv", b"a\n")
    await pool.execute(
        "UPDATE jobs SET status = 'completed', completed_at = now() - interval '2 days',"
        " job_response = $2 WHERE id = $1",
        job.id,
        {"s3_key": "exports/x.csv", "s3_bucket": s3_bucket},
    )
    cleaner = Cleaner(
        store, object_store, timedelta(days=7), timedelta(days=1), BucketPolicy.of(s3_bucket)
    )
    assert await cleaner.clean_once() == (1, 0)
    kept = await store.get(job.uuid)
    assert "results_deleted_at" in kept.job_response
    assert await cleaner.clean_once() == (0, 0)


async def _begin_upload(objects: ObjectStore, bucket: str, key: str) -> str:
    """Begin a multipart upload of one part and leave it unfinished; its id."""
    created = await objects.client.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id = str(created["UploadId"])
    part = b"x" * (5 * 1024 * 1024)
    await objects.client.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=part
    )
    return upload_id


async def test_stale_uploads_under_the_export_prefix_are_aborted_unless_a_held_job_has_them(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await _begin_upload(object_store, s3_bucket, "exports/orphan.csv")
    live = await _begin_upload(object_store, s3_bucket, "exports/live.csv")
    elsewhere = await _begin_upload(object_store, s3_bucket, "other/user.csv")
    job = await store.create(NewJob("export_csv_file", {"service": "contact"}))
    checkpoint = OpenUpload(s3_bucket, "exports/live.csv", live).to_checkpoint()
    await pool.execute(
        "UPDATE jobs SET status = 'processing', runner_id = 'r', heartbeat_at = now(),"
        " checkpoint = $2 WHERE id = $1",
        job.id,
        checkpoint,
    )
    listed = await object_store.client.list_multipart_uploads(Bucket=s3_bucket)
    # moto dates every upload 2010-11-10: ages are told apart through the threshold instead.
    age = datetime.now(UTC) - listed["Uploads"][0]["Initiated"]

    def cleaner(upload_ttl: timedelta) -> Cleaner:
        policy = BucketPolicy.of(s3_bucket)
        ttl = timedelta(days=7)
        return Cleaner(
            store, object_store, ttl, ttl, policy, export_prefix="exports/", upload_ttl=upload_ttl
        )

    assert await cleaner(age + timedelta(hours=1)).abort_stale_uploads() == 0  # all young
    assert await cleaner(timedelta(hours=24)).clean_once() == (0, 0)
    listed = await object_store.client.list_multipart_uploads(Bucket=s3_bucket)
    assert sorted(upload["UploadId"] for upload in listed.get("Uploads", [])) == sorted(
        [live, elsewhere]
    )


# --- instant pickup ---------------------------------------------------------------------------


async def test_new_jobs_are_announced_to_listeners(database_url: str, store: JobStore) -> None:
    heard: list[str] = []
    connected = asyncio.Event()
    listener = Listener(database_url, heard.append, connected.set)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(listener.run(stop))
        await asyncio.wait_for(connected.wait(), 10)
        await store.create(NewJob("noop", {}))
        await eventually(lambda: _true(heard == ["open"]), within=5)
        stop.set()


async def test_the_listener_reconnects_after_its_connection_is_killed(
    database_url: str, store: JobStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle listener notices a dead connection at its next liveness check (every 15 s):
    # sooner here.
    monkeypatch.setattr(sys.modules[Listener.__module__], "LIVENESS_INTERVAL", 0.5)
    heard: list[str] = []
    connects: list[int] = []
    listener = Listener(database_url, heard.append, lambda: connects.append(1))
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(listener.run(stop))
        await eventually(lambda: _true(len(connects) == 1), within=10)
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        )
        await store.create(NewJob("noop", {}))  # this one may be missed; the reconnect wakes anyway
        await eventually(lambda: _true(len(connects) == 2), within=20)
        await store.create(NewJob("noop", {}))
        await eventually(lambda: _true(heard.count("open") >= 1), within=5)
        stop.set()


async def _is(store: JobStore, uuid: object, status: JobStatus) -> bool:
    return await status_of(store, uuid) is status


async def _true(value: bool) -> bool:
    return value
