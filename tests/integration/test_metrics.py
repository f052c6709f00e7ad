"""Metrics and health in process: the counters and histograms move when jobs complete, fail,
are retried, rescued and aborted; per-runner gauges; the API's request histogram and
`/metrics`; `/readyz` of a runner process (listener, heartbeats, fencing) and of the API
(live runners from the runners table)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectra import metrics as m
from connectra.api.app import create_app
from connectra.bucket_policy import BucketPolicy
from connectra.db.listener import Listener
from connectra.db.monitor_store import MonitorStore, RunnerPresence
from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, JobStatus, NewJob
from connectra.monitoring.collectors import RunnerGauges
from connectra.monitoring.health import ProcessHealth
from connectra.monitoring.web import Monitor, monitoring_app
from connectra.processors.registry import default_registry
from connectra.retry import RetryPolicy
from connectra.runners.maintenance import Cleaner, Rescuer
from connectra.settings import load_settings
from tests.integration.test_runners import config, running
from tests.polling import eventually

S = JobStatus
Client = TestClient[web.Request, web.Application]
EVERY_QUEUE = "first_time:*"


def sample(name: str, **labels: str) -> float:
    """A sample's value now (0 when the series does not exist yet)."""
    return m.REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    """How much samples moved since the block began."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self.before = {self._key(s): sample(s[0], **s[1]) for s in series}

    @staticmethod
    def _key(series: tuple[str, dict[str, str]]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return series[0], tuple(sorted(series[1].items()))

    def of(self, name: str, **labels: str) -> float:
        return sample(name, **labels) - self.before[(name, tuple(sorted(labels.items())))]


def series(name: str, **labels: str) -> tuple[str, dict[str, str]]:
    return name, labels


async def _status_is(store: JobStore, uuid: object, status: JobStatus) -> bool:
    return (await store.get(uuid)).status is status  # type: ignore[arg-type]


async def _count(pool: asyncpg.Pool, status: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM jobs WHERE status = $1", status))


@contextlib.asynccontextmanager
async def client_of(app: web.Application) -> AsyncIterator[Client]:
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


# -- jobs ------------------------------------------------------------------------------------


async def test_a_completed_job_moves_started_completed_pickup_duration_and_writer_rounds(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    moved = Deltas(
        series("connectra_jobs_started_total", job_type="noop"),
        series("connectra_jobs_completed_total", job_type="noop"),
        series("connectra_job_pickup_seconds_count", job_type="noop"),
        series("connectra_job_duration_seconds_count", job_type="noop", outcome="completed"),
        series("connectra_status_writer_round_size_sum", runner=EVERY_QUEUE),
        series("connectra_status_writer_round_seconds_count", runner=EVERY_QUEUE),
    )
    for _ in range(5):
        await store.create(NewJob("noop", {}))
    async with running(store, config()):
        await eventually(lambda: _all(pool, "completed", 5))
    assert moved.of("connectra_jobs_started_total", job_type="noop") == 5
    assert moved.of("connectra_jobs_completed_total", job_type="noop") == 5
    assert moved.of("connectra_job_pickup_seconds_count", job_type="noop") == 5
    assert (
        moved.of("connectra_job_duration_seconds_count", job_type="noop", outcome="completed") == 5
    )
    # Every start and every completion is one write of some round.
    assert moved.of("connectra_status_writer_round_size_sum", runner=EVERY_QUEUE) == 10
    assert moved.of("connectra_status_writer_round_seconds_count", runner=EVERY_QUEUE) >= 1


async def _all(pool: asyncpg.Pool, status: str, expected: int) -> bool:
    return await _count(pool, status) == expected


async def test_failures_count_as_retried_while_a_retry_is_due_and_failed_when_final(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    code = "ERR_JOB_FAILED"
    moved = Deltas(
        series("connectra_jobs_retried_total", job_type="sleep", error_code=code),
        series("connectra_jobs_failed_total", job_type="sleep", error_code=code),
        series("connectra_job_duration_seconds_count", job_type="sleep", outcome="failed"),
        series("connectra_job_duration_seconds_count", job_type="sleep", outcome="failed_final"),
    )
    retried = await store.create(
        NewJob("sleep", {"seconds": 0, "fail_attempts": 1}, retry_count=1, retry_interval=600)
    )
    final = await store.create(NewJob("sleep", {"seconds": 0, "fail_attempts": 1}))
    async with running(store, config()):
        await eventually(lambda: _status_is(store, retried.uuid, S.FAILED))
        await eventually(lambda: _status_is(store, final.uuid, S.FAILED_FINAL))
    assert moved.of("connectra_jobs_retried_total", job_type="sleep", error_code=code) == 1
    assert moved.of("connectra_jobs_failed_total", job_type="sleep", error_code=code) == 1
    for outcome in ("failed", "failed_final"):
        assert (
            moved.of("connectra_job_duration_seconds_count", job_type="sleep", outcome=outcome) == 1
        )


async def test_a_running_job_cancelled_by_a_user_counts_as_aborted(store: JobStore) -> None:
    moved = Deltas(
        series("connectra_jobs_aborted_total", job_type="sleep"),
        series("connectra_job_duration_seconds_count", job_type="sleep", outcome="aborted"),
    )
    job = await store.create(NewJob("sleep", {"seconds": 60}))
    cfg = config(heartbeat_interval=timedelta(seconds=0.1), lease=timedelta(seconds=1))
    async with running(store, cfg):
        await eventually(lambda: _status_is(store, job.uuid, S.PROCESSING))
        await store.cancel(job.uuid)
        await eventually(lambda: _status_is(store, job.uuid, S.ABORTED))
    assert moved.of("connectra_jobs_aborted_total", job_type="sleep") == 1
    assert (
        moved.of("connectra_job_duration_seconds_count", job_type="sleep", outcome="aborted") == 1
    )


async def test_a_rescued_job_counts_by_the_status_it_went_to(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    moved = Deltas(
        series("connectra_jobs_rescued_total", job_type="noop", status="open"),
        series("connectra_jobs_rescued_total", job_type="noop", status="failed_final"),
    )
    await store.create(NewJob("noop", {}))
    await store.create(NewJob("noop", {}))
    _queued, running_job = await store.claim(FIRST_TIME, "dead-runner", 2)
    await store.start(running_job, FIRST_TIME, "dead-runner")
    await pool.execute("UPDATE jobs SET heartbeat_at = now() - interval '5 minutes'")
    assert await Rescuer(store, RetryPolicy(), timedelta(seconds=60)).rescue_once() == 2
    assert moved.of("connectra_jobs_rescued_total", job_type="noop", status="open") == 1
    assert moved.of("connectra_jobs_rescued_total", job_type="noop", status="failed_final") == 1


async def test_with_metrics_off_a_runner_records_nothing(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    moved = Deltas(series("connectra_jobs_completed_total", job_type="noop"))
    await store.create(NewJob("noop", {}))
    from connectra.runners.runner import Runner, Stopping

    settings = load_settings(METRICS_ENABLED="false")
    runner = Runner(store, default_registry(), settings, config())
    stopping = Stopping()
    task = asyncio.create_task(runner.run(stopping))
    try:
        await eventually(lambda: _all(pool, "completed", 1))
    finally:
        stopping.request()
        await asyncio.wait_for(task, 30)
    assert moved.of("connectra_jobs_completed_total", job_type="noop") == 0


# -- per-runner gauges -----------------------------------------------------------------------


async def test_runner_gauges_show_the_queue_and_busy_slots_labelled_by_kind_and_queues(
    store: JobStore,
) -> None:
    for _ in range(3):
        await store.create(NewJob("sleep", {"seconds": 60}, queue="reports"))
    cfg = config(concurrency=2, queues=("reports",), shutdown_grace=timedelta(0))
    async with running(store, cfg) as (runner, _):

        async def two_busy_one_waiting() -> bool:
            return (runner.busy_slots(), runner.queue_depth()) == (2, 1)

        await eventually(two_busy_one_waiting)
        families = {f.name: f for f in RunnerGauges([runner]).collect()}
    values = {name: [(s.labels, s.value) for s in f.samples] for name, f in families.items()}
    label = {"runner": "first_time:reports"}
    assert values["connectra_runner_busy_slots"] == [(label, 2)]
    assert values["connectra_runner_queue_depth"] == [(label, 1)]
    assert values["connectra_runner_slots"] == [(label, 2)]
    [(_, age)] = values["connectra_runner_heartbeat_age_seconds"]
    assert 0 <= age < 10


# -- the API ---------------------------------------------------------------------------------


def _api(store: JobStore, **overrides: object) -> web.Application:
    settings = load_settings(**({"API_KEYS": "k1"} | overrides))
    return create_app(store, default_registry(), settings)


async def test_api_requests_are_timed_by_method_route_and_status(store: JobStore) -> None:
    name = "connectra_http_request_duration_seconds_count"
    moved = Deltas(
        series(name, method="GET", route="/common/jobs/{uuid}", status="404"),
        series(name, method="POST", route="/common/jobs/create", status="201"),
        series(name, method="GET", route="unmatched", status="404"),
        series(name, method="other", route="unmatched", status="405"),
    )
    async with client_of(_api(store)) as client:
        auth = {"X-API-Key": "k1"}
        assert (await client.get(f"/common/jobs/{uuid4()}", headers=auth)).status == 404
        body = {"job_type": "noop", "job_data": {}}
        created = await client.post("/common/jobs/create", json=body, headers=auth)
        assert created.status == 201
        assert (await client.get("/no/such/path")).status == 404
        assert (await client.request("TRACE", "/healthz")).status == 405
    assert moved.of(name, method="GET", route="/common/jobs/{uuid}", status="404") == 1
    assert moved.of(name, method="POST", route="/common/jobs/create", status="201") == 1
    assert moved.of(name, method="GET", route="unmatched", status="404") == 1
    assert moved.of(name, method="other", route="unmatched", status="405") == 1


async def test_cancelling_a_waiting_job_through_the_api_counts_as_aborted(store: JobStore) -> None:
    moved = Deltas(series("connectra_jobs_aborted_total", job_type="noop"))
    job = await store.create(NewJob("noop", {}))
    async with client_of(_api(store)) as client:
        answer = await client.post(f"/common/jobs/{job.uuid}/cancel", headers={"X-API-Key": "k1"})
        assert answer.status == 200
    assert moved.of("connectra_jobs_aborted_total", job_type="noop") == 1


async def test_api_metrics_serve_jobs_by_status_and_queue_and_live_runners(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    for queue in ("default", "default", "reports"):
        await store.create(NewJob("noop", {}, queue=queue))
    await store.create(NewJob("noop", {}, delay_seconds=3600))
    await pool.execute("ANALYZE jobs")
    await MonitorStore(pool).runner_seen(_presence("first_time:test:1"))
    async with client_of(_api(store)) as client:
        answer = await client.get("/metrics")
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await answer.text()
    assert 'connectra_jobs{queue="default",status="open"} 2.0' in text
    assert 'connectra_jobs{queue="reports",status="open"} 1.0' in text
    assert 'connectra_jobs{queue="default",status="scheduled"} 1.0' in text
    assert 'connectra_runners_live{kind="first_time"} 1.0' in text
    assert "# TYPE connectra_jobs_started_total counter" in text
    assert "connectra_process_resident_memory_bytes" in text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert all(name.startswith("connectra_") for name in names), names


async def test_with_metrics_off_the_api_serves_no_metrics(store: JobStore) -> None:
    async with client_of(_api(store, METRICS_ENABLED="false")) as client:
        assert (await client.get("/metrics")).status == 404
        assert (await client.get("/readyz")).status == 200


def _presence(runner_id: str, interval: float = 5.0) -> RunnerPresence:
    return RunnerPresence(
        runner_id=runner_id,
        kind="first_time",
        queues=None,
        host="test-host",
        pid=1,
        heartbeat_interval=timedelta(seconds=interval),
    )


async def test_api_readyz_reports_live_runners_and_no_live_runner_is_not_a_failure(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    async with client_of(_api(store)) as client:
        answer = await client.get("/readyz")
        assert answer.status == 200
        assert await answer.json() == {
            "status": "ready",
            "database": "ok",
            "runners": {"live": 0, "last_seen_seconds": None},
            "problems": [],
        }
        async with running(store, config()):
            answers: list[dict[str, Any]] = []

            async def announced() -> bool:
                answers.append(await (await client.get("/readyz")).json())
                return bool(answers[-1]["runners"]["live"])  # the runner's first write

            await eventually(announced, within=10)
            assert answers[-1]["runners"]["live"] == 1
            assert 0 <= answers[-1]["runners"]["last_seen_seconds"] < 5
        # A runner that stops deletes its row.
        body = await (await client.get("/readyz")).json()
        assert body["runners"] == {"live": 0, "last_seen_seconds": None}
        # A runner that died: its row stays, no longer live, until the cleaner deletes it.
        await MonitorStore(pool).runner_seen(_presence("dead", interval=1))
        await pool.execute("UPDATE runners SET last_seen_at = now() - interval '30 seconds'")
        body = await (await client.get("/readyz")).json()
        assert body["runners"]["live"] == 0
        assert 29 < body["runners"]["last_seen_seconds"] < 60


async def test_the_cleaner_deletes_rows_of_runners_not_seen_for_a_day(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    monitor = MonitorStore(pool)
    await monitor.runner_seen(_presence("old"))
    await monitor.runner_seen(_presence("recent"))
    await pool.execute(
        "UPDATE runners SET last_seen_at = now() - interval '25 hours' WHERE id = 'old'"
    )
    cleaner = Cleaner(store, None, timedelta(days=7), timedelta(days=7), BucketPolicy())
    await cleaner.clean_once()
    assert [r["id"] for r in await pool.fetch("SELECT id FROM runners")] == ["recent"]


async def test_api_readyz_is_503_when_the_database_is_unreachable(
    database_url: str, store: JobStore
) -> None:
    from connectra.db.pool import create_pool

    doomed = await create_pool(database_url, max_size=2)
    await doomed.close()  # every call now fails with InterfaceError: "pool is closed"
    async with client_of(_api(JobStore(doomed))) as client:
        answer = await client.get("/readyz")
        assert answer.status == 503
        body = await answer.json()
    assert body["status"] == "unavailable"
    assert body["database"].startswith("unreachable")
    assert body["problems"] == [f"database {body['database']}"]


# -- a runner process's /readyz, in process ----------------------------------------------------


Ready = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


def _readiness_of(client: Client) -> Ready:
    async def ready() -> tuple[int, dict[str, Any]]:
        answer = await client.get("/readyz")
        return answer.status, await answer.json()

    return ready


async def test_runner_readyz_turns_unready_when_heartbeats_fail_and_the_runner_is_fenced(
    store: JobStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(heartbeat_interval=timedelta(seconds=0.1), lease=timedelta(seconds=2))
    async with running(store, cfg) as (runner, _):
        monitor = Monitor(ProcessHealth(pool, [runner]))
        async with client_of(monitoring_app(monitor)) as client:
            ready = _readiness_of(client)
            status, body = await ready()
            assert status == 200, body
            assert body["heartbeats"][EVERY_QUEUE]["fenced"] is False
            assert (await client.get("/healthz")).status == 200
            assert (await client.get("/metrics")).status == 200

            async def unreachable(*_: object) -> dict[int, bool]:
                raise ConnectionResetError("database unreachable")

            monkeypatch.setattr(store, "heartbeat", unreachable)

            async def stale() -> bool:
                status, body = await ready()
                return status == 503 and "last heartbeat round" in body["problems"][0]

            await eventually(stale, within=5)

            async def fenced() -> bool:
                status, body = await ready()
                return status == 503 and body["heartbeats"][EVERY_QUEUE]["fenced"] is True

            await eventually(fenced, within=5)
            _, body = await ready()
            assert body["status"] == "unavailable"
            assert body["problems"][0].startswith(f"{EVERY_QUEUE}: fenced")


async def test_runner_readyz_turns_unready_while_the_listener_is_disconnected(
    database_url: str, pool: asyncpg.Pool
) -> None:
    listener = Listener(database_url, on_notify=lambda _: None, on_connect=lambda: None)
    stop = asyncio.Event()
    listening = asyncio.create_task(listener.run(stop))
    try:
        monitor = Monitor(ProcessHealth(pool, (), listener))
        async with client_of(monitoring_app(monitor)) as client:
            ready = _readiness_of(client)

            async def status_is(expected: int) -> bool:
                return (await ready())[0] == expected

            await eventually(lambda: status_is(200))
            assert (await ready())[1]["listener"] == "ok"
            await pool.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            )
            await eventually(lambda: status_is(503), within=5)
            _, body = await ready()
            assert body["listener"] == "disconnected"
            assert body["problems"] == ["listener disconnected: new jobs wait for the next tick"]
    finally:
        stop.set()
        await asyncio.wait_for(listening, 10)
