"""`connectra.client` against the real API: the app on a TCP socket (aiohttp `TestServer` on
127.0.0.1), real PostgreSQL, moto S3, and in-process runners that really run the jobs.

The backoff schedule and the parsing of answers are pure and tested at the end, without I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectra.api.app import create_app
from connectra.client import (
    ConnectraApiError,
    ConnectraClient,
    JobInfo,
    JobPage,
    UploadedFile,
    api_error,
    backoff_delays,
)
from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, RETRY, JobStatus, RunnerKind
from connectra.objectstore import ObjectStore
from connectra.processors.base import Services
from connectra.processors.registry import default_registry
from connectra.retry import RetryPolicy
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.settings import load_settings

S = JobStatus
KEY = "k1"
NEVER = "00000000-0000-0000-0000-000000000000"


async def serve(app: web.Application) -> AsyncIterator[str]:
    """The app on a real socket on 127.0.0.1; its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def base_url(
    store: JobStore, object_store: ObjectStore, s3_bucket: str
) -> AsyncIterator[str]:
    """The whole API, with the test bucket as its default bucket."""
    settings = load_settings(API_KEYS=KEY, S3_BUCKET=s3_bucket, PRESIGNED_URL_EXPIRY_SECONDS=600)
    app = create_app(store, default_registry(), settings, objects=object_store)
    async for url in serve(app):
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[ConnectraClient]:
    """A client with the accepted key."""
    async with ConnectraClient(base_url, KEY, timeout=10) as client:
        yield client


@contextlib.asynccontextmanager
async def runners(
    store: JobStore, objects: ObjectStore, bucket: str, *kinds: RunnerKind
) -> AsyncIterator[None]:
    """Runners of these kinds working in the background for the duration of the block."""
    settings = load_settings(S3_BUCKET=bucket)
    services = Services(pool=store.pool, objects=objects)
    stops, tasks = [], []
    for kind in kinds:
        config = RunnerConfig(
            kind=kind,
            concurrency=2,
            queue_size=10,
            tick_interval=timedelta(seconds=0.05),
            shutdown_grace=timedelta(seconds=5),
            retry_policy=RetryPolicy(),
        )
        runner = Runner(store, default_registry(), settings, config, services=services)
        stops.append(Stopping())
        tasks.append(asyncio.create_task(runner.run(stops[-1])))
    try:
        yield
    finally:
        for stopping in stops:
            stopping.request()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def listing(folder: Path) -> list[str]:
    """The names in a folder."""
    return sorted(await asyncio.to_thread(os.listdir, folder))


async def error_of(call: Any) -> ConnectraApiError:
    """The API error an awaitable raises."""
    with pytest.raises(ConnectraApiError) as caught:
        await call
    return caught.value


# --- create, get ----------------------------------------------------------------------------


async def test_create_sends_queue_priority_run_at_and_returns_a_typed_job(
    client: ConnectraClient,
) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    job = await client.create(
        "noop",
        {},
        queue="reports",
        priority=7,
        run_at=run_at,
        retry_count=2,
        retry_interval=5,
    )
    assert isinstance(job, JobInfo)
    assert isinstance(job.uuid, UUID)
    assert (job.job_type, job.queue, job.priority) == ("noop", "reports", 7)
    assert (job.retry_count, job.retry_interval, job.attempts) == (2, 5, 0)
    assert job.status is S.SCHEDULED
    assert job.run_after == run_at
    assert job.run_at in (run_at, None)  # None from a server that does not send it
    assert job.created_at.tzinfo is not None
    assert not job.finished
    # Only fields this client does not know land in `extra` (the server grows new ones).
    assert not set(job.extra) & {item.name for item in dataclasses.fields(JobInfo)}


async def test_create_with_a_delay_schedules_the_job(client: ConnectraClient) -> None:
    before = datetime.now(UTC)
    job = await client.create("noop", {}, delay_seconds=600)
    assert job.status is S.SCHEDULED
    assert job.run_after is not None
    assert timedelta(seconds=590) < job.run_after - before < timedelta(seconds=610)


async def test_create_refuses_a_naive_run_at_before_sending(client: ConnectraClient) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.create("noop", {}, run_at=datetime(2030, 1, 1))
    assert (await client.list()).jobs == ()


async def test_the_same_idempotency_key_replays_the_job_and_another_body_is_409(
    client: ConnectraClient,
) -> None:
    first = await client.create("sleep", {"seconds": 1}, idempotency_key="order-42")
    again = await client.create("sleep", {"seconds": 1}, idempotency_key="order-42")
    assert again.uuid == first.uuid
    error = await error_of(client.create("sleep", {"seconds": 2}, idempotency_key="order-42"))
    assert (error.code, error.status) == ("ERR_IDEMPOTENCY_KEY_REUSED", 409)
    assert len((await client.list()).jobs) == 1


async def test_get_returns_the_job_by_uuid_or_its_text(client: ConnectraClient) -> None:
    created = await client.create("sleep", {"seconds": 0.5}, queue="q1")
    by_uuid = await client.get(created.uuid)
    by_text = await client.get(str(created.uuid))
    assert by_uuid == by_text
    assert (by_uuid.id, by_uuid.uuid, by_uuid.status) == (created.id, created.uuid, S.OPEN)
    assert by_uuid.data == {"seconds": 0.5, "fail_attempts": 0}


# --- list, iterate ------------------------------------------------------------------------


async def test_list_filters_by_status_job_type_and_queue(client: ConnectraClient) -> None:
    a = [await client.create("noop", {}, queue="a") for _ in range(3)]
    b = [await client.create("sleep", {"seconds": 1}, queue="b") for _ in range(2)]
    await client.cancel(a[0].uuid)

    def uuids(page: JobPage) -> set[UUID]:
        return {job.uuid for job in page.jobs}

    assert uuids(await client.list(queue="a")) == {job.uuid for job in a}
    assert uuids(await client.list(queue=["a", "b"])) == {job.uuid for job in a + b}
    assert uuids(await client.list(job_type="sleep")) == {job.uuid for job in b}
    assert uuids(await client.list(status="aborted")) == {a[0].uuid}
    assert uuids(await client.list(status=[S.OPEN], queue="a")) == {a[1].uuid, a[2].uuid}
    assert uuids(await client.list(status=["completed"])) == set()


async def test_list_pages_with_after_and_next_after(client: ConnectraClient) -> None:
    created = [await client.create("noop", {}) for _ in range(7)]
    newest_first = [job.uuid for job in reversed(created)]
    pages, after = [], None
    while True:
        page = await client.list(limit=3, after=after)
        pages.append([job.uuid for job in page.jobs])
        if page.next_after is None:
            break
        after = page.next_after
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [uuid for page in pages for uuid in page] == newest_first


@pytest.mark.parametrize("count", [0, 6, 7])
async def test_iterate_yields_every_job_once_newest_first(
    client: ConnectraClient, count: int
) -> None:
    created = [await client.create("noop", {}, queue="it") for _ in range(count)]
    await client.create("noop", {}, queue="other")
    seen = [job.uuid async for job in client.iterate(queue="it", page_size=3)]
    assert seen == [job.uuid for job in reversed(created)]


# --- cancel, retry ----------------------------------------------------------------------------


async def test_cancel_aborts_a_waiting_job_and_a_finished_one_is_409(
    client: ConnectraClient,
) -> None:
    job = await client.create("noop", {}, delay_seconds=300)
    cancelled = await client.cancel(job.uuid)
    assert cancelled.status is S.ABORTED
    assert cancelled.finished
    error = await error_of(client.cancel(job.uuid))
    assert (error.code, error.status) == ("ERR_JOB_FINISHED", 409)


async def test_retry_reopens_a_failed_job(
    client: ConnectraClient, store: JobStore, object_store: ObjectStore, s3_bucket: str
) -> None:
    job = await client.create("sleep", {"seconds": 0, "fail_attempts": 1})
    async with runners(store, object_store, s3_bucket, FIRST_TIME):
        failed = await client.wait(job.uuid, timeout=20, initial_delay=0.05, max_delay=0.2)
    assert failed.status is S.FAILED_FINAL
    assert failed.error_code == "ERR_JOB_FAILED"
    reopened = await client.retry(job.uuid)
    assert (reopened.uuid, reopened.status) == (job.uuid, S.OPEN)
    error = await error_of(client.retry(job.uuid))
    assert (error.code, error.status) == ("ERR_JOB_NOT_RETRYABLE", 409)


# --- errors ---------------------------------------------------------------------------------


async def test_api_errors_carry_their_code_message_and_status(
    client: ConnectraClient, base_url: str
) -> None:
    unknown = await error_of(client.create("no_such_type", {}))
    assert (unknown.code, unknown.status) == ("ERR_UNKNOWN_JOB_TYPE", 400)
    assert unknown.message
    assert str(unknown) == f"ERR_UNKNOWN_JOB_TYPE: {unknown.message} (HTTP 400)"
    priority = await error_of(client.create("noop", {}, priority=500))
    assert (priority.code, priority.status) == ("ERR_INVALID_PRIORITY", 400)
    missing = await error_of(client.get(NEVER))
    assert (missing.code, missing.status) == ("ERR_JOB_NOT_FOUND", 404)
    garbled = await error_of(client.get("not-a-uuid"))
    assert (garbled.code, garbled.status) == ("ERR_INVALID_UUID", 400)
    async with ConnectraClient(base_url, "wrong key") as intruder:
        refused = await error_of(intruder.list())
    assert (refused.code, refused.status) == ("ERR_UNAUTHORIZED", 401)


async def test_an_answer_not_in_the_apis_shape_still_raises_an_api_error() -> None:
    async def gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(status=200, text="hello")

    app = web.Application()
    app.router.add_get("/common/jobs/{uuid}", gateway)
    app.router.add_post("/common/jobs", not_json)
    async for url in serve(app):
        async with ConnectraClient(url, KEY) as client:
            bad_gateway = await error_of(client.get(NEVER))
            unreadable = await error_of(client.list())
    assert (bad_gateway.code, bad_gateway.status) == ("ERR_HTTP_502", 502)
    assert "Bad Gateway" in bad_gateway.message
    assert (unreadable.code, unreadable.status) == ("ERR_INVALID_RESPONSE", 200)


async def test_a_session_given_to_the_client_stays_open(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with ConnectraClient(base_url, KEY, session=session) as client:
            await client.list()
        assert not session.closed
        async with ConnectraClient(base_url, KEY, session=session) as client:
            assert (await client.list()).jobs == ()


# --- wait -----------------------------------------------------------------------------------


async def test_wait_goes_on_past_a_failed_attempt_that_will_be_retried(
    client: ConnectraClient, store: JobStore, object_store: ObjectStore, s3_bucket: str
) -> None:
    job = await client.create(
        "sleep", {"seconds": 0, "fail_attempts": 1}, retry_count=1, retry_interval=1
    )
    seen: list[JobInfo] = []
    async with runners(store, object_store, s3_bucket, FIRST_TIME, RETRY):
        done = await client.wait(
            job.uuid, on_progress=seen.append, timeout=30, initial_delay=0.05, max_delay=0.3
        )
    assert (done.status, done.attempts) == (S.COMPLETED, 2)
    assert seen[0].uuid == job.uuid
    assert seen[-1] == done
    # Called on changes only: no two neighbours show the same status and response.
    assert all(
        (a.status, a.job_response) != (b.status, b.job_response)
        for a, b in itertools.pairwise(seen)
    )


async def test_wait_raises_timeout_error_when_the_job_does_not_finish_in_time(
    client: ConnectraClient,
) -> None:
    job = await client.create("noop", {}, delay_seconds=300)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.wait(job.uuid, timeout=0.5, initial_delay=0.05, max_delay=0.1)
    assert 0.4 < time.monotonic() - started < 2


async def test_wait_returns_an_aborted_job(client: ConnectraClient) -> None:
    job = await client.create("noop", {}, delay_seconds=300)
    await client.cancel(job.uuid)
    done = await client.wait(job.uuid, timeout=5)
    assert done.status is S.ABORTED


# --- files ----------------------------------------------------------------------------------

CONTACTS_HEADER = "uuid,first_name,last_name,email,country"


def contacts_csv(count: int) -> str:
    """A contacts file of `count` rows."""
    rows = [
        f"{UUID(int=i + 1)},First{i},Last{i},user{i}@example.com,{['US', 'DE'][i % 2]}"
        for i in range(count)
    ]
    return "\n".join([CONTACTS_HEADER, *rows]) + "\n"


async def stored(objects: ObjectStore, uploaded: UploadedFile) -> bytes:
    """The bytes of an uploaded object."""
    chunks = objects.iter_object(uploaded.s3_bucket, uploaded.s3_key)
    async with contextlib.aclosing(chunks) as stream:
        return b"".join([chunk async for chunk in stream])


async def test_upload_file_puts_bytes_under_the_given_name(
    client: ConnectraClient, object_store: ObjectStore, s3_bucket: str
) -> None:
    uploaded = await client.upload_file(b"uuid,email\n", filename="tiny.csv")
    assert uploaded.s3_bucket == s3_bucket
    assert uploaded.s3_key.endswith("/tiny.csv")
    assert await stored(object_store, uploaded) == b"uuid,email\n"


async def test_upload_file_streams_a_big_file_from_disk(
    client: ConnectraClient, object_store: ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(random.Random(7).randbytes(8 * 1024 * 1024))
    uploaded = await client.upload_file(str(path))
    assert uploaded.s3_key.endswith("/big.csv")
    assert await stored(object_store, uploaded) == path.read_bytes()


async def test_upload_file_of_a_missing_file_fails_before_asking_for_a_url(
    client: ConnectraClient, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await client.upload_file(tmp_path / "absent.csv")


async def test_upload_file_refuses_a_name_the_api_refuses(
    client: ConnectraClient, tmp_path: Path
) -> None:
    path = tmp_path / "my contacts.csv"
    path.write_text(contacts_csv(1))
    error = await error_of(client.upload_file(path))
    assert (error.code, error.status) == ("ERR_INVALID_FILENAME", 400)


async def test_an_uploaded_file_is_imported_and_waited_on_with_progress(
    client: ConnectraClient,
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(contacts_csv(250))
    uploaded = await client.upload_file(path)
    assert uploaded.s3_key.endswith("/contacts.csv")
    assert await stored(object_store, uploaded) == path.read_bytes()

    job = await client.create(
        "insert_csv_file", {"s3_key": uploaded.s3_key, "s3_bucket": uploaded.s3_bucket}
    )
    progress: list[JobInfo] = []

    async def on_progress(job: JobInfo) -> None:
        progress.append(job)

    async with runners(store, object_store, s3_bucket, FIRST_TIME):
        done = await client.wait(job.uuid, on_progress=on_progress, timeout=60)
    assert done.status is S.COMPLETED, done.job_response
    assert (done.records_processed, done.records_failed) == (250, 0)
    assert len(progress) >= 1
    assert progress[-1] == done
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 250


async def test_an_export_is_waited_on_and_downloaded(
    client: ConnectraClient,
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    await pool.executemany(
        "INSERT INTO contacts (uuid, first_name, email, country) VALUES ($1, $2, $3, $4)",
        [
            (uuid4(), "Grace", "grace@example.com", "US"),
            (uuid4(), "Ada", "ada@example.com", "US"),
            (uuid4(), "Émile, Jr.", "emile@example.com", "US"),
            (uuid4(), "Karl", "karl@example.com", "DE"),
        ],
    )
    vql = {
        "select_columns": ["first_name", "email"],
        "where": {"keyword_match": {"must": {"country": ["US"]}}},
        "order_by": [{"order_by": "email", "order_direction": "asc"}],
    }
    job = await client.create("export_csv_file", {"service": "contact", "vql": vql})
    async with runners(store, object_store, s3_bucket, FIRST_TIME):
        done = await client.wait(job.uuid, timeout=60, initial_delay=0.05)
    assert done.status is S.COMPLETED, done.job_response
    assert done.records_processed == 3

    target = tmp_path / "export.csv"
    assert await client.download_export(job.uuid, target) == target
    assert target.read_text(encoding="utf-8") == (
        "first_name,email\n"
        "Ada,ada@example.com\n"
        '"Émile, Jr.",emile@example.com\n'
        "Grace,grace@example.com\n"
    )
    assert await listing(tmp_path) == ["export.csv"]


async def test_download_export_of_a_job_that_is_not_a_finished_export_is_409(
    client: ConnectraClient, tmp_path: Path
) -> None:
    job = await client.create("noop", {}, delay_seconds=300)
    error = await error_of(client.download_export(job.uuid, tmp_path / "x.csv"))
    assert (error.code, error.status) == ("ERR_EXPORT_NOT_READY", 409)
    assert await listing(tmp_path) == []


# --- pure: the backoff schedule and the parsing of answers ---------------------------------


class Fixed(random.Random):
    """A random generator that always draws the same number."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def take(count: int, initial: float, maximum: float, rng: random.Random) -> list[float]:
    """The first `count` delays of a schedule."""
    delays = backoff_delays(initial, maximum, rng)
    return [next(delays) for _ in range(count)]


def test_backoff_steps_double_up_to_the_cap() -> None:
    steps = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    # The top of the jitter is the step itself, the bottom half of it.
    assert take(8, 0.2, 5.0, Fixed(1.0)) == pytest.approx(steps)
    assert take(8, 0.2, 5.0, Fixed(0.0)) == pytest.approx([s / 2 for s in steps])


def test_backoff_jitter_stays_within_half_a_step_and_a_step() -> None:
    steps = [min(10.0, 0.1 * 2**n) for n in range(30)]
    for seed in range(20):
        delays = take(30, 0.1, 10.0, random.Random(seed))
        assert all(s / 2 <= d <= s for d, s in zip(delays, steps, strict=True))
        assert max(delays) <= 10.0
    assert len(set(take(30, 0.1, 10.0, random.Random(1)))) > 10, "no jitter"


@pytest.mark.parametrize(("initial", "maximum"), [(0, 1), (-1, 1), (2, 1)])
def test_backoff_refuses_delays_that_cannot_grow(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial_delay"):
        backoff_delays(initial, maximum)


def job_json(**overrides: Any) -> dict[str, Any]:
    """A job as the API sends it."""
    return {
        "id": 1,
        "uuid": "9b2f3c56-7a1e-4a4e-9d43-0e3a1f0c8b11",
        "job_type": "insert_csv_file",
        "data": {"s3_key": "k"},
        "queue": "default",
        "priority": 0,
        "status": "processing",
        "job_response": {"number_records_processed": 10, "number_records_failed": 2},
        "retry_count": 0,
        "retry_interval": 30,
        "run_after": None,
        "created_at": "2026-12-03T10:00:00.123456Z",
        "updated_at": "2026-12-03T10:00:01Z",
        "attempts": 1,
        "started_at": "2026-12-03T10:00:00.500000Z",
        "completed_at": None,
        "runner_id": "first_time-abc",
        "cancel_requested_at": None,
        "rescue_count": 0,
    } | overrides


def test_job_info_parses_times_status_and_progress() -> None:
    job = JobInfo.from_json(job_json())
    assert job.status is S.PROCESSING
    assert job.created_at == datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)
    assert (job.records_processed, job.records_failed, job.error_code) == (10, 2, None)
    assert not job.finished


def test_job_info_keeps_fields_of_a_newer_server_and_fills_in_for_an_older_one() -> None:
    newer = JobInfo.from_json(job_json(tenant="acme", status="completed"))
    assert newer.extra == {"tenant": "acme"}
    assert newer.finished
    seed_only = job_json()
    for name in ("queue", "priority", "attempts", "started_at", "runner_id", "rescue_count"):
        del seed_only[name]
    older = JobInfo.from_json(seed_only)
    assert (older.queue, older.priority, older.attempts, older.runner_id) == (
        "default",
        0,
        0,
        None,
    )


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            409,
            b'{"error": "ERR_JOB_FINISHED: too late", "success": false}',
            "ERR_JOB_FINISHED",
            "too late",
        ),
        (500, b'{"error": "no code here", "success": false}', "ERR_HTTP_500", "no code here"),
        (503, b"", "ERR_HTTP_503", "Service Unavailable"),
        (
            403,
            b"<Error><Code>AccessDenied</Code></Error>",
            "ERR_HTTP_403",
            "<Error><Code>AccessDenied</Code></Error>",
        ),
    ],
)
def test_error_answers_become_api_errors(status: int, body: bytes, code: str, message: str) -> None:
    error = api_error(status, body)
    assert (error.code, error.message, error.status) == (code, message, status)


def test_the_client_module_imports_no_server_layer() -> None:
    import ast

    import connectra.client

    tree = ast.parse(Path(connectra.client.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert {name for name in imported if name.startswith("connectra")} == {"connectra.jobs"}


async def test_a_download_that_fails_leaves_no_file_behind(
    client: ConnectraClient, store: JobStore, pool: asyncpg.Pool, s3_bucket: str, tmp_path: Path
) -> None:
    job = await client.create(
        "export_csv_file",
        {"service": "contact", "vql": {"select_columns": ["email"]}},
        delay_seconds=300,
    )
    await pool.execute(
        "UPDATE jobs SET status = 'completed', job_response = $2 WHERE id = $1",
        job.id,
        {"s3_key": "exports/gone.csv", "s3_bucket": s3_bucket},
    )
    error = await error_of(client.download_export(job.uuid, tmp_path / "export.csv"))
    assert (error.code, error.status) == ("ERR_HTTP_404", 404)
    assert "NoSuchKey" in error.message
    assert await listing(tmp_path) == []
