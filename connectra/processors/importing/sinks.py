"""Where an import writes each batch: the service's table, its search index, its filter values,
and the job's failed-rows table.

Each sink has a pure part that shapes a batch's payload (safe to run in a worker thread) and an
async part that writes it; every write is idempotent, so a retried job converges.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from connectra.catalog import FieldType, ServiceSchema
from connectra.db.driver_errors import DATABASE_DOWN
from connectra.errors import (
    DatabaseUnavailableError,
    SearchBulkError,
    SearchError,
    SearchUnavailableError,
)
from connectra.processors.importing import sql as q
from connectra.processors.importing.rows import Row, RowLayout, Value
from connectra.processors.search_index import ensure_index
from connectra.shielding import run_to_the_end, succeeded

FILTER_CACHE_MAX = 100_000
SPARE_CONNECTION_WAIT_S = 1.0
TRANSIENT_HEADROOM = 2
BULK_CHUNK_DOCS = 500
FAILED_ROWS_PAGE_ROWS = 200  # fewer rows than a default batch: no more memory than one
BULK_MAX_RETRIES = 2
SHOWN_BULK_ERRORS = 3

FilterValue = tuple[str, str]


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    """Raise a lost or unreachable database as the transient project error."""
    try:
        yield
    except DATABASE_DOWN as exc:
        raise DatabaseUnavailableError(f"the database connection failed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Staged:
    """A batch COPYed into a connection's staging table, its transaction still open."""

    conn: asyncpg.Connection
    transaction: Any


class PostgresSink:
    """Upserts batches into the service's table through a staging table.

    Each batch is COPYed into the staging table and upserted in one transaction on one
    connection. With a second connection, batch n+1 is COPYed on one while batch n is upserted
    and committed on the other; upserts still run one at a time, in file order, so the last
    duplicate wins. `write` returns once the previous batch is committed; `flush` commits the last.
    `commits` counts the batches committed, also by a `write` cut short after its commit.

    `staging_per_transaction` (behind a transaction-mode pooler): each batch's transaction
    creates the staging table it drops at its end, instead of one table per connection.
    """

    def __init__(
        self,
        conns: Sequence[asyncpg.Connection],
        service: ServiceSchema,
        names: Sequence[str],
        *,
        staging_per_transaction: bool = False,
    ) -> None:
        self._conns = list(conns)
        self._service = service
        self._per_transaction = staging_per_transaction
        self._staging = q.staging_table(service)
        self._names = list(names)
        self._upsert = q.staging_upsert(service, tuple(names))
        self._staged: _Staged | None = None
        self._turn = 0
        self.commits = 0

    @property
    def lanes(self) -> int:
        """How many connections the sink writes on."""
        return len(self._conns)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        pool: asyncpg.Pool,
        service: ServiceSchema,
        names: Sequence[str],
        consumers: int,
        *,
        staging_per_transaction: bool = False,
    ) -> AsyncIterator[PostgresSink]:
        """Hold one or two connections, each with a staging table (or, given
        `staging_per_transaction`, one for each batch), for the life of the block."""
        # Two only if the pool fits two for each of `consumers` concurrent jobs plus headroom:
        # filter values and progress are written on connections of their own.
        spare_fits = pool.get_max_size() >= 2 * consumers + TRANSIENT_HEADROOM
        async with pool.acquire() as first, _spare_connection(pool, spare_fits) as spare:
            conns = [first] if spare is None else [first, spare]
            sink = cls(conns, service, names, staging_per_transaction=staging_per_transaction)
            with _database_errors():
                for conn in [] if staging_per_transaction else conns:
                    await conn.execute(q.staging_drop(service))
                    await conn.execute(q.staging_create(service))
            try:
                yield sink
            finally:
                await sink._close()

    async def write(self, rows: Iterable[Row], csv: Sequence[memoryview] | None = None) -> None:
        """Commit the batch staged last time and stage these rows (at once, given two lanes).

        `csv`, when given, is the same rows as CSV text PostgreSQL reads as converted (see
        `verbatim_copy`), in pieces: it is COPYed instead of the rows.
        """
        previous, self._staged = self._staged, None
        if self.lanes == 1:
            if previous is not None:
                await self._commit(previous)
            self._staged = await self._stage(self._conns[0], rows, csv)
            return
        conn = self._conns[self._turn]
        self._turn = 1 - self._turn
        staging: asyncio.Task[_Staged] | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                staging = tasks.create_task(self._stage(conn, rows, csv))
                if previous is not None:
                    tasks.create_task(self._commit(previous))
        finally:
            # Kept even when the commit failed, so that closing rolls the staged batch back.
            self._staged = _finished_result(staging)

    async def flush(self) -> None:
        """Commit the batch staged last."""
        previous, self._staged = self._staged, None
        if previous is not None:
            await self._commit(previous)

    async def _stage(
        self, conn: asyncpg.Connection, rows: Iterable[Row], csv: Sequence[memoryview] | None
    ) -> _Staged:
        """Open a transaction and COPY the rows (or their CSV text) into the staging table."""
        with _database_errors():
            transaction = conn.transaction()
            await transaction.start()
            staged = _Staged(conn, transaction)
            try:
                if self._per_transaction:  # with UTC for CSV text: one round trip
                    utc = csv is not None
                    await conn.execute(
                        q.staging_create(self._service, per_transaction=True, utc=utc)
                    )
                elif csv is not None:
                    await conn.execute(q.STAGING_TIME_ZONE)
                if csv is None:
                    await conn.copy_records_to_table(
                        self._staging, records=rows, columns=self._names
                    )
                else:
                    await self._copy_csv(conn, csv)
            except BaseException:
                await _rollback_quietly(staged)
                raise
        return staged

    async def _copy_csv(self, conn: asyncpg.Connection, csv: Sequence[memoryview]) -> None:
        """COPY CSV text into the staging table; it holds no quote, so every empty field is NULL.

        `_stage` has set the transaction's time zone to UTC first (STAGING_TIME_ZONE).
        """
        await conn.copy_to_table(
            self._staging,
            source=_pieces(csv),  # one message per piece: no copy of the whole batch
            columns=self._names,
            format="csv",
        )

    async def _commit(self, staged: _Staged) -> None:
        """Upsert the staged rows into the table and commit (ON COMMIT empties the staging).

        The COMMIT runs to its end even when cancelled meanwhile: cut short, the batch could be
        committed without the importer knowing it.
        """
        with _database_errors():
            try:
                await staged.conn.execute(self._upsert)
            except BaseException:
                await _rollback_quietly(staged)
                raise
            await run_to_the_end(self._commit_staged(staged))

    async def _commit_staged(self, staged: _Staged) -> None:
        """Commit the staged batch's transaction and count it."""
        try:
            await staged.transaction.commit()
        except BaseException:
            await _rollback_quietly(staged)
            raise
        self.commits += 1

    async def _close(self) -> None:
        """Drop what an interrupted import left: an open transaction, the staging tables."""
        if self._staged is not None:
            await _rollback_quietly(self._staged)
        for conn in self._conns:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                if conn.is_in_transaction():
                    # A failed statement leaves its transaction open and aborted on whichever
                    # lane it ran; the DROP below would be refused inside it.
                    await conn.execute("ROLLBACK")
                if not self._per_transaction:
                    await conn.execute(q.staging_drop(self._service))


async def _pieces(csv: Sequence[memoryview]) -> AsyncIterator[memoryview]:
    """The pieces of a CSV text, as the async iterable COPY reads."""
    for piece in csv:
        yield piece


def _finished_result(task: asyncio.Task[_Staged] | None) -> _Staged | None:
    """The task's result if it finished successfully, else None."""
    return task.result() if succeeded(task) else None


_CONNECTION_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, *DATABASE_DOWN)
_SPARE_FAILURES: tuple[type[Exception], ...] = (TimeoutError, *DATABASE_DOWN)


async def _rollback_quietly(staged: _Staged) -> None:
    """Roll back; a connection too broken for that is discarded by the pool anyway."""
    with contextlib.suppress(*_CONNECTION_ERRORS):
        await staged.transaction.rollback()


@contextlib.asynccontextmanager
async def _spare_connection(
    pool: asyncpg.Pool, fits: bool
) -> AsyncIterator[asyncpg.Connection | None]:
    """A second connection if it fits and the pool gives one soon, else None."""
    if not fits:
        yield None
        return
    # A bounded wait: other pool users must never be able to leave an import stuck here.
    try:
        conn = await pool.acquire(timeout=SPARE_CONNECTION_WAIT_S)
    except _SPARE_FAILURES:
        yield None
        return
    try:
        yield conn
    finally:
        await pool.release(conn)


class FilterSink:
    """Adds the distinct values of the service's filterable fields to `filter_values`."""

    def __init__(self, pool: asyncpg.Pool, layout: RowLayout) -> None:
        self._pool = pool
        self._service = layout.service.name
        self._fields = [
            (j, f.name, f.type is FieldType.TEXT_ARRAY)
            for j, f in enumerate(layout.fields)
            if f.filterable
        ]
        self._known: set[FilterValue] = set()  # values already written by this job

    def values(self, columns: Sequence[Sequence[Value]]) -> set[FilterValue]:
        """The distinct non-blank (field, value) pairs of a batch; array items one by one."""
        found: set[FilterValue] = set()
        for j, name, is_array in self._fields:
            column = columns[j] if columns else ()
            distinct: set[Value] = (
                {item for value in column for item in _items(value)} if is_array else set(column)
            )
            found.update((name, v) for v in distinct if isinstance(v, str) and v.strip())
        return found

    async def write(self, values: set[FilterValue]) -> None:
        """Insert the values this job has not written yet."""
        new = sorted(values - self._known)
        if not new:
            return
        with _database_errors():
            await self._pool.execute(
                q.FILTER_VALUES_INSERT, self._service, [f for f, _ in new], [v for _, v in new]
            )
        if len(self._known) + len(new) > FILTER_CACHE_MAX:
            self._known.clear()  # keeps memory bounded; at worst a value is inserted again
        self._known.update(new)


class FailedRowsSink:
    """Keeps the bad rows of one job in `import_failed_rows`, one failed-rows CSV line each.

    Rows are keyed by (job, line), so a batch written again by a resumed attempt adds nothing.
    """

    def __init__(self, pool: asyncpg.Pool, job_id: int) -> None:
        self._pool = pool
        self._job_id = job_id

    async def write(self, lines: Sequence[tuple[int, bytes]]) -> None:
        """Store (line number, CSV line) pairs."""
        with _database_errors():
            await self._pool.execute(
                q.FAILED_ROWS_INSERT, self._job_id, [n for n, _ in lines], [c for _, c in lines]
            )

    async def pages(self) -> AsyncIterator[bytes]:
        """The stored CSV lines in line order, a page at a time, never all at once."""
        after = 0
        while True:
            with _database_errors():
                rows = await self._pool.fetch(
                    q.FAILED_ROWS_PAGE, self._job_id, after, FAILED_ROWS_PAGE_ROWS
                )
            if not rows:
                return
            yield b"".join(row["csv"] for row in rows)
            after = rows[-1]["line"]

    async def clear(self) -> None:
        """Forget every stored row of the job."""
        with _database_errors():
            await self._pool.execute(q.FAILED_ROWS_DELETE, self._job_id)


def _items(value: Value) -> list[str]:
    """The items of an array value (none for NULL)."""
    return value if isinstance(value, list) else []


class SearchSink:
    """Indexes batches into the service's index, `_id` = uuid, failing on any refused item.

    When the file has every field, documents are replaced (`index`); otherwise the file's
    fields are merged into the stored document (`update` with `doc_as_upsert`), as in PostgreSQL.
    """

    def __init__(self, es: AsyncElasticsearch, index: str, layout: RowLayout) -> None:
        self._es = es
        self._index = index
        self._names = layout.names
        self._key = layout.names.index("uuid")
        self._replace = layout.has_every_field

    @classmethod
    async def open(cls, es: AsyncElasticsearch, prefix: str, layout: RowLayout) -> SearchSink:
        """Create the index unless it exists; the sink that writes to it."""
        with _search_errors("creating the index"):
            index = await ensure_index(es, prefix, layout.service)
        return cls(es, index, layout)

    def actions(self, rows: Iterable[Row]) -> list[dict[str, Any]]:
        """The bulk actions for the rows."""
        index, names, key = self._index, self._names, self._key
        if self._replace:
            return [
                {"_index": index, "_id": row[key], "_source": dict(zip(names, row, strict=True))}
                for row in rows
            ]
        return [
            {
                "_op_type": "update",
                "_index": index,
                "_id": row[key],
                "doc": dict(zip(names, row, strict=True)),
                "doc_as_upsert": True,
            }
            for row in rows
        ]

    async def write(self, actions: list[dict[str, Any]]) -> None:
        """Send the actions; any refused document fails the job."""
        with _search_errors("bulk indexing"):
            _, errors = await async_bulk(
                self._es,
                actions,
                chunk_size=BULK_CHUNK_DOCS,
                max_retries=BULK_MAX_RETRIES,
                raise_on_error=False,
                refresh=False,
            )
        if errors:
            raise SearchBulkError(_describe_bulk_errors(errors))

    async def refresh(self) -> None:
        """Make everything indexed so far searchable."""
        with _search_errors("refreshing the index"):
            await self._es.indices.refresh(index=self._index)


@contextlib.contextmanager
def _search_errors(doing: str) -> Iterator[None]:
    """Raise client errors as project errors; overload and outages are transient."""
    try:
        yield
    except ApiError as exc:
        cls = SearchUnavailableError if exc.status_code in (429, 502, 503, 504) else SearchError
        raise cls(f"{doing}: Elasticsearch answered {exc.status_code}: {exc.message}") from exc
    except TransportError as exc:
        raise SearchUnavailableError(f"{doing}: {exc}") from exc


def _describe_bulk_errors(errors: int | list[Any]) -> str:
    """A short account of refused bulk items."""
    if isinstance(errors, int):
        return f"{errors} document(s) refused"
    shown = []
    for item in errors[:SHOWN_BULK_ERRORS]:
        result = next(iter(item.values())) if isinstance(item, dict) else {}
        error = result.get("error", {})
        reason = error.get("reason", error) if isinstance(error, dict) else error
        shown.append(f"_id {result.get('_id')}: {reason}")
    return f"{len(errors)} document(s) refused; " + "; ".join(shown)
