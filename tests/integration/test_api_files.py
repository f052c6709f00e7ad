"""Presigned upload and download URLs, used with a plain HTTP client against real S3 (moto)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.jobs import NewJob
from connectra.objectstore import ObjectStore
from tests.api_client import Client, started

AUTH = {"X-API-Key": "k1"}


@pytest.fixture
async def client(
    store: JobStore,
    object_store: ObjectStore,
    s3_bucket: str,
) -> AsyncIterator[Client]:
    async for client in started(
        store, object_store, S3_BUCKET=s3_bucket, PRESIGNED_URL_EXPIRY_SECONDS=600
    ):
        yield client


async def test_upload_url_accepts_a_plain_put_of_the_csv(
    client: Client,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    response = await client.get("/common/upload-url?filename=contacts.csv", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["s3_key"].startswith("uploads/")
    assert body["s3_key"].endswith("/contacts.csv")
    assert (body["s3_bucket"], body["expires_in"], body["success"]) == (s3_bucket, 600, True)

    async with aiohttp.ClientSession() as http:
        put = await http.put(
            body["upload_url"], data=b"uuid,email\n", headers={"Content-Type": "text/csv"}
        )
        assert put.status == 200, await put.text()
    stored = [c async for c in object_store.iter_object(s3_bucket, body["s3_key"])]
    assert b"".join(stored) == b"uuid,email\n"


async def test_two_uploads_of_the_same_file_name_get_different_keys(client: Client) -> None:
    keys = set()
    for _ in range(2):
        response = await client.get("/common/upload-url?filename=contacts.csv", headers=AUTH)
        keys.add((await response.json())["s3_key"])
    assert len(keys) == 2


@pytest.mark.parametrize("filename", ["", "../etc/passwd", "a/b.csv", "x" * 300, ".hidden"])
async def test_upload_url_refuses_a_file_name_that_is_not_plain(
    client: Client, filename: str
) -> None:
    response = await client.get("/common/upload-url", params={"filename": filename}, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"].startswith("ERR_INVALID_FILENAME: ")


async def test_upload_url_needs_an_api_key(client: Client) -> None:
    response = await client.get("/common/upload-url?filename=a.csv")
    assert response.status == 401


async def test_upload_url_without_a_bucket_is_503(
    store: JobStore, object_store: ObjectStore
) -> None:
    async for client in started(store, object_store):
        response = await client.get("/common/upload-url?filename=a.csv", headers=AUTH)
        assert response.status == 503
        assert (await response.json())["error"].startswith("ERR_S3_BUCKET_NOT_CONFIGURED: ")


async def completed_export(pool: asyncpg.Pool, store: JobStore, bucket: str, key: str) -> str:
    job = await store.create(NewJob("export_csv_file", {"service": "contact"}))
    await pool.execute(
        "UPDATE jobs SET status = 'completed', job_response = $2 WHERE id = $1",
        job.id,
        {"s3_key": key, "s3_bucket": bucket},
    )
    return str(job.uuid)


async def test_download_url_serves_a_completed_export(
    client: Client,
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await object_store.put_bytes(s3_bucket, "uploads/export.csv", b"first_name\nAda\n")
    uuid = await completed_export(pool, store, s3_bucket, "uploads/export.csv")
    response = await client.get(f"/common/jobs/{uuid}/download-url?expires_in=60", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["s3_key"], body["expires_in"]) == ("uploads/export.csv", 60)
    async with aiohttp.ClientSession() as http:
        got = await http.get(body["download_url"])
        assert got.status == 200
        assert await got.read() == b"first_name\nAda\n"


async def test_download_url_of_an_unfinished_or_non_export_job_is_409(
    client: Client, store: JobStore
) -> None:
    for job_type in ("export_csv_file", "noop"):
        job = await store.create(NewJob(job_type, {}))
        response = await client.get(f"/common/jobs/{job.uuid}/download-url", headers=AUTH)
        assert response.status == 409
        assert (await response.json())["error"].startswith("ERR_EXPORT_NOT_READY: ")


async def test_download_url_of_an_unknown_job_is_404(client: Client) -> None:
    url = "/common/jobs/00000000-0000-0000-0000-000000000000/download-url"
    response = await client.get(url, headers=AUTH)
    assert response.status == 404


@pytest.mark.parametrize("expires_in", ["0", "601", "-5", "soon"])
async def test_download_url_expiry_must_be_within_the_configured_maximum(
    client: Client,
    store: JobStore,
    pool: asyncpg.Pool,
    s3_bucket: str,
    expires_in: str,
) -> None:
    uuid = await completed_export(pool, store, s3_bucket, "uploads/x.csv")
    response = await client.get(
        f"/common/jobs/{uuid}/download-url", params={"expires_in": expires_in}, headers=AUTH
    )
    assert response.status == 400
    assert (await response.json())["error"].startswith("ERR_INVALID_EXPIRES_IN: ")
