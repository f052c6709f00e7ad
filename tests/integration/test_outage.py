"""A PostgreSQL restart under a live API and runner: nothing crashes, nothing is lost or stuck.

The outage needs a server of its own, so this test starts a private embedded PostgreSQL
(pgserver) and stops and starts it while `connectra api` and `connectra jobs first_time` run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from connectra.db.migrate import migrate
from tests.polling import eventually
from tests.processes import free_port


class PrivateServer:
    """An embedded PostgreSQL that a test may stop and start."""

    def __init__(self, folder: Path) -> None:
        from pgserver.postgres_server import get_server

        self.data = folder / "data"
        self.server = get_server(self.data, cleanup_mode="delete")
        self.url: str = self.server.get_uri()
        self.socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", *args], pgdata=self.data, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        log = str(self.data / "log")
        self._pg_ctl("-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start")


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    with tempfile.TemporaryDirectory(prefix="connectra-outage-") as folder:
        server = PrivateServer(Path(folder))
        try:
            yield server
        finally:
            server.server.cleanup()


@pytest.fixture
async def daemons(
    private_server: PrivateServer, tmp_path: Path
) -> AsyncIterator[tuple[str, list[asyncio.subprocess.Process]]]:
    conn = await asyncpg.connect(private_server.url)
    await migrate(conn)
    await conn.close()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": private_server.url,
        "API_KEYS": "k",
        "API_PORT": str(port),
        "TICKER_INTERVAL_SECONDS": "0.5",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "METRICS_PORT": "0",
    }
    procs = []
    for role in (["api"], ["jobs", "first_time"]):
        with (tmp_path / f"{role[-1]}.log").open("wb") as log:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "connectra", *role, env=env, stdout=log, stderr=log
                )
            )
    try:
        yield f"http://127.0.0.1:{port}", procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()


async def test_api_and_runner_survive_a_database_restart(
    private_server: PrivateServer,
    daemons: tuple[str, list[asyncio.subprocess.Process]],
    tmp_path: Path,
) -> None:
    base, procs = daemons
    headers = {"X-API-Key": "k"}
    async with aiohttp.ClientSession(base) as http:

        async def ready_is(expected: int) -> bool:
            try:
                async with http.get("/readyz") as response:
                    return response.status == expected
            except aiohttp.ClientConnectionError:
                return False

        async def create() -> str:
            body = {"job_type": "sleep", "job_data": {"seconds": 0.1}}
            async with http.post("/common/jobs/create", json=body, headers=headers) as response:
                assert response.status == 201, await response.text()
                return str((await response.json())["uuid"])

        await eventually(lambda: ready_is(200))
        before = [await create() for _ in range(5)]

        await asyncio.to_thread(private_server.stop)
        await eventually(lambda: ready_is(503), within=10)
        async with http.post("/common/jobs", json={}, headers=headers) as response:
            assert response.status == 503
            assert (await response.json())["error"].startswith("ERR_DATABASE_UNAVAILABLE")
        await asyncio.sleep(2)  # the point: both daemons live through a while without it
        assert [proc.returncode for proc in procs] == [None, None], "a daemon died"

        await asyncio.to_thread(private_server.start)
        await eventually(lambda: ready_is(200), within=20)
        after = [await create() for _ in range(5)]

        async def all_completed() -> bool:
            async with http.post("/common/jobs", json={"limit": 100}, headers=headers) as resp:
                if resp.status != 200:
                    return False
                jobs = (await resp.json())["data"]
                return {job["uuid"] for job in jobs if job["status"] == "completed"} == {
                    *before,
                    *after,
                }

        try:
            await eventually(all_completed, within=30)
        except AssertionError:
            async with http.post("/common/jobs", json={"limit": 100}, headers=headers) as resp:
                for job in (await resp.json())["data"]:
                    print(job["id"], job["status"], job["attempts"], job["runner_id"])
            print(await asyncio.to_thread(_log_tails, tmp_path))
            raise
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    assert [await asyncio.wait_for(proc.wait(), 20) for proc in procs] == [0, 0]


def _log_tails(folder: Path, lines: int = 60) -> str:
    """The last lines of each daemon's log, to tell why a test failed."""
    parts = []
    for log in sorted(folder.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name} (last {lines} lines)\n" + "\n".join(tail))
    return "\n".join(parts)
