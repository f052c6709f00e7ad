"""Real PostgreSQL for every test: one database migrated once per run (per pytest-xdist
worker), emptied before each test.

Where the server comes from, in order: `CONNECTRA_TEST_DATABASE_URL`; a testcontainers
PostgreSQL when a Docker engine answers; the local server on 127.0.0.1:5432; an embedded
PostgreSQL (pgserver) in a temporary folder.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from connectra.db.migrate import migrate
from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from tests.services import (
    docker_available,
    es_client,
    es_url,
    object_store,
    s3_bucket,
    s3_endpoint,
)

# Fixtures of the S3 and Elasticsearch test services, available to every test.
__all__ = ["es_client", "es_url", "object_store", "s3_bucket", "s3_endpoint"]

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(dsn: str, name: str) -> str:
    """The same server, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _reachable(dsn: str) -> bool:
    """Whether a server answers at this DSN."""
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


Source = Literal["explicit", "docker", "local", "embedded"]
CONTAINER_IMAGE = "postgres:16-alpine"


@functools.cache
def server_source() -> Source:
    """Where this run's PostgreSQL comes from (see the module docstring), decided once."""
    if os.environ.get("CONNECTRA_TEST_DATABASE_URL"):
        return "explicit"
    if docker_available():
        return "docker"
    if asyncio.run(_reachable(LOCAL_SERVER)):
        return "local"
    return "embedded"


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    """A DSN with rights to create databases."""
    source = server_source()
    if source == "explicit":
        yield os.environ["CONNECTRA_TEST_DATABASE_URL"]
    elif source == "docker":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(CONTAINER_IMAGE, driver=None) as container:
            yield container.get_connection_url()
    elif source == "local":
        yield LOCAL_SERVER
    else:
        yield from _embedded_server()


def pytest_report_header(config: pytest.Config) -> str:
    """Say which PostgreSQL the run uses, at the top of its output."""
    source = server_source()
    if source == "docker":
        return f"PostgreSQL: a testcontainers {CONTAINER_IMAGE} (Docker)"
    if source == "embedded":
        return "PostgreSQL: embedded (pgserver) in a temporary folder, started for this run"
    if source == "explicit":
        dsn = os.environ["CONNECTRA_TEST_DATABASE_URL"]
        where = f"CONNECTRA_TEST_DATABASE_URL={_without_password(dsn)}"
    else:
        dsn = LOCAL_SERVER
        where = f"the local server {_host_and_port(dsn)}"
    return f"PostgreSQL: {where} ({asyncio.run(_server_version(dsn))})"


def _without_password(dsn: str) -> str:
    """The DSN with any password replaced by `***`."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + parts.netloc.rpartition("@")[2]))


def _host_and_port(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port or 5432}"


async def _server_version(dsn: str) -> str:
    """`server 16.4`, or why it could not be asked."""
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"not answering: {type(exc).__name__}"
    try:
        # For example "15.20 (Debian 15.20-0+deb12u1)".
        version = await conn.fetchval("SHOW server_version")
        return f"server {version.split()[0]}"
    finally:
        await conn.close()


def _embedded_server() -> Iterator[str]:
    """An embedded PostgreSQL in a temporary folder, removed afterwards."""
    import pgserver

    with tempfile.TemporaryDirectory(prefix="connectra-test-pg-") as folder:
        server = pgserver.get_server(os.path.join(folder, "data"), cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
async def session_database(admin_dsn: str) -> AsyncIterator[str]:
    """One migrated database for the whole run (for each worker under pytest-xdist), dropped
    at the end."""
    name = f"connectra_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(admin_dsn, name)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield url
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# The tables a test wrote to: any row ever written (even deleted or rolled back) leaves the
# table a page; a table emptied by TRUNCATE has none.
WRITTEN_TABLES = """
SELECT coalesce(string_agg(format('%I', c.relname), ', '), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'schema_migrations'
  AND pg_relation_size(c.oid) > 0
"""
# Every sequence used since its last reset starts again (as TRUNCATE ... RESTART IDENTITY).
RESTART_SEQUENCES = """
SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false)
FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL
"""


class Emptier:
    """Empties the run's database between tests, on one connection kept for the run.

    Only the tables a test wrote to are truncated: a TRUNCATE of every table cost about
    60 ms a test (a new file per table and index), a connection per test another 20 ms.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: asyncpg.Connection | None = None

    async def empty(self) -> None:
        try:
            await self._empty()
        except (asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
            await self.close()  # a test ended our backend? Once more, on a new connection.
            await self._empty()

    async def _empty(self) -> None:
        if self.conn is None or self.conn.is_closed():
            self.conn = await asyncpg.connect(self.url)
            # Nothing written here needs to outlive a crash: no wait for the WAL flush.
            await self.conn.execute("SET synchronous_commit = off")
        names = await self.conn.fetchval(WRITTEN_TABLES)
        if names:
            await self.conn.execute(f"TRUNCATE {names} CASCADE")
        await self.conn.execute(RESTART_SEQUENCES)

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.terminate()
            self.conn = None


@pytest.fixture(scope="session")
async def emptier(session_database: str) -> AsyncIterator[Emptier]:
    """What empties the run's database before each test."""
    emptier = Emptier(session_database)
    try:
        yield emptier
    finally:
        await emptier.close()


@pytest.fixture
async def database_url(session_database: str, emptier: Emptier) -> str:
    """The run's database, emptied for this test (every table but the migration ledger)."""
    await emptier.empty()
    return session_database


@pytest.fixture
async def empty_database_url(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"connectra_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(admin_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on the test's database."""
    pool = await create_pool(database_url, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> JobStore:
    """The job store on the test's database."""
    return JobStore(pool)
