"""Real PostgreSQL for every test: one database migrated once per run, emptied before each test.

Where the server comes from, in order: `CONNECTRA_TEST_DATABASE_URL`; a testcontainers
PostgreSQL when a Docker engine answers; the local server on 127.0.0.1:5432; an embedded
PostgreSQL (pgserver) in a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
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


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    """A DSN with rights to create databases."""
    explicit = os.environ.get("CONNECTRA_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    if asyncio.run(_reachable(LOCAL_SERVER)):
        yield LOCAL_SERVER
        return
    yield from _embedded_server()


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
    """One migrated database for the whole run, dropped at the end."""
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


@pytest.fixture
async def database_url(session_database: str) -> str:
    """The run's database, emptied for this test (every table but the migration ledger)."""
    conn = await asyncpg.connect(session_database)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        names = ", ".join(row["name"] for row in tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
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
