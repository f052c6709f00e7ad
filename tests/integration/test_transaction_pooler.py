"""Connectra behind a real PgBouncer in transaction mode (`DATABASE_TRANSACTION_POOLER`).

PgBouncer runs with two server connections per database, so that every client's consecutive
transactions share and swap server connections. Without `/usr/sbin/pgbouncer` the tests are
skipped, except when `CI` is set: there they fail (`.ci/run` installs it). They need the test
PostgreSQL on TCP (not the embedded server's Unix socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from connectra.client import ConnectraClient
from connectra.db.migrate import load_migrations
from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from connectra.jobs import JobStatus, NewJob
from connectra.logs import BoundLogger
from connectra.objectstore import ObjectStore
from connectra.processors.base import JobContext, Services
from connectra.processors.importing.job_type import INSERT_CSV_FILE
from connectra.settings import load_settings
from tests.polling import eventually
from tests.processes import Process, Spawn, free_port, spawn
from tests.services import moto_process_env

__all__ = ["spawn"]  # the fixture, requested by name

PGBOUNCER = Path("/usr/sbin/pgbouncer")
API_KEY = "pooler-key"
POOLED = {"DATABASE_TRANSACTION_POOLER": "true"}
CONTACTS_HEADER = "uuid,first_name,email,country"
UNFINISHED = {JobStatus.OPEN, JobStatus.IN_QUEUE, JobStatus.PROCESSING}


def _config(server: str, port: int, server_connections: int) -> str:
    """PgBouncer in transaction mode in front of `server`'s every database, as its user."""
    parts = urlsplit(server)
    login = f"host={parts.hostname} port={parts.port or 5432} user={parts.username or 'postgres'}"
    if parts.password:
        login += f" password={parts.password}"
    return f"""
[databases]
* = {login}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {server_connections}
max_client_conn = 200
"""


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until PgBouncer accepts connections (a sync fixture: no event loop to block)."""
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, log.read_text()[-2000:]
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, "PgBouncer did not start: " + log.read_text()[-2000:]
        time.sleep(0.05)


def _require_pgbouncer(admin_dsn: str) -> None:
    """Skip (fail under CI) where there is no PgBouncer, or no PostgreSQL on TCP to front."""
    if not PGBOUNCER.exists():
        message = f"{PGBOUNCER} is missing: apt-get install pgbouncer"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    parts = urlsplit(admin_dsn)
    if not parts.hostname or parts.hostname.startswith("/") or "host" in parse_qs(parts.query):
        pytest.skip("the test PostgreSQL is not on TCP")


@contextlib.contextmanager
def running_pgbouncer(admin_dsn: str, server_connections: int) -> Iterator[int]:
    """A PgBouncer in transaction mode on a free port, with this many server connections per
    database, until the block ends."""
    _require_pgbouncer(admin_dsn)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="connectra-pgbouncer-") as folder:
        os.chmod(folder, 0o755)  # readable by the user PgBouncer switches to under root
        config = Path(folder) / "pgbouncer.ini"
        config.write_text(_config(admin_dsn, port, server_connections))
        log = Path(folder) / "pgbouncer.log"
        as_user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
        with log.open("wb") as out:
            proc = subprocess.Popen([PGBOUNCER, *as_user, str(config)], stdout=out, stderr=out)
        try:
            _wait_for_port(port, proc, log)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="session")
def pgbouncer(admin_dsn: str) -> Iterator[int]:
    """Two server connections per database: every client's consecutive transactions share
    and swap them."""
    with running_pgbouncer(admin_dsn, server_connections=2) as port:
        yield port


def pooled(url: str, port: int) -> str:
    """The same database, through PgBouncer."""
    parts = urlsplit(url)
    login = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{login}@127.0.0.1:{port}" if login else f"127.0.0.1:{port}")
    )


@pytest.fixture
async def pooled_url(database_url: str, pgbouncer: int) -> str:
    """The test's (migrated, emptied) database through PgBouncer."""
    return pooled(database_url, pgbouncer)


async def readyz(port: int) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{port}/readyz"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return answer.status, await answer.json()


async def stop(*processes: Process) -> None:
    for process in processes:
        process.send(signal.SIGTERM)
    for process in processes:
        assert await process.wait(30) == 0, process.log_path.read_text()[-3000:]


async def test_migrate_runner_and_api_work_through_the_pooler_with_listen_on_the_direct_url(
    spawn: Spawn, empty_database_url: str, pgbouncer: int
) -> None:
    url = pooled(empty_database_url, pgbouncer)
    # Two migrators at once, through the pooler: each migration is applied once.
    migrators = [await spawn("migrate", DATABASE_URL=url, **POOLED) for _ in range(2)]
    for migrator in migrators:
        assert await migrator.wait(60) == 0, migrator.log_path.read_text()[-3000:]
    outputs = [migrator.output().strip() for migrator in migrators]
    applied = [v for out in outputs if out.startswith("applied: ") for v in out[9:].split(", ")]
    assert sorted(applied) == [m.version for m in load_migrations()], outputs

    metrics_port, api_port = free_port(), free_port()
    env = {
        "DATABASE_URL": url,
        "DATABASE_DIRECT_URL": empty_database_url,
        "TICKER_INTERVAL_SECONDS": "300",  # only LISTEN/NOTIFY can wake the runner
        "API_KEYS": API_KEY,
        **POOLED,
    }
    runner = await spawn("jobs", "first_time", METRICS_PORT=str(metrics_port), **env)
    api = await spawn("api", API_PORT=str(api_port), **env)
    await runner.until_logged("listen", within=20)
    await api.until_logged("api_listen", within=20)

    async with ConnectraClient(f"http://127.0.0.1:{api_port}", API_KEY) as client:
        jobs = await asyncio.gather(
            client.create("sleep", {"seconds": 0.3}),
            *(client.create("noop", {}) for _ in range(50)),
        )
        done = await asyncio.gather(*(client.wait(job.uuid, timeout=30) for job in jobs))
        assert {job.status for job in done} == {JobStatus.COMPLETED}
        began = time.monotonic()
        job = await client.create("noop", {})
        assert (await client.wait(job.uuid, timeout=10)).status is JobStatus.COMPLETED
        assert time.monotonic() - began < 2, "picked up at once: LISTEN on the direct URL"

    status, body = await readyz(metrics_port)
    assert (status, body["listener"]) == (200, "ok"), body
    assert (await readyz(api_port))[0] == 200
    await stop(runner, api)


async def test_without_a_direct_url_runners_poll_stay_ready_and_say_so(
    spawn: Spawn, pooled_url: str
) -> None:
    metrics_port = free_port()
    runner = await spawn(
        "jobs", "first_time", DATABASE_URL=pooled_url, METRICS_PORT=str(metrics_port),
        TICKER_INTERVAL_SECONDS="0.3", **POOLED,
    )  # fmt: skip
    await runner.until_logged("metrics_listen", within=20)

    pool = await create_pool(pooled_url, max_size=4, transaction_pooler=True)
    try:
        store = JobStore(pool)
        jobs = [await store.create(NewJob("noop", {})) for _ in range(20)]

        async def all_completed() -> bool:
            assert runner.proc.returncode is None, runner.log_path.read_text()[-3000:]
            found = [await store.get(job.uuid) for job in jobs]
            return all(job is not None and job.status is JobStatus.COMPLETED for job in found)

        await eventually(all_completed, within=20)
    finally:
        await pool.close()

    status, body = await readyz(metrics_port)
    assert status == 200, body
    assert "listener" not in body  # nothing listens, so nothing to report disconnected
    warnings = [e for e in runner.events() if e.get("action") == "listen_off"]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert "TICKER_INTERVAL_SECONDS" in str(warnings[0]["message"])
    await stop(runner)


async def _concurrent_queries(url: str) -> None:
    """Twenty tasks of parameterised queries and transactions on a pool of eight, made as the
    product makes its pools behind a transaction pooler."""
    pool = await create_pool(url, max_size=8, transaction_pooler=True)

    async def work(i: int) -> None:
        for _ in range(10):
            assert await pool.fetchval("SELECT $1::int + 1", i) == i + 1
            async with pool.acquire() as conn, conn.transaction():
                assert await conn.fetchval("SELECT count(*) FROM jobs WHERE id > $1", i) == 0

    try:
        async with asyncio.TaskGroup() as tasks:
            for i in range(20):
                tasks.create_task(work(i))
    finally:
        await pool.close()


async def test_through_the_pooler_concurrent_queries_work_with_the_setting(
    pooled_url: str,
) -> None:
    await _concurrent_queries(pooled_url)


async def _query_around_another_clients_deallocate(url: str, *, transaction_pooler: bool) -> None:
    """A query, another client's `DEALLOCATE ALL`, the same query again; through a pooler with
    one server connection, both clients' statements run on it."""
    pool = await create_pool(url, max_size=1, transaction_pooler=transaction_pooler)
    other = await asyncpg.connect(url, statement_cache_size=0)
    try:
        assert await pool.fetchval("SELECT $1::int", 1) == 1
        await other.execute("DEALLOCATE ALL")
        assert await pool.fetchval("SELECT $1::int", 2) == 2
    finally:
        await other.close()
        await pool.close()


async def test_without_the_setting_a_cached_statement_is_lost_to_another_client(
    admin_dsn: str, database_url: str
) -> None:
    # The failure documented in docs/operations/pgbouncer.md, made certain: with one server
    # connection, what one client's transaction does to the session is the other's too.
    with running_pgbouncer(admin_dsn, server_connections=1) as port:
        url = pooled(database_url, port)
        with pytest.raises(asyncpg.PostgresError, match="prepared statement"):
            await _query_around_another_clients_deallocate(url, transaction_pooler=False)
        await _query_around_another_clients_deallocate(url, transaction_pooler=True)


def contacts_csv(start: int, count: int) -> str:
    lines = [
        f"00000000-0000-0000-0000-{i:012d},First{i},user{i}@example.com,{'US' if i % 2 else 'DE'}"
        for i in range(start, start + count)
    ]
    return "\n".join([CONTACTS_HEADER, *lines]) + "\n"


async def test_a_csv_import_copies_through_the_pooler(
    pooled_url: str, pool: asyncpg.Pool, object_store: ObjectStore, s3_bucket: str
) -> None:
    settings = load_settings(
        DATABASE_URL=pooled_url,
        BATCH_SIZE_FOR_INSERTION=7,  # many batches, on both lanes of the sink
        S3_ALLOWED_BUCKETS=s3_bucket,
        **POOLED,
    )
    through = await create_pool(pooled_url, max_size=10, transaction_pooler=True)
    try:
        for start, count in ((0, 100), (50, 100)):  # the second updates half of the first
            await object_store.put_bytes(s3_bucket, "in.csv", contacts_csv(start, count).encode())
            job = await JobStore(through).create(
                NewJob("insert_csv_file", {"s3_key": "in.csv", "s3_bucket": s3_bucket})
            )
            ctx = JobContext(
                job=job,
                attempt=1,
                settings=settings,
                log=BoundLogger(logging.getLogger("test"), {}),
                services=Services(pool=through, objects=object_store),
            )
            result = await INSERT_CSV_FILE.run(ctx)
            assert result is not None
            assert (result["number_records_processed"], result["number_records_failed"]) == (
                count,
                0,
            )
    finally:
        await through.close()
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 150
    assert (
        await pool.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'import_staging_%'")
        == 0
    ), "no staging table outlives its transaction"


async def test_a_runner_process_imports_a_csv_in_many_batches_through_the_pooler(
    spawn: Spawn,
    pooled_url: str,
    database_url: str,
    store: JobStore,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    csv = contacts_csv(0, 150)
    await object_store.put_bytes(s3_bucket, "runner.csv", csv.encode())
    job = await store.create(
        NewJob("insert_csv_file", {"s3_key": "runner.csv", "s3_bucket": s3_bucket})
    )
    runner = await spawn(
        "jobs", "first_time",
        DATABASE_URL=pooled_url,
        DATABASE_DIRECT_URL=database_url,
        BATCH_SIZE_FOR_INSERTION="7",  # 22 batch transactions through the pooler
        ELASTICSEARCH_URL="",
        **moto_process_env(s3_endpoint, s3_bucket),
        **POOLED,
    )  # fmt: skip

    async def finished() -> bool:
        assert runner.proc.returncode is None, runner.log_path.read_text()[-3000:]
        return (await store.get(job.uuid)).status not in UNFINISHED

    await eventually(finished, within=20)
    done = await store.get(job.uuid)
    assert done.status is JobStatus.COMPLETED, (done.job_response, runner.log_lines()[-20:])
    assert done.job_response is not None
    assert (
        done.job_response["number_records_processed"],
        done.job_response["number_records_failed"],
    ) == (150, 0)

    expected = [line.split(",") for line in csv.splitlines()[1:]]
    rows = await pool.fetch("SELECT uuid::text, first_name, email, country FROM contacts")
    assert len(rows) == 150
    assert sorted(tuple(row) for row in rows) == sorted(tuple(row) for row in expected)
    assert (
        await pool.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'import_staging_%'")
        == 0
    ), "no staging table outlives its transaction"
    await stop(runner)
