"""The HTTP API against a real PostgreSQL: the seed's endpoints, bodies and error codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectra.api.app import create_app
from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, Job, JobStatus, NewJob
from connectra.processors.registry import default_registry
from connectra.settings import Settings, load_settings

Client = TestClient[web.Request, web.Application]
StartApi = Callable[..., Awaitable[Client]]

AUTH = {"X-API-Key": "k1"}
SECOND_KEY = {"X-API-Key": "k2"}
MAX_BODY = 2048

SEED_INSERT_BODY = {
    "job_type": "insert_csv_file",
    "job_data": {"s3_key": "uploads/contacts.csv", "s3_bucket": "my-bucket"},
    "retry_count": 3,
}
SEED_EXPORT_BODY = {
    "job_type": "export_csv_file",
    "job_data": {
        "s3_bucket": "my-bucket",
        "service": "contact",
        "vql": {
            "where": {"keyword_match": {"must": {"country": ["USA"]}}},
            "select_columns": ["first_name", "last_name", "email", "title"],
            "order_by": [{"order_by": "uuid", "order_direction": "desc"}],
            "limit": 500,
        },
    },
}


def api_settings(**overrides: object) -> Settings:
    """Two keys and a small body limit, whatever the environment says."""
    values: dict[str, object] = {
        "API_KEYS": "k1,k2",
        "API_MAX_BODY_BYTES": MAX_BODY,
        "S3_ALLOWED_BUCKETS": "my-bucket",  # the seed's examples name it
    }
    return load_settings(**(values | overrides))


@pytest.fixture
async def start_api(store: JobStore) -> AsyncIterator[StartApi]:
    """Start the API on a test server; every client is closed afterwards."""
    clients: list[Client] = []

    async def start(
        *,
        settings: Settings | None = None,
        on_job_created: Callable[[Job], None] | None = None,
        job_store: JobStore | None = None,
    ) -> Client:
        app = create_app(
            job_store or store, default_registry(), settings or api_settings(), on_job_created
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(start_api: StartApi) -> Client:
    """The API with keys k1 and k2."""
    return await start_api()


async def expect_error(response: aiohttp.ClientResponse, status: int, code: str) -> str:
    """Assert the one error shape and return the message."""
    body = await response.json()
    assert response.status == status, body
    assert set(body) == {"error", "success"}
    assert body["success"] is False
    assert body["error"].startswith(f"{code}: "), body
    message: str = body["error"].removeprefix(f"{code}: ")
    assert message
    return message


async def post_raw(client: Client, path: str, data: bytes | str) -> aiohttp.ClientResponse:
    """POST a raw body with the JSON content type and a valid key."""
    headers = AUTH | {"Content-Type": "application/json"}
    return await client.post(path, data=data, headers=headers)


async def list_uuids(client: Client, body: dict[str, Any]) -> list[str]:
    """The uuids a list request returns, in order."""
    response = await client.post("/common/jobs", json=body, headers=AUTH)
    assert response.status == 200, await response.text()
    payload = await response.json()
    assert payload["success"] is True
    return [job["uuid"] for job in payload["data"]]


async def make_jobs(store: JobStore, count: int, job_type: str = "noop") -> list[Job]:
    """Create jobs oldest first."""
    return [await store.create(NewJob(job_type, {"n": n})) for n in range(count)]


def newest_first(jobs: Sequence[Job]) -> list[str]:
    """Uuids in the order the list endpoint returns them."""
    return [str(job.uuid) for job in sorted(jobs, key=lambda job: job.id, reverse=True)]


# --- create ---------------------------------------------------------------------------


async def test_create_returns_201_with_uuid_and_stores_the_job(
    client: Client, store: JobStore
) -> None:
    body = {"job_type": "sleep", "job_data": {"seconds": 2}, "retry_count": 2, "retry_interval": 5}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201
    payload = await response.json()
    assert payload["message"] == "Job created successfully"
    assert payload["success"] is True
    stored = await store.get(UUID(payload["uuid"]))
    assert stored.status is JobStatus.OPEN
    assert stored.job_type == "sleep"
    assert stored.data == {"seconds": 2.0, "fail_attempts": 0}
    assert (stored.retry_count, stored.retry_interval) == (2, 5)
    assert payload["job"]["uuid"] == payload["uuid"]
    assert payload["job"]["status"] == "open"
    assert payload["job"]["data"] == stored.data
    assert payload["job"]["created_at"].endswith("Z")


async def test_create_defaults_retry_count_0_and_retry_interval_30(
    client: Client, store: JobStore
) -> None:
    body = {"job_type": "noop", "job_data": {}}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201
    stored = await store.get(UUID((await response.json())["uuid"]))
    assert (stored.retry_count, stored.retry_interval) == (0, 30)


async def test_create_null_retry_fields_mean_the_defaults(client: Client, store: JobStore) -> None:
    body: dict[str, Any] = {
        "job_type": "noop",
        "job_data": {},
        "retry_count": None,
        "retry_interval": None,
    }
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201
    stored = await store.get(UUID((await response.json())["uuid"]))
    assert (stored.retry_count, stored.retry_interval) == (0, 30)


async def test_create_seed_insert_body_is_accepted(client: Client, store: JobStore) -> None:
    response = await client.post("/common/jobs/create", json=SEED_INSERT_BODY, headers=AUTH)
    assert response.status == 201, await response.text()
    [job] = await store.find()
    assert job.job_type == "insert_csv_file"
    assert job.data["s3_key"] == SEED_INSERT_BODY["job_data"]["s3_key"]  # type: ignore[index]


async def test_create_seed_export_body_is_accepted(client: Client) -> None:
    response = await client.post("/common/jobs/create", json=SEED_EXPORT_BODY, headers=AUTH)
    assert response.status == 201, await response.text()


async def test_create_noop_with_the_seed_insert_body_shape_works(
    client: Client, store: JobStore
) -> None:
    body = SEED_INSERT_BODY | {"job_type": "noop"}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201
    stored = await store.get(UUID((await response.json())["uuid"]))
    assert stored.data == SEED_INSERT_BODY["job_data"]
    assert stored.retry_count == 3


async def test_create_stores_the_normalised_job_data(client: Client, store: JobStore) -> None:
    body = {"job_type": "sleep", "job_data": {"seconds": 0}}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    stored = await store.get(UUID((await response.json())["uuid"]))
    assert stored.data == {"seconds": 0.0, "fail_attempts": 0}


async def test_create_calls_on_job_created_once_per_job(start_api: StartApi) -> None:
    created: list[Job] = []
    client = await start_api(on_job_created=created.append)
    uuids = []
    for _ in range(2):
        body = {"job_type": "noop", "job_data": {}}
        response = await client.post("/common/jobs/create", json=body, headers=AUTH)
        uuids.append((await response.json())["uuid"])
    assert [str(job.uuid) for job in created] == uuids


async def test_create_does_not_call_on_job_created_for_a_refused_job(start_api: StartApi) -> None:
    created: list[Job] = []
    client = await start_api(on_job_created=created.append)
    response = await client.post("/common/jobs/create", json={"job_type": "noop"}, headers=AUTH)
    await expect_error(response, 400, "ERR_MISSING_JOB_DATA")
    assert created == []


async def test_create_still_201_when_on_job_created_fails(
    start_api: StartApi, store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(job: Job) -> None:
        raise RuntimeError("runner asleep")

    client = await start_api(on_job_created=explode)
    body = {"job_type": "noop", "job_data": {}}
    with caplog.at_level(logging.ERROR, logger="connectra.api"):
        response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201
    assert len(await store.find()) == 1
    assert "runner asleep" in caplog.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"job_data": {}}, "ERR_MISSING_JOB_TYPE"),
        ({"job_type": None, "job_data": {}}, "ERR_MISSING_JOB_TYPE"),
        ({"job_type": "", "job_data": {}}, "ERR_MISSING_JOB_TYPE"),
        ({"job_type": 7, "job_data": {}}, "ERR_INVALID_JOB_TYPE"),
        ({"job_type": ["noop"], "job_data": {}}, "ERR_INVALID_JOB_TYPE"),
        ({"job_type": "noop"}, "ERR_MISSING_JOB_DATA"),
        ({"job_type": "noop", "job_data": None}, "ERR_MISSING_JOB_DATA"),
        ({"job_type": "noop", "job_data": []}, "ERR_INVALID_JOB_DATA"),
        ({"job_type": "noop", "job_data": "x"}, "ERR_INVALID_JOB_DATA"),
        ({"job_type": "noop", "job_data": 1}, "ERR_INVALID_JOB_DATA"),
        ({"job_type": "sleep", "job_data": {"seconds": -1}}, "ERR_INVALID_JOB_DATA"),
        ({"job_type": "sleep", "job_data": {"bogus": 1}}, "ERR_INVALID_JOB_DATA"),
        ({"job_type": "noop", "job_data": {}, "retry_count": -1}, "ERR_INVALID_RETRY_COUNT"),
        ({"job_type": "noop", "job_data": {}, "retry_count": 1.5}, "ERR_INVALID_RETRY_COUNT"),
        ({"job_type": "noop", "job_data": {}, "retry_count": 2.0}, "ERR_INVALID_RETRY_COUNT"),
        ({"job_type": "noop", "job_data": {}, "retry_count": True}, "ERR_INVALID_RETRY_COUNT"),
        ({"job_type": "noop", "job_data": {}, "retry_count": "3"}, "ERR_INVALID_RETRY_COUNT"),
        ({"job_type": "noop", "job_data": {}, "retry_count": 2**31}, "ERR_INVALID_RETRY_COUNT"),
        (
            {"job_type": "noop", "job_data": {}, "retry_interval": -5},
            "ERR_INVALID_RETRY_INTERVAL",
        ),
        (
            {"job_type": "noop", "job_data": {}, "retry_interval": 0.5},
            "ERR_INVALID_RETRY_INTERVAL",
        ),
        (
            {"job_type": "noop", "job_data": {}, "retry_interval": False},
            "ERR_INVALID_RETRY_INTERVAL",
        ),
        (
            {"job_type": "noop", "job_data": {}, "retry_interval": "30"},
            "ERR_INVALID_RETRY_INTERVAL",
        ),
        (
            {"job_type": "noop", "job_data": {}, "retry_interval": 10**30},
            "ERR_INVALID_RETRY_INTERVAL",
        ),
        ({"job_type": "bogus", "job_data": {}}, "ERR_UNKNOWN_JOB_TYPE"),
        ({"job_type": "insert_csv_file", "job_data": {}}, "ERR_INVALID_JOB_DATA"),
        ({"job_type": "export_csv_file", "job_data": {}}, "ERR_INVALID_JOB_DATA"),
    ],
)
async def test_create_with_a_bad_field_is_400_with_its_code(
    client: Client, store: JobStore, body: dict[str, Any], code: str
) -> None:
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    await expect_error(response, 400, code)
    assert await store.find() == []


async def test_create_missing_job_type_uses_the_seed_message(client: Client) -> None:
    response = await client.post("/common/jobs/create", json={"job_data": {}}, headers=AUTH)
    message = await expect_error(response, 400, "ERR_MISSING_JOB_TYPE")
    assert message.startswith("the 'job_type' field is required")


async def test_create_with_an_empty_body_is_missing_job_type(client: Client) -> None:
    response = await post_raw(client, "/common/jobs/create", b"")
    await expect_error(response, 400, "ERR_MISSING_JOB_TYPE")


async def test_create_retry_count_0_and_retry_interval_0_are_allowed(
    client: Client, store: JobStore
) -> None:
    body = {"job_type": "noop", "job_data": {}, "retry_count": 0, "retry_interval": 0}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201
    stored = await store.get(UUID((await response.json())["uuid"]))
    assert (stored.retry_count, stored.retry_interval) == (0, 0)


# --- request bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/common/jobs/create", "/common/jobs"])
@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"job_type": "noop",}',
        b"not json",
        b"\xff\xfe\x00garbage",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1e400}',
    ],
)
async def test_malformed_json_is_400_invalid_json(client: Client, path: str, raw: bytes) -> None:
    response = await post_raw(client, path, raw)
    await expect_error(response, 400, "ERR_INVALID_JSON")


@pytest.mark.parametrize("path", ["/common/jobs/create", "/common/jobs"])
@pytest.mark.parametrize("raw", [b"[]", b'[{"job_type": "noop"}]', b'"noop"', b"42", b"null"])
async def test_non_object_json_body_is_400_invalid_json(
    client: Client, path: str, raw: bytes
) -> None:
    response = await post_raw(client, path, raw)
    await expect_error(response, 400, "ERR_INVALID_JSON")


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"job_type": "noop", "job_data": {"a": "x\u0000y"}}',
        rb'{"job_type": "noop", "job_data": {"a\u0000": 1}}',
        rb'{"job_type": "noop", "job_data": {"a": "\ud800"}}',
    ],
)
async def test_create_with_text_postgres_cannot_store_is_400_invalid_json(
    client: Client, store: JobStore, raw: bytes
) -> None:
    response = await post_raw(client, "/common/jobs/create", raw)
    await expect_error(response, 400, "ERR_INVALID_JSON")
    assert await store.find() == []


async def test_list_with_a_nul_in_job_type_is_400_invalid_json(client: Client) -> None:
    response = await post_raw(client, "/common/jobs", rb'{"job_type": "no\u0000op"}')
    await expect_error(response, 400, "ERR_INVALID_JSON")


@pytest.mark.parametrize("depth", [65, 100_000])
async def test_deeply_nested_json_is_400_invalid_json(start_api: StartApi, depth: int) -> None:
    client = await start_api(settings=api_settings(API_MAX_BODY_BYTES=1_000_000))
    nested = "[" * depth + "]" * depth
    raw = '{"job_type": "noop", "job_data": {"deep": ' + nested + "}}"
    response = await post_raw(client, "/common/jobs/create", raw)
    await expect_error(response, 400, "ERR_INVALID_JSON")


async def test_moderately_nested_job_data_is_stored(client: Client, store: JobStore) -> None:
    nested: dict[str, Any] = {}
    for _ in range(30):
        nested = {"a": nested}
    body = {"job_type": "noop", "job_data": nested}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201
    assert (await store.get(UUID((await response.json())["uuid"]))).data == nested


async def test_body_over_the_limit_is_413(client: Client, store: JobStore) -> None:
    body = {"job_type": "noop", "job_data": {"pad": "x" * MAX_BODY}}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    message = await expect_error(response, 413, "ERR_BODY_TOO_LARGE")
    assert str(MAX_BODY) in message
    assert await store.find() == []


async def test_chunked_body_over_the_limit_is_413(client: Client, store: JobStore) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"job_type": "noop", "job_data": {"pad": "'
        for _ in range(4):
            yield b"x" * 1024
        yield b'"}}'

    response = await client.post("/common/jobs/create", data=chunks(), headers=AUTH)
    await expect_error(response, 413, "ERR_BODY_TOO_LARGE")
    assert await store.find() == []


async def test_body_just_under_the_limit_is_accepted(client: Client) -> None:
    prefix = '{"job_type": "noop", "job_data": {"pad": "'
    raw = prefix + "x" * (MAX_BODY - len(prefix) - 3) + '"}}'
    assert len(raw) == MAX_BODY
    response = await post_raw(client, "/common/jobs/create", raw)
    assert response.status == 201


async def test_unknown_fields_are_ignored(client: Client) -> None:
    body = {"job_type": "noop", "job_data": {}, "colour": "blue"}
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    assert response.status == 201


# --- list ---------------------------------------------------------------------------------


async def test_list_with_an_empty_body_returns_jobs_newest_first(
    client: Client, store: JobStore
) -> None:
    jobs = await make_jobs(store, 3)
    response = await client.post("/common/jobs", headers=AUTH)
    assert response.status == 200
    payload = await response.json()
    assert set(payload) == {"data", "next_after", "success"}
    assert [job["uuid"] for job in payload["data"]] == newest_first(jobs)


async def test_list_returns_the_public_job_shape(client: Client, store: JobStore) -> None:
    await store.create(NewJob("noop", {"s3_key": "uploads/contacts.csv"}))
    [job] = (await (await client.post("/common/jobs", json={}, headers=AUTH)).json())["data"]
    seed_fields = {
        "id", "uuid", "job_type", "data", "status", "job_response", "retry_count",
        "retry_interval", "run_after", "created_at", "updated_at",
    }  # fmt: skip
    assert seed_fields <= set(job)
    assert job["data"] == {"s3_key": "uploads/contacts.csv"}
    assert job["run_after"] is None


async def test_list_filters_by_job_type(client: Client, store: JobStore) -> None:
    noops = await make_jobs(store, 2, "noop")
    await make_jobs(store, 2, "sleep")
    assert await list_uuids(client, {"job_type": "noop"}) == newest_first(noops)
    assert await list_uuids(client, {"job_type": "insert_csv_file"}) == []


async def test_list_filters_by_a_list_of_states(client: Client, store: JobStore) -> None:
    jobs = await make_jobs(store, 3)
    [queued] = await store.claim(FIRST_TIME, "runner-1", 1)
    still_open = [job for job in jobs if job.id != queued.id]
    assert await list_uuids(client, {"status": ["in_queue"]}) == [str(queued.uuid)]
    assert await list_uuids(client, {"status": ["open"]}) == newest_first(still_open)
    assert await list_uuids(client, {"status": ["open", "in_queue"]}) == newest_first(jobs)
    assert await list_uuids(client, {"status": ["completed"]}) == []


async def test_list_accepts_a_single_state_as_a_string(client: Client, store: JobStore) -> None:
    jobs = await make_jobs(store, 2)
    assert await list_uuids(client, {"status": "open"}) == newest_first(jobs)


async def test_list_with_empty_or_null_filters_returns_everything(
    client: Client, store: JobStore
) -> None:
    jobs = await make_jobs(store, 2)
    body: dict[str, Any] = {"status": [], "job_type": None, "limit": None}
    assert await list_uuids(client, body) == newest_first(jobs)


async def test_list_combines_job_type_and_state(client: Client, store: JobStore) -> None:
    [noop] = await make_jobs(store, 1, "noop")
    await make_jobs(store, 1, "sleep")
    body = {"job_type": "noop", "status": ["open"]}
    assert await list_uuids(client, body) == [str(noop.uuid)]


async def test_list_seed_body_open_limit_50(client: Client, store: JobStore) -> None:
    jobs = await make_jobs(store, 3)
    assert await list_uuids(client, {"status": ["open"], "limit": 50}) == newest_first(jobs)


async def test_list_seed_body_failed_limit_100(client: Client, store: JobStore) -> None:
    await make_jobs(store, 2)
    [claimed] = await store.claim(FIRST_TIME, "runner-1", 1)
    await store.start(claimed, FIRST_TIME, "runner-1")
    await store.fail(
        claimed, FIRST_TIME, "runner-1", {"runtime_errors": ["boom"]}, timedelta(seconds=30)
    )
    assert await list_uuids(client, {"status": ["failed"], "limit": 100}) == [str(claimed.uuid)]


async def test_list_limit_defaults_to_25(client: Client, store: JobStore) -> None:
    jobs = await make_jobs(store, 30)
    assert await list_uuids(client, {}) == newest_first(jobs)[:25]


async def test_list_limit_100_is_the_maximum(client: Client, store: JobStore) -> None:
    jobs = await make_jobs(store, 101)
    assert await list_uuids(client, {"limit": 100}) == newest_first(jobs)[:100]
    response = await client.post("/common/jobs", json={"limit": 101}, headers=AUTH)
    await expect_error(response, 400, "ERR_INVALID_LIMIT")


async def test_list_limit_1_returns_the_newest_job(client: Client, store: JobStore) -> None:
    jobs = await make_jobs(store, 3)
    assert await list_uuids(client, {"limit": 1}) == newest_first(jobs)[:1]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"status": ["bogus"]}, "ERR_INVALID_STATUS"),
        ({"status": "bogus"}, "ERR_INVALID_STATUS"),
        ({"status": ["open", "OPEN"]}, "ERR_INVALID_STATUS"),
        ({"status": [1]}, "ERR_INVALID_STATUS"),
        ({"status": [None]}, "ERR_INVALID_STATUS"),
        ({"status": {"open": True}}, "ERR_INVALID_STATUS"),
        ({"status": 3}, "ERR_INVALID_STATUS"),
        ({"limit": 0}, "ERR_INVALID_LIMIT"),
        ({"limit": -1}, "ERR_INVALID_LIMIT"),
        ({"limit": 101}, "ERR_INVALID_LIMIT"),
        ({"limit": "10"}, "ERR_INVALID_LIMIT"),
        ({"limit": 10.0}, "ERR_INVALID_LIMIT"),
        ({"limit": True}, "ERR_INVALID_LIMIT"),
        ({"limit": [10]}, "ERR_INVALID_LIMIT"),
        ({"job_type": 5}, "ERR_INVALID_JOB_TYPE"),
        ({"job_type": ["noop"]}, "ERR_INVALID_JOB_TYPE"),
        ({"job_type": {"name": "noop"}}, "ERR_INVALID_JOB_TYPE"),
    ],
)
async def test_list_with_wrong_types_is_400_with_its_code(
    client: Client, body: dict[str, Any], code: str
) -> None:
    response = await client.post("/common/jobs", json=body, headers=AUTH)
    await expect_error(response, 400, code)


# --- get ----------------------------------------------------------------------------------


async def test_get_by_uuid_returns_the_job(client: Client, store: JobStore) -> None:
    job = await store.create(NewJob("noop", {"k": "v"}))
    response = await client.get(f"/common/jobs/{job.uuid}", headers=AUTH)
    assert response.status == 200
    payload = await response.json()
    assert payload["success"] is True
    assert payload["data"]["uuid"] == str(job.uuid)
    assert payload["data"]["data"] == {"k": "v"}
    assert payload["data"]["status"] == "open"


async def test_get_an_unknown_uuid_is_404_job_not_found(client: Client) -> None:
    response = await client.get(f"/common/jobs/{uuid4()}", headers=AUTH)
    await expect_error(response, 404, "ERR_JOB_NOT_FOUND")


@pytest.mark.parametrize(
    "bad", ["not-a-uuid", "123", "create", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"]
)
async def test_get_a_bad_uuid_is_400_invalid_uuid(client: Client, bad: str) -> None:
    response = await client.get(f"/common/jobs/{bad}", headers=AUTH)
    await expect_error(response, 400, "ERR_INVALID_UUID")


# --- auth ---------------------------------------------------------------------------------


# A fixed uuid of no job: test ids must be the same in every pytest-xdist worker.
NO_SUCH_JOB = "00000000-0000-4000-8000-000000000000"

ROUTES = [
    ("POST", "/common/jobs/create"),
    ("POST", "/common/jobs"),
    ("GET", f"/common/jobs/{NO_SUCH_JOB}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_common_routes_without_api_key_are_401(
    client: Client, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"job_type": "noop", "job_data": {}})
    await expect_error(response, 401, "ERR_UNAUTHORIZED")


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_common_routes_with_a_wrong_api_key_are_401(
    client: Client, method: str, path: str
) -> None:
    headers = {"X-API-Key": "k3"}
    response = await client.request(method, path, json={}, headers=headers)
    await expect_error(response, 401, "ERR_UNAUTHORIZED")


async def test_create_without_api_key_is_401_and_stores_nothing(
    client: Client, store: JobStore
) -> None:
    body = {"job_type": "noop", "job_data": {}}
    response = await client.post("/common/jobs/create", json=body)
    await expect_error(response, 401, "ERR_UNAUTHORIZED")
    assert await store.find() == []


@pytest.mark.parametrize("key", ["", "k", "k1x", "K1", "k1,k2", "k1k2"])
async def test_near_miss_api_keys_are_401(client: Client, key: str) -> None:
    response = await client.post("/common/jobs", json={}, headers={"X-API-Key": key})
    await expect_error(response, 401, "ERR_UNAUTHORIZED")


async def test_the_second_api_key_works_too(client: Client) -> None:
    response = await client.post("/common/jobs", json={}, headers=SECOND_KEY)
    assert response.status == 200


async def test_auth_is_checked_before_the_body(client: Client) -> None:
    response = await client.post("/common/jobs/create", data=b"{not json")
    await expect_error(response, 401, "ERR_UNAUTHORIZED")


async def test_with_no_keys_configured_every_common_request_is_401(start_api: StartApi) -> None:
    client = await start_api(settings=api_settings(API_KEYS=""))
    for headers in ({}, AUTH, {"X-API-Key": ""}):
        response = await client.post("/common/jobs", json={}, headers=headers)
        await expect_error(response, 401, "ERR_UNAUTHORIZED")


async def test_healthz_needs_no_api_key(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_healthz_is_ok_even_with_no_keys_configured(start_api: StartApi) -> None:
    client = await start_api(settings=api_settings(API_KEYS=""))
    assert (await client.get("/healthz")).status == 200


# --- routing ------------------------------------------------------------------------------


async def test_unknown_route_is_404_not_found(client: Client) -> None:
    response = await client.get("/nope")
    await expect_error(response, 404, "ERR_NOT_FOUND")


async def test_unknown_common_route_is_401_without_key_and_404_with_it(client: Client) -> None:
    await expect_error(await client.get("/common/nope"), 401, "ERR_UNAUTHORIZED")
    await expect_error(await client.get("/common/nope", headers=AUTH), 404, "ERR_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/common/jobs", "POST"),
        ("PUT", "/common/jobs/create", "POST"),
        ("DELETE", f"/common/jobs/{NO_SUCH_JOB}", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_wrong_method_is_405_method_not_allowed(
    client: Client, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, headers=AUTH)
    await expect_error(response, 405, "ERR_METHOD_NOT_ALLOWED")
    assert allowed in response.headers["Allow"]


# --- failures ----------------------------------------------------------------------------


async def test_database_refusing_connections_is_503(start_api: StartApi) -> None:
    unreachable = await asyncpg.create_pool(
        "postgresql://postgres@127.0.0.1:1/postgres", min_size=0, max_size=1, timeout=2
    )
    try:
        client = await start_api(job_store=JobStore(unreachable))
        response = await client.post("/common/jobs", json={}, headers=AUTH)
        await expect_error(response, 503, "ERR_DATABASE_UNAVAILABLE")
    finally:
        await unreachable.close()


async def test_closed_pool_is_503(start_api: StartApi, database_url: str) -> None:
    closed = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    await closed.close()
    client = await start_api(job_store=JobStore(closed))
    response = await client.get(f"/common/jobs/{uuid4()}", headers=AUTH)
    await expect_error(response, 503, "ERR_DATABASE_UNAVAILABLE")


class BrokenStore(JobStore):
    """A store whose listing fails in a way nobody planned for."""

    async def find(self, **filters: Any) -> list[Job]:
        """Fail with a message that must not reach the client."""
        raise RuntimeError("secret internals at /srv/connectra")


async def test_unexpected_error_is_500_internal_without_details(
    start_api: StartApi, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_api(job_store=BrokenStore(pool))
    with caplog.at_level(logging.ERROR, logger="connectra.api"):
        response = await client.post("/common/jobs", json={}, headers=AUTH)
    await expect_error(response, 500, "ERR_INTERNAL")
    assert "secret" not in await response.text()
    assert "Traceback" not in await response.text()
    assert "secret internals" in caplog.text
