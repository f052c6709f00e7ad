"""Connection pools with the codecs every connection needs."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without asyncpg's reset statement.

    asyncpg sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release: one more round trip for each query run through the pool. Nothing here leaves
    session state on a pooled connection (no session `SET`, no `LISTEN`: the listener has a
    connection of its own, no `WITH HOLD` cursor, the migration lock is a transaction's), and
    an open transaction is still rolled back on release.
    """

    def get_reset_query(self) -> str:
        """No reset statement (see the class)."""
        return ""


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Decode jsonb as Python objects."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str, *, max_size: int, transaction_pooler: bool = False, **kwargs: Any
) -> asyncpg.Pool:
    """A pool whose connections speak JSON and name the application.

    `transaction_pooler`: `dsn` is a pooler in transaction mode, where consecutive transactions
    of one connection may reach different server connections; statements are then not
    prepared under a name (asyncpg sends the unnamed statement's Parse with each Bind).
    """
    settings = {"application_name": "connectra"}
    if transaction_pooler:
        kwargs["statement_cache_size"] = 0
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        connection_class=PooledConnection,
        server_settings=settings,
        **kwargs,
    )
    return pool
