"""The `export_csv_file` job type: a service's records matching a VQL query, as a CSV in S3.

job_data: `service` ("contact" | "company"), `vql` (see `vql`), `s3_bucket` (default
`S3_BUCKET`). The query is checked when the job is created, so a bad one is refused with its
own code (ERR_MISSING_SELECT_COLUMNS, ERR_UNKNOWN_FIELD, ERR_INVALID_VQL, ERR_UNKNOWN_SERVICE).

The records come from Elasticsearch when a search client is configured, else from PostgreSQL;
both give the same bytes. Pages are formatted as they arrive (PostgreSQL formats its own) and
streamed into a multipart upload, a couple of pages fetched ahead, so memory holds a few pages
and one part whatever the export's size. An export that fails or is cancelled leaves no object
and no pending upload. The object is `{S3_UPLOAD_FILE_PATH_PRIFIX}/{job uuid}.csv`. Progress
(`number_records_processed`) is reported at most once a second, and once at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from elasticsearch import AsyncElasticsearch
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic import Field as ModelField

from connectra.catalog import service_named
from connectra.errors import (
    BucketNotConfiguredError,
    ServiceNotConfiguredError,
)
from connectra.objectstore import ObjectStore
from connectra.processors.base import JobContext, JobType, ProgressReporter, Services
from connectra.processors.csv_format import RowFormatter, join_lines
from connectra.processors.export_sources import postgres_pages, search_pages
from connectra.processors.search_index import index_name
from connectra.processors.vql import ExportQuery, Vql, parse_vql, resolve_vql
from connectra.settings import Settings

# Pages fetched ahead of the upload: enough to overlap the two, few enough to bound memory.
PREFETCH_PAGES = 2
# Progress is a database write; at page granularity that would be hundreds per second.
PROGRESS_INTERVAL_SECONDS = 1.0

Chunks = AsyncGenerator[tuple[bytes, int], None]
T = TypeVar("T")


class ExportCsvData(BaseModel):
    """The `job_data` of `export_csv_file`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    vql: Vql
    s3_bucket: str | None = ModelField(default=None, min_length=3, max_length=63)

    @field_validator("service")
    @classmethod
    def _known_service(cls, value: str) -> str:
        """ERR_UNKNOWN_SERVICE unless `contact` or `company`."""
        service_named(value)
        return value

    @field_validator("vql", mode="before")
    @classmethod
    def _parsed_vql(cls, value: object) -> Vql:
        """The VQL's own error codes rather than a generic ERR_INVALID_JOB_DATA."""
        return value if isinstance(value, Vql) else parse_vql(value)

    @model_validator(mode="after")
    def _vql_fits_service(self) -> ExportCsvData:
        """Every field the VQL names must be one of the service's."""
        self.query()
        return self

    def query(self) -> ExportQuery:
        """The VQL checked against the service."""
        return resolve_vql(self.vql, service_named(self.service))


def export_key(prefix: str, job_uuid: UUID) -> str:
    """The object key of a job's export."""
    folder = prefix.rstrip("/")
    return f"{folder}/{job_uuid}.csv" if folder else f"{job_uuid}.csv"


def export_bucket(data: ExportCsvData, settings: Settings) -> str:
    """The bucket the job names, else the configured default."""
    bucket = data.s3_bucket or settings.s3_bucket
    if not bucket:
        raise BucketNotConfiguredError()
    return bucket


async def run_export_csv(ctx: JobContext, data: ExportCsvData) -> dict[str, Any]:
    """Export the matching records to S3 as CSV."""
    query = data.query()
    bucket = export_bucket(data, ctx.settings)
    key = export_key(ctx.settings.s3_upload_file_path_prefix, ctx.job.uuid)
    objects = _required(ctx.services.objects, "object store")
    formatter = RowFormatter(query.columns)
    source, chunks = _open_source(ctx.services, ctx.settings, query, formatter)
    header = formatter.header()
    count = await write_export(objects, bucket, key, header, chunks, ctx.report_progress)
    ctx.log.info(
        "exported %d rows to s3://%s/%s from %s",
        count,
        bucket,
        key,
        source,
        extra={"action": "export_done", "rows": count, "source": source},
    )
    return {
        "messages": f"exported {count} rows",
        "s3_key": key,
        "s3_bucket": bucket,
        "number_records_processed": count,
        "source": source,
    }


def _required(service: T | None, name: str) -> T:
    """A configured service, or a clear error."""
    if service is None:
        raise ServiceNotConfiguredError(f"the export needs the {name}, which is not configured")
    return service


def _open_source(
    services: Services, settings: Settings, query: ExportQuery, formatter: RowFormatter
) -> tuple[str, Chunks]:
    """Elasticsearch when configured, else PostgreSQL: the source's name and its CSV chunks."""
    if services.search is not None:
        index = index_name(settings.elasticsearch_index_prefix, query.service)
        return "elasticsearch", _search_chunks(services.search, index, query, formatter)
    pool = _required(services.pool, "database")
    return "postgres", _postgres_chunks(pool, query)


async def _postgres_chunks(pool: asyncpg.Pool, query: ExportQuery) -> Chunks:
    """CSV bytes and row count of each PostgreSQL page."""
    async with contextlib.aclosing(postgres_pages(pool, query)) as pages:
        async for rows in pages:
            yield join_lines([row[0] for row in rows]), len(rows)


async def _search_chunks(
    es: AsyncElasticsearch, index: str, query: ExportQuery, formatter: RowFormatter
) -> Chunks:
    """CSV bytes and row count of each Elasticsearch page."""
    async with contextlib.aclosing(search_pages(es, index, query)) as pages:
        async for sources in pages:
            yield formatter.search_rows(sources), len(sources)


async def write_export(
    objects: ObjectStore,
    bucket: str,
    key: str,
    header: bytes,
    chunks: Chunks,
    report: ProgressReporter,
) -> int:
    """Upload the header and every chunk as one object; the number of rows.

    The next pages are fetched while a part uploads, so the source and S3 wait side by side.
    """
    progress = _Progress(report)
    ready: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue(maxsize=PREFETCH_PAGES)
    content_type = "text/csv; charset=utf-8"
    async with objects.multipart_upload(bucket, key, content_type=content_type) as writer:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_prefetch(chunks, ready))
                await writer.write(header)
                while (chunk := await ready.get()) is not None:
                    await writer.write(chunk[0])
                    await progress.add(chunk[1])
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            raise first from first.__cause__  # the failure itself, not a group; its cause kept
    await progress.flush()
    return progress.count


async def _prefetch(chunks: Chunks, ready: asyncio.Queue[tuple[bytes, int] | None]) -> None:
    """Move chunks into the bounded queue, then None."""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            await ready.put(chunk)
    await ready.put(None)


class _Progress:
    """Counts rows and reports them at most every PROGRESS_INTERVAL_SECONDS."""

    def __init__(self, report: ProgressReporter) -> None:
        self._report = report
        self._last = asyncio.get_running_loop().time()
        self.count = 0

    async def add(self, rows: int) -> None:
        """Count a page; report if the interval has passed."""
        self.count += rows
        now = asyncio.get_running_loop().time()
        if now - self._last >= PROGRESS_INTERVAL_SECONDS:
            self._last = now
            await self.flush()

    async def flush(self) -> None:
        """Report the count now."""
        await self._report({"number_records_processed": self.count})


EXPORT_CSV_FILE = JobType(
    "export_csv_file",
    ExportCsvData,
    run_export_csv,
    "exports a service's records matching a VQL query to a CSV file in S3",
)
