"""X-Request-ID: accepted or made, echoed, stored on the job, and on every log line of the
request and of every attempt of the job."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from connectra import JobContext, JobFailedError, JobTypeRegistry
from connectra.api.app import create_app
from connectra.db.store import JobStore
from connectra.jobs import RETRY
from connectra.logs import JsonFormatter
from connectra.processors.registry import default_registry
from connectra.settings import load_settings
from tests.api_client import Client
from tests.integration.test_runners import config, running
from tests.polling import eventually

AUTH = {"X-API-Key": "k1"}
handler_log = logging.getLogger("tests.request_ids.handler")


class Nothing(BaseModel):
    pass


def registry() -> JobTypeRegistry:
    jobs = default_registry()
    user = JobTypeRegistry()

    @user.job(retry_count=1, retry_interval=0)
    async def flaky(ctx: JobContext, data: Nothing) -> None:
        handler_log.info("working on attempt %d", ctx.attempt)  # a module logger, not ctx.log
        if ctx.attempt == 1:
            raise JobFailedError("first attempt fails")
        await user.dispatch(ctx.services.pool, "child", {})  # type: ignore[arg-type]

    @user.job()
    async def child(ctx: JobContext, data: Nothing) -> None:
        handler_log.info("child runs")

    jobs.include(user)
    return jobs


class Lines(logging.Handler):
    """Formats each record where it is logged, as the product's handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    captured = Lines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(captured)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        root.removeHandler(captured)
        root.setLevel(old_level)


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    app = create_app(store, registry(), load_settings(API_KEYS="k1"))
    test_client: Client = TestClient(TestServer(app))
    await test_client.start_server()
    try:
        yield test_client
    finally:
        await test_client.close()


async def test_a_request_id_is_echoed_or_made(client: Client) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    for bad in ("has space", "x" * 129, "é"):
        replaced = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])
    error = await client.post("/common/jobs/create", json={}, headers={"X-Request-ID": "e-1"})
    assert error.status == 401
    assert error.headers["X-Request-ID"] == "e-1"


async def test_the_request_id_follows_the_job_through_every_attempt(
    client: Client, store: JobStore, lines: Lines
) -> None:
    headers = {**AUTH, "X-Request-ID": "order-42"}
    response = await client.post(
        "/common/jobs/create", json={"job_type": "flaky", "job_data": {}}, headers=headers
    )
    job = (await response.json())["job"]
    assert job["request_id"] == "order-42"
    created = [line for line in lines.lines if line.get("action") == "job_created"]
    assert [line["request_id"] for line in created] == ["order-42"]

    retry = config(kind=RETRY, concurrency=1)
    async with running(store, config(), registry()), running(store, retry, registry()):
        await eventually(lambda: _all_completed(store, 2), within=20)

    of_job = [line for line in lines.lines if line.get("job_uuid") == job["uuid"]]
    actions = [line["action"] for line in of_job]
    assert "job_fail" in actions
    assert actions.count("job_start") == 2
    assert {line["request_id"] for line in of_job} == {"order-42"}
    handler_lines = [line for line in lines.lines if line["logger"] == handler_log.name]
    assert len(handler_lines) == 3  # two attempts, then the child job
    assert {line["request_id"] for line in handler_lines} == {"order-42"}
    child = [j for j in await store.find() if j.job_type == "child"]
    assert [j.request_id for j in child] == ["order-42"], "a job dispatched by a job inherits it"


async def _all_completed(store: JobStore, count: int) -> bool:
    jobs = await store.find()
    return len(jobs) == count and all(job.status == "completed" for job in jobs)


async def test_jobs_made_outside_a_request_have_no_request_id(store: JobStore) -> None:
    job = await store.create(registry().new_job("noop", {}))
    assert job.request_id is None
