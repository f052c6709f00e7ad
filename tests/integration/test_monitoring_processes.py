"""Real processes: a `connectra jobs first_time` with METRICS_PORT answers /metrics, /healthz
and /readyz; `connectra healthcheck` exits 0 or 1; a taken port stops the runner loudly."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from connectra.db.store import JobStore
from connectra.jobs import NewJob
from tests.polling import eventually
from tests.processes import Process, Spawn, free_port, spawn

__all__ = ["spawn"]  # the fixture, requested by name


async def healthcheck(*args: str, **env: str) -> tuple[int, str, str]:
    """Run `connectra healthcheck ARGS`; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connectra", "healthcheck", *args,
        env={"PATH": "/usr/bin:/bin", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def get(http: aiohttp.ClientSession, path: str) -> tuple[int, str]:
    async with http.get(path) as answer:
        return answer.status, await answer.text()


@pytest.fixture
async def runner(spawn: Spawn) -> AsyncIterator[tuple[Process, int]]:
    """A first_time runner with its metrics listener on a free port, once it listens."""
    port = free_port()
    process = await spawn(
        "jobs", "first_time", METRICS_PORT=str(port), HEARTBEAT_INTERVAL_SECONDS="0.5",
        LEASE_SECONDS="5",
    )  # fmt: skip
    await process.until_logged("metrics_listen")
    yield process, port
    if process.proc.returncode is None:
        assert await process.stop() == 0


async def test_a_runner_process_serves_metrics_healthz_and_readyz(
    runner: tuple[Process, int], store: JobStore, pool: asyncpg.Pool
) -> None:
    process, port = runner
    for _ in range(3):
        await store.create(NewJob("noop", {}))

    async def completed() -> bool:
        done = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
        return bool(done == 3)

    await eventually(completed)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        status, text = await get(http, "/healthz")
        assert (status, text) == (200, '{"status": "ok"}')

        async def ready() -> bool:
            return (await get(http, "/readyz"))[0] == 200

        await eventually(ready)
        async with http.get("/readyz") as answer:
            body: dict[str, Any] = await answer.json()
        assert body["database"] == "ok"
        assert body["listener"] == "ok"
        assert body["heartbeats"]["first_time:*"]["fenced"] is False
        assert body["problems"] == []

        async def counted() -> bool:
            _, text = await get(http, "/metrics")
            return 'connectra_jobs_completed_total{job_type="noop"} 3.0' in text

        await eventually(counted, within=5)
        _, text = await get(http, "/metrics")
    assert 'connectra_runner_slots{runner="first_time:*"}' in text
    assert 'connectra_job_pickup_seconds_count{job_type="noop"} 3.0' in text
    assert "connectra_status_writer_round_size_bucket" in text
    # The runners table knows it.
    row = await pool.fetchrow("SELECT kind, queues, pid FROM runners")
    assert (row["kind"], row["queues"], row["pid"]) == ("first_time", None, process.proc.pid)

    code, out, _ = await healthcheck("--url", f"http://127.0.0.1:{port}/readyz")
    assert (code, out.strip()) == (0, f"http://127.0.0.1:{port}/readyz: 200 ready")
    # With no --url: nothing listens on API_PORT, so the runner's listener is asked.
    code, _, err = await healthcheck(API_PORT=str(free_port()), METRICS_PORT=str(port))
    assert code == 0, err

    process.send(signal.SIGTERM)
    assert await process.wait(30) == 0
    assert await pool.fetchval("SELECT count(*) FROM runners") == 0  # it said it stopped
    code, _, err = await healthcheck("--url", f"http://127.0.0.1:{port}/readyz")
    assert code == 1
    assert err.startswith(f"not ready: http://127.0.0.1:{port}/readyz: ")
    assert "Connection refused" in err
    assert len(err.strip().splitlines()) == 1


async def test_healthcheck_exits_1_with_the_problems_of_an_unready_process() -> None:
    async def unready(_request: web.Request) -> web.Response:
        body = {"status": "unavailable", "problems": ["listener disconnected", "x: fenced"]}
        return web.json_response(body, status=503)

    app = web.Application()
    app.router.add_get("/readyz", unready)
    server = web.AppRunner(app)
    await server.setup()
    port = free_port()
    await web.TCPSite(server, "127.0.0.1", port).start()
    try:
        code, _, err = await healthcheck("--url", f"http://127.0.0.1:{port}/readyz")
    finally:
        await server.cleanup()
    assert code == 1
    assert err.strip() == (
        f"not ready: http://127.0.0.1:{port}/readyz: 503 listener disconnected; x: fenced"
    )


async def test_a_runner_whose_metrics_port_is_taken_stops_with_one_line(spawn: Spawn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await spawn("jobs", "first_time", METRICS_PORT=str(port))
        assert await process.wait(60) == 1
    # The error line, beside the JSON log lines (written at exit by the log writer thread).
    errors = [line for line in process.log_lines() if not line.startswith("{")]
    assert len(errors) == 1, process.log_lines()
    [error] = errors
    assert error.startswith(f"ERR_LISTEN: cannot listen on 127.0.0.1:{port} (METRICS_HOST, ")
