"""Requests the OpenAPI fuzzing (`test_openapi.py`) found answered with a 500 or wrongly
accepted; each now answers with its documented 400 or 404, and leaves nothing broken behind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectra.db.store import JobStore
from tests.api_client import Client, started
from tests.services import moto_object_store

AUTH = {"X-API-Key": "k1"}


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    """The API with a bucket and an object store that presigns (it is never called)."""
    async with moto_object_store("http://127.0.0.1:9") as objects:
        async for client in started(store, objects, S3_BUCKET="b"):
            yield client


async def error_of(client: Client, method: str, path: str, **kwargs: object) -> tuple[int, str]:
    """The status and the error code of an answer."""
    response = await client.request(method, path, headers=AUTH, **kwargs)
    body = await response.json()
    return response.status, body["error"].split(":")[0]


@pytest.mark.parametrize("expires_in", ["%C2%B2", "%D9%A1%D9%A2", "%EF%BC%91", "%2B5", "5%0A"])
async def test_expires_in_takes_ascii_digits_only(client: Client, expires_in: str) -> None:
    # '²' passed `str.isdigit` and then failed in `int`: a 500.
    path = f"/common/upload-url?filename=a.csv&expires_in={expires_in}"
    assert await error_of(client, "GET", path) == (400, "ERR_INVALID_EXPIRES_IN")


async def test_expires_in_of_ascii_digits_is_taken(client: Client) -> None:
    response = await client.get("/common/upload-url?filename=a.csv&expires_in=060", headers=AUTH)
    assert response.status == 200
    assert (await response.json())["expires_in"] == 60
    long = await client.get(
        f"/common/upload-url?filename=a.csv&expires_in={'9' * 40}", headers=AUTH
    )
    assert long.status == 400


async def test_a_file_name_with_a_trailing_newline_is_refused(client: Client) -> None:
    path = "/common/upload-url?filename=a.csv%0A"
    assert await error_of(client, "GET", path) == (400, "ERR_INVALID_FILENAME")


async def test_a_cron_expression_that_never_fires_is_refused(client: Client) -> None:
    # It used to be stored, then every answer showing it (its next tick) was a 500.
    body = {"name": "feb31", "cron": "0 0 31 2 *", "job_type": "noop"}
    assert await error_of(client, "POST", "/common/schedules", json=body) == (
        400,
        "ERR_INVALID_SCHEDULE",
    )
    listed = await client.get("/common/schedules", headers=AUTH)
    assert (listed.status, (await listed.json())["data"]) == (200, [])
    leap = {"name": "feb29", "cron": "0 0 29 2 *", "job_type": "noop"}
    assert (await client.post("/common/schedules", json=leap, headers=AUTH)).status == 201


async def test_a_schedule_name_with_a_trailing_newline_is_refused(client: Client) -> None:
    # The check let it through, the database's CHECK did not: a 500.
    body = {"name": "nap\n", "cron": "* * * * *", "job_type": "noop"}
    assert await error_of(client, "POST", "/common/schedules", json=body) == (
        400,
        "ERR_INVALID_SCHEDULE",
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/common/schedules/a%00b"),
        ("POST", "/common/schedules/%00/pause"),
        ("POST", "/common/schedules/nap%0A/resume"),
        ("DELETE", "/common/schedules/a%20b"),
    ],
)
async def test_a_schedule_name_no_schedule_can_have_is_not_found(
    client: Client, method: str, path: str
) -> None:
    # A NUL reached PostgreSQL, which refused it: a 500.
    assert await error_of(client, method, path) == (404, "ERR_SCHEDULE_NOT_FOUND")


async def test_a_queue_name_with_a_trailing_newline_is_refused(client: Client) -> None:
    # It was stored: a job in a queue no runner serves.
    body = {"job_type": "noop", "job_data": {}, "queue": "default\n"}
    assert await error_of(client, "POST", "/common/jobs/create", json=body) == (
        400,
        "ERR_INVALID_QUEUE",
    )
    assert await error_of(client, "POST", "/common/jobs", json={"queue": "nap\n"}) == (
        400,
        "ERR_INVALID_QUEUE",
    )


@pytest.mark.parametrize(
    "run_at",
    [
        "9999-12-31T23:59:59-12:00",  # no UTC value: a 500
        "0001-01-01T00:00:00+14:00",  # likewise
        "0001-01-01",  # stored as -infinity, then every answer showing it was a 500
        "1969-12-31T23:59:59Z",
    ],
)
async def test_a_run_at_outside_1970_to_9999_is_refused(client: Client, run_at: str) -> None:
    body = {"job_type": "noop", "job_data": {}, "run_at": run_at}
    assert await error_of(client, "POST", "/common/jobs/create", json=body) == (
        400,
        "ERR_INVALID_RUN_AT",
    )
    listed = await client.post("/common/jobs", json={}, headers=AUTH)
    assert (listed.status, (await listed.json())["data"]) == (200, [])


async def test_a_run_at_within_the_range_is_taken(client: Client) -> None:
    for run_at in ("1970-01-01T00:00:00Z", "9998-12-31T23:59:59-12:00"):
        body = {"job_type": "noop", "job_data": {}, "run_at": run_at}
        response = await client.post("/common/jobs/create", json=body, headers=AUTH)
        assert response.status == 201, await response.text()
    listed = await client.post("/common/jobs", json={}, headers=AUTH)
    assert len((await listed.json())["data"]) == 2


@pytest.mark.parametrize("body", [b"\n", b" ", b"\r\n\t"])
async def test_a_body_of_whitespace_is_not_json(client: Client, body: bytes) -> None:
    # Only an empty body is `{}`; whitespace was read as one.
    assert await error_of(client, "POST", "/common/jobs", data=body) == (400, "ERR_INVALID_JSON")
    empty = await client.post("/common/jobs", data=b"", headers=AUTH)
    assert empty.status == 200
