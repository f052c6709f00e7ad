"""Connection pools with the codecs every connection needs."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

# Errors that mean "the database is unreachable right now", not "the request or code is wrong".
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # Raised while releasing a connection whose server went away mid-query.
    asyncpg.InternalClientError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Decode jsonb as Python objects."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, max_size: int, **kwargs: Any) -> asyncpg.Pool:
    """A pool whose connections speak JSON and name the application."""
    settings = {"application_name": "connectra"}
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        server_settings=settings,
        **kwargs,
    )
    return pool
