"""The `export_csv_file` job type: a service's records matching a VQL query, as a CSV in S3.

job_data: `service` ("contact" | "company"), `vql` (see `vql`), `s3_bucket` (default
`S3_BUCKET`). The query is checked when the job is created, so a bad one is refused with its
own code (ERR_MISSING_SELECT_COLUMNS, ERR_UNKNOWN_FIELD, ERR_INVALID_VQL, ERR_UNKNOWN_SERVICE).

The records come from Elasticsearch when a search client is configured (pages formatted here,
`csv_format`), else from PostgreSQL (ranges the server writes with COPY, `export_postgres`);
both give the same bytes. Either way the CSV streams into a multipart upload with bounded
memory (`export_upload`). An export that fails or is cancelled leaves no object and no pending
upload. The object is `{S3_UPLOAD_FILE_PATH_PRIFIX}/{job uuid}.csv`.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, TypeVar
from uuid import UUID

from elasticsearch import AsyncElasticsearch
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic import Field as ModelField

from connectra import metrics
from connectra.catalog import service_named
from connectra.errors import (
    BucketNotConfiguredError,
    ServiceNotConfiguredError,
)
from connectra.processors.base import JobContext, JobType, Services
from connectra.processors.csv_format import RowFormatter
from connectra.processors.export_postgres import copy_export
from connectra.processors.export_sources import search_pages
from connectra.processors.export_upload import Sink, Source, write_export
from connectra.processors.search_index import index_name
from connectra.processors.vql import ExportQuery, Vql, parse_vql, resolve_vql
from connectra.settings import Settings

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
    source, produce = _open_source(ctx.services, ctx.settings, query, formatter)
    header = formatter.header()
    count = await write_export(objects, bucket, key, header, produce, ctx.report_progress)
    metrics.ROWS_EXPORTED.labels(query.service.name).inc(count)
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
) -> tuple[str, Source]:
    """Elasticsearch when configured, else PostgreSQL: the source's name and the source."""
    if services.search is not None:
        index = index_name(settings.elasticsearch_index_prefix, query.service)
        return "elasticsearch", functools.partial(
            _search_source, services.search, index, query, formatter
        )
    pool = _required(services.pool, "database")
    return "postgres", functools.partial(copy_export, pool, query)


async def _search_source(
    es: AsyncElasticsearch, index: str, query: ExportQuery, formatter: RowFormatter, sink: Sink
) -> None:
    """Each Elasticsearch page as CSV bytes, with its row count."""
    async with contextlib.aclosing(search_pages(es, index, query)) as pages:
        async for sources in pages:
            await sink(formatter.search_rows(sources), len(sources))


EXPORT_CSV_FILE = JobType(
    "export_csv_file",
    ExportCsvData,
    run_export_csv,
    "exports a service's records matching a VQL query to a CSV file in S3",
)
