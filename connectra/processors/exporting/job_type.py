"""The `export_csv_file` job type: a service's records matching a VQL query, as a CSV in S3.

`ExportCsvData` checks the query when the job is created; `run_export_csv` reads the records from
Elasticsearch when a search client is configured, else from PostgreSQL, streams them into one
object (`upload`) and first aborts any upload a killed attempt left behind (`checkpoint`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, TypeVar
from uuid import UUID

from elasticsearch import AsyncElasticsearch
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic import Field as ModelField

from connectra import metrics
from connectra.catalog import service_named
from connectra.errors import ServiceNotConfiguredError
from connectra.processors.base import JobContext, JobType, Services, settings_of
from connectra.processors.exporting.cells import RowFormatter
from connectra.processors.exporting.checkpoint import OpenUpload
from connectra.processors.exporting.postgres_source import copy_export
from connectra.processors.exporting.search_source import search_pages
from connectra.processors.exporting.upload import Sink, Source, abort_left_upload, write_export
from connectra.processors.exporting.vql import ExportQuery, Vql, parse_vql, resolve_vql
from connectra.processors.search_index import index_name
from connectra.settings import Settings

T = TypeVar("T")


class ExportCsvData(BaseModel):
    """The `job_data` of `export_csv_file`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    vql: Vql
    s3_bucket: str | None = ModelField(
        default=None,
        min_length=3,
        max_length=63,
        description="Default S3_BUCKET; any other must be one of S3_ALLOWED_BUCKETS.",
    )

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

    @model_validator(mode="after")
    def _bucket_allowed(self, info: ValidationInfo) -> ExportCsvData:
        """With settings: the bucket must be one jobs may use (the key is checked at run)."""
        settings = settings_of(info)
        if settings is not None and (self.s3_bucket or settings.s3_bucket):
            settings.bucket_policy().bucket_for(self.s3_bucket)
        return self

    def query(self) -> ExportQuery:
        """The VQL checked against the service."""
        return resolve_vql(self.vql, service_named(self.service))


def export_key(prefix: str, job_uuid: UUID) -> str:
    """The object key of a job's export."""
    folder = prefix.rstrip("/")
    return f"{folder}/{job_uuid}.csv" if folder else f"{job_uuid}.csv"


def export_location(data: ExportCsvData, settings: Settings, job_uuid: UUID) -> tuple[str, str]:
    """The bucket and key of the job's file, refused unless jobs may write there."""
    policy = settings.bucket_policy()
    bucket = policy.bucket_for(data.s3_bucket)
    key = export_key(settings.s3_upload_file_path_prefix, job_uuid)
    policy.check(bucket, key)
    return bucket, key


async def run_export_csv(ctx: JobContext, data: ExportCsvData) -> dict[str, Any]:
    """Export the matching records to S3 as CSV."""
    query = data.query()
    bucket, key = export_location(data, ctx.settings, ctx.job.uuid)
    objects = _required(ctx.services.objects, "object store")
    await abort_left_upload(
        objects,
        ctx.job.checkpoint,
        ctx.log,
        failed="could not abort the upload an earlier attempt left: %s",
        aborted="aborted the upload an earlier attempt left in s3://%s/%s",
        aborted_action="export_upload_aborted",
    )
    formatter = RowFormatter(query.columns)
    source, produce = _open_source(ctx.services, ctx.settings, query, formatter)
    header = formatter.header()
    record = functools.partial(_record_upload, ctx, bucket, key)
    count = await write_export(objects, bucket, key, header, produce, ctx.report_progress, record)
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


async def _record_upload(ctx: JobContext, bucket: str, key: str, upload_id: str) -> None:
    """Save the new multipart upload's id on the job row before any part is sent."""
    await ctx.save_checkpoint(OpenUpload(bucket, key, upload_id).to_checkpoint())


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
