"""Jobs touch only S3_BUCKET, S3_ALLOWED_BUCKETS and keys under S3_ALLOWED_PREFIXES: refused at
create (API), again when they run (a row inserted in SQL), for download URLs, and by retention.
Real PostgreSQL, the real API, a real runner and a moto S3 server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, JobStatus
from connectra.objectstore import ObjectStore
from connectra.processors.base import Services
from connectra.processors.registry import default_registry
from connectra.runners.maintenance import Cleaner
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.settings import load_settings
from tests.api_client import Client, started
from tests.polling import eventually
from tests.services import _remove_bucket, bucket_keys

AUTH = {"X-API-Key": "k1"}
# One bad row: an import of it writes `hr/salaries.failed.csv` next to it.
SALARIES = b"uuid,first_name\nnot-a-uuid,Eve\n"
EXPORT_DATA = {"service": "contact", "vql": {"select_columns": ["first_name"]}}


@pytest.fixture
async def private_bucket(object_store: ObjectStore) -> AsyncIterator[str]:
    """A bucket jobs must never touch, holding `hr/salaries.csv`."""
    name = f"private-{uuid.uuid4().hex}"
    await object_store.client.create_bucket(Bucket=name)
    await object_store.put_bytes(name, "hr/salaries.csv", SALARIES)
    yield name
    await _remove_bucket(object_store.client, name)


async def api(store: JobStore, objects: ObjectStore, **settings: object) -> AsyncIterator[Client]:
    """The API with key `k1` and these settings."""
    async for client in started(store, objects, **settings):
        yield client


async def create(client: Client, job_type: str, job_data: dict[str, Any]) -> tuple[int, str]:
    """POST a job; the status and the error code (or "")."""
    body = {"job_type": job_type, "job_data": job_data}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    answer = await response.json()
    return response.status, str(answer.get("error", "")).split(":")[0]


# -- refused at create ---------------------------------------------------------------------------


async def test_an_import_or_export_naming_another_bucket_is_refused_at_create(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    private_bucket: str,
) -> None:
    async for client in api(store, object_store, S3_BUCKET=s3_bucket):
        imported = {"s3_key": "hr/salaries.csv", "s3_bucket": private_bucket}
        exported = EXPORT_DATA | {"s3_bucket": private_bucket}
        assert await create(client, "insert_csv_file", imported) == (403, "ERR_BUCKET_NOT_ALLOWED")
        assert await create(client, "export_csv_file", exported) == (403, "ERR_BUCKET_NOT_ALLOWED")
        # S3_BUCKET itself is allowed, named or by default.
        default = {"s3_key": "uploads/a.csv", "s3_bucket": s3_bucket}
        assert await create(client, "insert_csv_file", default) == (201, "")
        assert await create(client, "export_csv_file", EXPORT_DATA) == (201, "")
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 2


async def test_only_the_buckets_listed_besides_s3_bucket_are_allowed(
    store: JobStore, object_store: ObjectStore, s3_bucket: str, private_bucket: str
) -> None:
    settings = {"S3_BUCKET": s3_bucket, "S3_ALLOWED_BUCKETS": f"imports-x,{private_bucket}"}
    async for client in api(store, object_store, **settings):
        listed = {"s3_key": "hr/salaries.csv", "s3_bucket": private_bucket}
        assert await create(client, "insert_csv_file", listed) == (201, "")
        other = {"s3_key": "hr/salaries.csv", "s3_bucket": "imports-y"}
        assert await create(client, "insert_csv_file", other) == (403, "ERR_BUCKET_NOT_ALLOWED")


async def test_keys_outside_the_allowed_prefixes_are_refused_at_create(
    store: JobStore, object_store: ObjectStore, s3_bucket: str
) -> None:
    settings = {"S3_BUCKET": s3_bucket, "S3_ALLOWED_PREFIXES": "uploads/,imports/"}
    async for client in api(store, object_store, **settings):
        for key in ("hr/salaries.csv", "uploads/../hr/salaries.csv", "uploadsx/a.csv"):
            answer = await create(client, "insert_csv_file", {"s3_key": key})
            assert answer == (403, "ERR_KEY_NOT_ALLOWED"), key
        assert await create(client, "insert_csv_file", {"s3_key": "imports/a.csv"}) == (201, "")


async def test_a_schedule_naming_another_bucket_is_refused(
    store: JobStore, object_store: ObjectStore, s3_bucket: str, private_bucket: str
) -> None:
    async for client in api(store, object_store, S3_BUCKET=s3_bucket):
        schedule = {
            "name": "nightly",
            "cron": "0 3 * * *",
            "job_type": "export_csv_file",
            "job_data": EXPORT_DATA | {"s3_bucket": private_bucket},
        }
        response = await client.post("/common/schedules", json=schedule, headers=AUTH)
        assert response.status == 403
        assert (await response.json())["error"].startswith("ERR_BUCKET_NOT_ALLOWED: ")


# -- checked again when the job runs -------------------------------------------------------------


async def insert_in_sql(pool: asyncpg.Pool, job_type: str, data: dict[str, Any]) -> uuid.UUID:
    """A job row written straight into the table, as no check of ours would let it in."""
    job_uuid: uuid.UUID = await pool.fetchval(
        "INSERT INTO jobs (job_type, data) VALUES ($1, $2) RETURNING uuid", job_type, data
    )
    return job_uuid


async def run_until_finished(
    store: JobStore, objects: ObjectStore, job_uuid: uuid.UUID, **settings: object
) -> dict[str, Any]:
    """Run a first_time runner (with a real object store) until the job ends; its response."""
    config = load_settings(TICKER_INTERVAL_SECONDS=0.05, **settings)
    runner = Runner(
        store,
        default_registry(),
        config,
        RunnerConfig.from_settings(config, FIRST_TIME, 1),
        services=Services(pool=store.pool, objects=objects),
    )
    stopping = Stopping()
    task = asyncio.create_task(runner.run(stopping))
    try:

        async def finished() -> bool:
            status = (await store.get(job_uuid)).status
            return status in {JobStatus.COMPLETED, JobStatus.FAILED_FINAL}

        await eventually(finished)
    finally:
        stopping.request()
        await asyncio.wait_for(task, 30)
    job = await store.get(job_uuid)
    assert job.status is JobStatus.FAILED_FINAL, job.job_response
    return job.job_response


async def test_an_import_row_naming_another_bucket_fails_at_run_without_touching_it(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    private_bucket: str,
) -> None:
    data = {"s3_key": "hr/salaries.csv", "s3_bucket": private_bucket}
    job_uuid = await insert_in_sql(pool, "insert_csv_file", data)
    response = await run_until_finished(store, object_store, job_uuid, S3_BUCKET=s3_bucket)
    assert response["error"]["code"] == "ERR_BUCKET_NOT_ALLOWED"
    assert response["error"]["details"]["transient"] is False
    assert await bucket_keys(object_store, private_bucket) == ["hr/salaries.csv"]  # no failed rows
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0


async def test_an_export_row_naming_another_bucket_fails_at_run_without_writing_there(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    private_bucket: str,
) -> None:
    data = EXPORT_DATA | {"s3_bucket": private_bucket}
    job_uuid = await insert_in_sql(pool, "export_csv_file", data)
    response = await run_until_finished(store, object_store, job_uuid, S3_BUCKET=s3_bucket)
    assert response["error"]["code"] == "ERR_BUCKET_NOT_ALLOWED"
    assert await bucket_keys(object_store, private_bucket) == ["hr/salaries.csv"]


async def test_an_import_created_before_the_prefixes_were_set_fails_at_run(
    store: JobStore, pool: asyncpg.Pool, object_store: ObjectStore, s3_bucket: str
) -> None:
    await object_store.put_bytes(s3_bucket, "hr/salaries.csv", SALARIES)
    job_uuid = await insert_in_sql(pool, "insert_csv_file", {"s3_key": "hr/salaries.csv"})
    response = await run_until_finished(
        store, object_store, job_uuid, S3_BUCKET=s3_bucket, S3_ALLOWED_PREFIXES="uploads/"
    )
    assert response["error"]["code"] == "ERR_KEY_NOT_ALLOWED"
    assert await bucket_keys(object_store, s3_bucket) == ["hr/salaries.csv"]


# -- download URLs and retention -----------------------------------------------------------------


async def completed_export(
    pool: asyncpg.Pool, bucket: str, key: str, days_ago: float = 0
) -> uuid.UUID:
    """A completed export whose response names this file (as an older export's may)."""
    job_uuid = await insert_in_sql(pool, "export_csv_file", EXPORT_DATA)
    await pool.execute(
        "UPDATE jobs SET status = 'completed', job_response = $2,"
        " completed_at = now() - $3::double precision * interval '1 day' WHERE uuid = $1",
        job_uuid,
        {"s3_key": key, "s3_bucket": bucket},
        days_ago,
    )
    return job_uuid


async def download_error(client: Client, job_uuid: uuid.UUID) -> tuple[int, str]:
    """GET the download URL; the status and the error code (or "")."""
    response = await client.get(f"/common/jobs/{job_uuid}/download-url", headers=AUTH)
    answer = await response.json()
    return response.status, str(answer.get("error", "")).split(":")[0]


async def test_download_url_is_refused_for_a_file_outside_the_allowed_buckets_or_prefixes(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    private_bucket: str,
) -> None:
    elsewhere = await completed_export(pool, private_bucket, "hr/salaries.csv")
    outside = await completed_export(pool, s3_bucket, "hr/salaries.csv")
    inside = await completed_export(pool, s3_bucket, "uploads/export.csv")
    settings = {"S3_BUCKET": s3_bucket, "S3_ALLOWED_PREFIXES": "uploads/"}
    async for client in api(store, object_store, **settings):
        assert await download_error(client, elsewhere) == (403, "ERR_BUCKET_NOT_ALLOWED")
        assert await download_error(client, outside) == (403, "ERR_KEY_NOT_ALLOWED")
        assert await download_error(client, inside) == (200, "")


async def test_download_url_of_an_export_whose_file_retention_deleted_is_410(
    store: JobStore, pool: asyncpg.Pool, object_store: ObjectStore, s3_bucket: str
) -> None:
    await object_store.put_bytes(s3_bucket, "uploads/old.csv", b"first_name\nAda\n")
    job_uuid = await completed_export(pool, s3_bucket, "uploads/old.csv", days_ago=2)
    policy = load_settings(S3_BUCKET=s3_bucket).bucket_policy()
    cleaner = Cleaner(store, object_store, timedelta(days=7), timedelta(days=1), policy)
    assert await cleaner.clean_once() == (1, 0)
    assert await bucket_keys(object_store, s3_bucket) == []
    async for client in api(store, object_store, S3_BUCKET=s3_bucket):
        response = await client.get(f"/common/jobs/{job_uuid}/download-url", headers=AUTH)
        assert response.status == 410
        assert (await response.json())["error"].startswith("ERR_FILE_EXPIRED: ")


async def test_retention_never_deletes_outside_the_allowed_buckets(
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    private_bucket: str,
) -> None:
    await completed_export(pool, private_bucket, "hr/salaries.csv", days_ago=2)
    policy = load_settings(S3_BUCKET=s3_bucket).bucket_policy()
    cleaner = Cleaner(store, object_store, timedelta(days=7), timedelta(days=1), policy)
    assert await cleaner.clean_once() == (0, 0)
    assert await bucket_keys(object_store, private_bucket) == ["hr/salaries.csv"]
