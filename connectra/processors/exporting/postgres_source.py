"""The PostgreSQL export source: the server writes the CSV itself, with COPY, range by range.

`copy_export` cuts the export's order into ranges that partition the key space and hands each
range's COPY output to the sink as it comes, so memory holds a few blocks.
Why: a range holds one snapshot at a time, and cells formatted by the server are cheaper.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator

import asyncpg

from connectra.processors.exporting.cells_sql import restore_end_marker
from connectra.processors.exporting.sql import (
    Keys,
    range_end,
    range_ends,
    range_rows,
    table_rows_estimate,
    walks_primary_key,
)
from connectra.processors.exporting.upload import Sink
from connectra.processors.exporting.vql import ExportQuery

# Rows per COPY: large enough that the per-range queries cost little, small enough that no
# snapshot lasts long (a second or two at full speed).
RANGE_ROWS = 200_000
# At most this many ranges (so table scans) in an order no index serves.
MAX_RANGES = 8


async def copy_export(
    pool: asyncpg.Pool,
    query: ExportQuery,
    sink: Sink,
    *,
    range_rows_max: int = RANGE_ROWS,
    max_ranges: int = MAX_RANGES,
) -> None:
    """Hand the CSV lines of every matching row to `sink`, in order: bytes as COPY sends them
    (count 0), then `(b"", rows)` when a range is complete."""
    if walks_primary_key(query):
        ends = _ends_along_the_index(pool, query, range_rows_max)
    else:
        ends = _ends_sorted_at_once(pool, query, range_rows_max, max_ranges)
    start: Keys | None = None
    async with contextlib.aclosing(ends):
        async for end in ends:
            rows = await _copy_range(pool, query, start, end, sink)
            await sink(b"", rows)
            start = end


async def _ends_along_the_index(
    pool: asyncpg.Pool, query: ExportQuery, size: int
) -> AsyncGenerator[Keys | None, None]:
    """Each range's last keys, found just before its COPY; None for the last range."""
    start: Keys | None = None
    while True:
        sql, args = range_end(query, start, size)
        row = await pool.fetchrow(sql, *args)
        if row is None:
            yield None
            return
        start = tuple(row)
        yield start


async def _ends_sorted_at_once(
    pool: asyncpg.Pool, query: ExportQuery, size: int, max_ranges: int
) -> AsyncGenerator[Keys | None, None]:
    """Every range's last keys from one sort; None for the last range."""
    sql, args = table_rows_estimate(query)
    estimate = await pool.fetchval(sql, *args)
    size = max(size, math.ceil(max(estimate or 0, 0) / max_ranges))
    sql, args = range_ends(query, size)
    for row in await pool.fetch(sql, *args):
        yield tuple(row)
    yield None


async def _copy_range(
    pool: asyncpg.Pool, query: ExportQuery, start: Keys | None, end: Keys | None, sink: Sink
) -> int:
    """Stream one range's lines into `sink`; the number of rows."""
    single_column = len(query.columns) == 1

    async def output(data: bytearray) -> None:
        await sink(restore_end_marker(data) if single_column else data, 0)

    sql, args = range_rows(query, start, end)
    async with pool.acquire() as conn:
        try:
            status: str = await conn.copy_from_query(sql, *args, output=output, format="csv")
        except BaseException:
            # A COPY cut short (cancelled, or the sink failed) is cancelled in the background,
            # and asyncpg may hand the connection back before the server has stopped sending:
            # the next query on it would fail. Close it instead; the pool opens another.
            conn.terminate()
            raise
    return int(status.rpartition(" ")[2])
