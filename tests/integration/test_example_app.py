"""The example app (`examples/webhooks.py`) end to end, in real processes: the API, a first_time
runner and a retry runner, all loaded with `--app examples.webhooks:registry`, delivering
webhooks to a receiver on loopback, and the example's cron schedule firing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from connectra.client import ConnectraClient
from connectra.jobs import JobStatus
from tests.polling import eventually
from tests.processes import Process, Spawn, free_port, spawn

__all__ = ["spawn"]

REPO = Path(__file__).resolve().parents[2]
APP = "examples.webhooks:registry"


class Receiver:
    """A webhook receiver: `/hook` fails its first call with a 503, `/ping` always answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)
        self.app.router.add_post("/ping", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append((request.path, request.headers["Idempotency-Key"], body))
        first_hook = request.path == "/hook" and len(self.paths("/hook")) == 1
        return web.Response(status=503 if first_hook else 204)

    def paths(self, path: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [call for call in self.calls if call[0] == path]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    runner = web.AppRunner(hooks.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield hooks, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def start_all(spawn: Spawn, base: str, port: int) -> list[Process]:
    env = {
        "PYTHONPATH": str(REPO),
        "API_KEYS": "example-key",
        "API_PORT": str(port),
        "EXAMPLE_PING_URL": f"{base}/ping",
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "LEASE_SECONDS": "5",
    }
    return [
        await spawn("api", "--app", APP, **env),
        await spawn("jobs", "first_time", "--app", APP, **env),
        await spawn("jobs", "retry", "--app", APP, **env),
    ]


async def test_the_example_delivers_a_webhook_retrying_a_failed_call_and_fires_its_schedule(
    spawn: Spawn, receiver: tuple[Receiver, str], pool: asyncpg.Pool
) -> None:
    hooks, base = receiver
    port = free_port()
    processes = await start_all(spawn, base, port)
    async with ConnectraClient(f"http://127.0.0.1:{port}", "example-key") as client:
        await eventually(lambda: _answers(client), within=20)
        job = await client.create(
            "send_webhook",
            {"url": f"{base}/hook", "event": "order.paid", "payload": {"order": 42}},
            retry_interval=1,
        )
        assert job.queue == "webhooks"  # the job type's default queue
        done = await client.wait(job.uuid, timeout=30)
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 2
    assert done.job_response["status_code"] == 204
    calls = hooks.paths("/hook")
    assert len(calls) == 2
    assert {key for _, key, _ in calls} == {str(job.uuid)}, "one idempotency key per job"
    assert calls[0][2]["payload"] == {"order": 42}

    # The schedule declared in the example is stored by the runner process. Pretend its last
    # tick was long ago: the runner fires the most recent tick once, not one per missed tick.
    await eventually(lambda: _declared(pool), within=20)
    await pool.execute(
        "UPDATE schedules SET last_tick_at = now() - interval '1 hour' WHERE name = 'uptime-ping'"
    )
    await eventually(lambda: _pinged(hooks), within=20)
    await asyncio.sleep(1.5)  # a second job would have been created by now
    rows = await pool.fetch("SELECT status FROM jobs WHERE data->>'event' = 'ping'")
    assert [row["status"] for row in rows] == ["completed"]
    for process in processes:
        assert process.proc.returncode is None, process.log_path.read_text()[-2000:]


async def _answers(client: ConnectraClient) -> bool:
    try:
        await client.list(limit=1)
    except OSError:
        return False
    return True


async def _declared(pool: asyncpg.Pool) -> bool:
    found = await pool.fetchval("SELECT count(*) FROM schedules WHERE name = 'uptime-ping'")
    return bool(found)


async def _pinged(hooks: Receiver) -> bool:
    return len(hooks.paths("/ping")) == 1
