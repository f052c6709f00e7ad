"""The API's side of queues, priorities, delayed jobs, paging and user job types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from connectra import JobContext, JobTypeRegistry
from connectra.api.app import create_app
from connectra.db.store import JobStore
from connectra.processors.registry import default_registry
from connectra.settings import load_settings
from tests.api_client import Client

AUTH = {"X-API-Key": "k1"}


class Report(BaseModel):
    month: str


def registry_with_user_types() -> JobTypeRegistry:
    registry = default_registry()
    user = JobTypeRegistry()

    @user.job(queue="reports", priority=7, retry_count=2, retry_interval=5)
    async def monthly_report(ctx: JobContext, data: Report) -> None: ...

    registry.include(user)
    return registry


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    app = create_app(store, registry_with_user_types(), load_settings(API_KEYS="k1"))
    test_client: Client = TestClient(TestServer(app))
    await test_client.start_server()
    try:
        yield test_client
    finally:
        await test_client.close()


async def create(client: Client, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/common/jobs/create", json=body, headers=AUTH)
    return response.status, await response.json()


async def listing(client: Client, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/common/jobs", json=body, headers=AUTH)
    return response.status, await response.json()


async def test_a_user_job_type_gets_its_defaults_and_its_data_checked(client: Client) -> None:
    status, body = await create(client, job_type="monthly_report", job_data={"month": "2026-11"})
    assert status == 201
    job = body["job"]
    assert (job["queue"], job["priority"], job["retry_count"], job["retry_interval"]) == (
        "reports",
        7,
        2,
        5,
    )
    status, body = await create(client, job_type="monthly_report", job_data={"month": 11})
    assert status == 400
    assert body["error"].startswith("ERR_INVALID_JOB_DATA: job_data.month")


async def test_queue_priority_and_delay_are_stored_and_returned(client: Client) -> None:
    status, body = await create(
        client, job_type="noop", job_data={}, queue="bulk", priority=-3, delay_seconds=120
    )
    assert status == 201
    job = body["job"]
    assert (job["queue"], job["priority"], job["status"]) == ("bulk", -3, "scheduled")
    assert job["run_at"] == job["run_after"]
    status, body = await create(
        client, job_type="noop", job_data={}, run_at="2030-01-01T08:00:00+01:00"
    )
    assert body["job"]["run_at"] == "2030-01-01T07:00:00Z"
    status, body = await create(client, job_type="noop", job_data={}, run_at="2001-01-01T00:00:00Z")
    assert body["job"]["status"] == "open", "a run_at in the past runs now"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"priority": 101}, "ERR_INVALID_PRIORITY"),
        ({"priority": -101}, "ERR_INVALID_PRIORITY"),
        ({"priority": "high"}, "ERR_INVALID_PRIORITY"),
        ({"priority": True}, "ERR_INVALID_PRIORITY"),
        ({"priority": 1.5}, "ERR_INVALID_PRIORITY"),
        ({"queue": "has space"}, "ERR_INVALID_QUEUE"),
        ({"queue": ""}, "ERR_INVALID_QUEUE"),
        ({"queue": "x" * 64}, "ERR_INVALID_QUEUE"),
        ({"queue": ["a"]}, "ERR_INVALID_QUEUE"),
        ({"run_at": "tomorrow"}, "ERR_INVALID_RUN_AT"),
        ({"run_at": "2026-02-30T00:00:00Z"}, "ERR_INVALID_RUN_AT"),
        ({"run_at": 1764000000}, "ERR_INVALID_RUN_AT"),
        ({"delay_seconds": -1}, "ERR_INVALID_DELAY"),
        ({"delay_seconds": "10"}, "ERR_INVALID_DELAY"),
        ({"delay_seconds": 10**9}, "ERR_INVALID_DELAY"),
        ({"delay_seconds": 5, "run_at": "2030-01-01T00:00:00Z"}, "ERR_INVALID_DELAY"),
    ],
)
async def test_bad_job_options_are_refused_with_their_code(
    client: Client, store: JobStore, fields: dict[str, Any], code: str
) -> None:
    status, body = await create(client, job_type="noop", job_data={}, **fields)
    assert status == 400
    assert body["error"].startswith(f"{code}: ")
    assert body["success"] is False
    assert await store.find() == []


async def test_listing_filters_by_queue_and_pages_with_next_after(client: Client) -> None:
    for n in range(5):
        await create(client, job_type="noop", job_data={}, queue="a" if n < 3 else "b")
    status, first = await listing(client, queue=["a"], limit=2)
    assert status == 200
    assert [job["queue"] for job in first["data"]] == ["a", "a"]
    assert first["next_after"] == first["data"][-1]["id"]
    _, second = await listing(client, queue="a", limit=2, after=first["next_after"])
    assert len(second["data"]) == 1
    assert second["next_after"] is None
    ids = [job["id"] for job in first["data"] + second["data"]]
    assert ids == sorted(ids, reverse=True)
    _, unknown = await listing(client, queue=["no-such-queue"])
    assert unknown["data"] == [], "a valid queue name no job has lists nothing"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"queue": ["bad name"]}, "ERR_INVALID_QUEUE"),
        ({"queue": 3}, "ERR_INVALID_QUEUE"),
        ({"after": 0}, "ERR_INVALID_CURSOR"),
        ({"after": "12"}, "ERR_INVALID_CURSOR"),
        ({"after": 2**63}, "ERR_INVALID_CURSOR"),
    ],
)
async def test_bad_listing_filters_are_refused(
    client: Client, fields: dict[str, Any], code: str
) -> None:
    status, body = await listing(client, **fields)
    assert status == 400
    assert body["error"].startswith(f"{code}: ")


async def test_an_idempotency_key_covers_queue_priority_and_due_time(client: Client) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-7"}
    body = {"job_type": "noop", "job_data": {}, "priority": 1}
    first = await client.post("/common/jobs/create", json=body, headers=headers)
    assert first.status == 201
    same = await client.post("/common/jobs/create", json=body, headers=headers)
    assert same.headers.get("Idempotent-Replayed") == "true"
    other = await client.post("/common/jobs/create", json={**body, "priority": 2}, headers=headers)
    assert other.status == 409
    explicit_default = {**body, "queue": "default"}
    same_again = await client.post("/common/jobs/create", json=explicit_default, headers=headers)
    assert same_again.status == 201, "giving the default queue is the same request"
