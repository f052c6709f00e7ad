"""The `insert_csv_file` job: a CSV file in S3 into PostgreSQL, Elasticsearch and filter values.

`CsvImport` streams the object with bounded memory (a reader task, a writer task, every sink at
once), saves a checkpoint after each batch every sink committed so the next attempt resumes
there, and writes the failed-rows CSV once the whole file is in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import asyncpg
from elasticsearch import AsyncElasticsearch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from connectra import metrics
from connectra.bucket_policy import BucketPolicy
from connectra.catalog import ServiceSchema, service_named
from connectra.errors import (
    ConnectraError,
    EmptyFileError,
    HeaderError,
    ServiceNotConfiguredError,
)
from connectra.objectstore import ObjectStat, ObjectStore
from connectra.processors.base import JobContext, JobType, settings_of
from connectra.processors.importing.batches import BatchCutter, RecordBatch
from connectra.processors.importing.checkpoint import Checkpoint
from connectra.processors.importing.failed_rows import (
    FailedRowsFile,
    failed_rows_key,
    failed_rows_lines,
)
from connectra.processors.importing.reader import MAX_RECORD_BYTES, CsvRecordReader, RecordBlock
from connectra.processors.importing.rows import ConvertedBatch, RowConverter, RowLayout, read_header
from connectra.processors.importing.sinks import (
    FailedRowsSink,
    FilterSink,
    FilterValue,
    PostgresSink,
    SearchSink,
)
from connectra.processors.importing.verbatim_copy import verbatim_csv
from connectra.shielding import succeeded

QUEUE_BATCHES = 1
# How long an interrupted import waits for its last report to land.
FINAL_REPORT_SECONDS = 5.0


class InsertCsvData(BaseModel):
    """Which CSV object to import, and into which service."""

    model_config = ConfigDict(extra="forbid")

    s3_key: str = Field(
        min_length=1, description="Under one of S3_ALLOWED_PREFIXES when that is set."
    )
    s3_bucket: str | None = Field(
        default=None,
        min_length=1,
        description="Default S3_BUCKET; any other must be one of S3_ALLOWED_BUCKETS.",
    )
    service: Literal["contact", "company"] = "contact"

    @model_validator(mode="after")
    def _objects_allowed(self, info: ValidationInfo) -> Self:
        """With settings: the source and failed-rows file must be where jobs may go."""
        settings = settings_of(info)
        if settings is not None and (self.s3_bucket or settings.s3_bucket):
            import_bucket(self, settings.bucket_policy())
        return self


def import_bucket(data: InsertCsvData, policy: BucketPolicy) -> str:
    """The bucket of the import, checked with its source and failed-rows keys."""
    bucket = policy.bucket_for(data.s3_bucket)
    policy.check(bucket, data.s3_key)
    policy.check(bucket, failed_rows_key(data.s3_key))
    return bucket


@dataclass(frozen=True, slots=True)
class Position:
    """A record boundary of the object: its byte offset and line number."""

    offset: int
    line: int


@dataclass(slots=True)
class PreparedBatch:
    """A converted batch with each sink's payload, ready to write, and where it ends.

    `csv` is the batch's own CSV bytes when PostgreSQL can take them instead of the rows.
    """

    converted: ConvertedBatch
    failed_lines: list[tuple[int, bytes]]
    filter_values: set[FilterValue]
    search_actions: list[dict[str, Any]]
    end: Position
    csv: list[memoryview] | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """The records of a block not yet batched: those from `start` on."""

    block: RecordBlock
    start: int


@dataclass(slots=True)
class Totals:
    """What the import has done so far."""

    processed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Written:
    """How far the writer task got: the batch awaiting its PostgreSQL commit, the commits
    counted, where the last counted batch ends, and its report."""

    staged: PreparedBatch | None = None
    commits: int = 0
    end: Position | None = None
    reported: asyncio.Task[None] | None = None


@dataclass(slots=True)
class Sinks:
    """Every writer of one import."""

    postgres: PostgresSink
    filters: FilterSink
    failed: FailedRowsSink
    search: SearchSink | None


async def run_insert_csv(ctx: JobContext, data: InsertCsvData) -> dict[str, Any]:
    """Import the CSV object; the job_response fields."""
    bucket = import_bucket(data, ctx.settings.bucket_policy())
    objects, pool = ctx.services.objects, ctx.services.pool
    if objects is None or pool is None:
        raise ServiceNotConfiguredError("insert_csv_file needs the database and object storage")
    csv_import = CsvImport(ctx, objects, pool, service_named(data.service), bucket, data.s3_key)
    return await csv_import.run()


class CsvImport:
    """One attempt of an import: header, then the reader and writer tasks, then the response."""

    def __init__(
        self,
        ctx: JobContext,
        objects: ObjectStore,
        pool: asyncpg.Pool,
        service: ServiceSchema,
        bucket: str,
        key: str,
    ) -> None:
        self.ctx = ctx
        self.objects = objects
        self.pool = pool
        self.service = service
        self.bucket = bucket
        self.key = key
        self.totals = Totals()
        self.nul_seen = False  # set once a chunk holds a NUL byte; rows are then checked for it
        self.failed_rows = FailedRowsSink(pool, ctx.job.id)
        self.stat = ObjectStat(0, "")
        self.header: list[str] = []
        self.resumed: Checkpoint | None = None
        self.restarted = False  # a checkpoint was ignored: the object changed since

    async def run(self) -> dict[str, Any]:
        """Import the file; the job_response fields."""
        self.stat = await self.objects.stat(self.bucket, self.key)
        self.resumed = self._resume_point()
        if self.resumed is None:
            await self.failed_rows.clear()  # left by an attempt that never saved a checkpoint
        start = self._start()
        async with contextlib.aclosing(self._blocks(start)) as lists:
            pending = await self._read_header(lists)
            layout = read_header(self.service, self.header)
            self._log_start(start)
            await self._import(layout, lists, pending)
        failed_key = await self._write_failed_rows(layout)
        return self._response(layout, failed_key)

    def _resume_point(self) -> Checkpoint | None:
        """The checkpoint to resume from (its totals restored), or None to start over."""
        saved = self.ctx.job.checkpoint
        checkpoint = Checkpoint.from_json(saved)
        if checkpoint is None or not checkpoint.matches(self.stat):
            if saved is not None:
                self.restarted = True
                self.ctx.log.warning(
                    "the checkpoint does not match s3://%s/%s; importing from the start",
                    self.bucket,
                    self.key,
                    extra={"action": "import_restart", "bucket": self.bucket},
                )
            return None
        self.totals = Totals(checkpoint.processed, checkpoint.failed, list(checkpoint.errors))
        self.header = list(checkpoint.header)
        return checkpoint

    def _start(self) -> Position:
        """Where this attempt starts reading."""
        if self.resumed is None:
            return Position(0, 1)
        return Position(self.resumed.offset, self.resumed.line)

    async def _read_header(self, lists: AsyncIterator[list[RecordBlock]]) -> list[Pending]:
        """Read the header row unless resuming; the records that came with it."""
        if self.resumed is not None:
            return []
        header, pending = await _first_record(lists)
        self.header = header
        return pending

    def _log_start(self, start: Position) -> None:
        """Log where the import starts."""
        self.ctx.log.info(
            "importing %s from line %d",
            self.key,
            start.line,
            extra={"action": "import_start", "bucket": self.bucket, "offset": start.offset},
        )

    async def _import(
        self,
        layout: RowLayout,
        lists: AsyncIterator[list[RecordBlock]],
        pending: list[Pending],
    ) -> None:
        """Run the pipeline into every sink."""
        async with contextlib.AsyncExitStack() as stack:
            sinks = Sinks(
                postgres=await stack.enter_async_context(
                    PostgresSink.open(
                        self.pool,
                        self.service,
                        layout.names,
                        self.ctx.settings.parallel_jobs,
                        staging_per_transaction=self.ctx.settings.database_transaction_pooler,
                    )
                ),
                filters=FilterSink(self.pool, layout),
                failed=self.failed_rows,
                search=await self._search_sink(layout),
            )
            with _main_error():
                await self._pipeline(sinks, RowConverter(layout), lists, pending)
        if sinks.search is not None:
            await sinks.search.refresh()

    async def _write_failed_rows(self, layout: RowLayout) -> str | None:
        """Write the bad rows of every attempt to the failed-rows file; its key, if any."""
        key = failed_rows_key(self.key)
        async with FailedRowsFile(self.objects, self.bucket, key, layout.header) as file:
            async for page in self.failed_rows.pages():
                await file.write(page)
        await self.failed_rows.clear()
        # An attempt that stopped after this point left the file written and the rows gone.
        return key if self.totals.failed else None

    async def _search_sink(self, layout: RowLayout) -> SearchSink | None:
        """The search sink, when Elasticsearch is configured."""
        es: AsyncElasticsearch | None = self.ctx.services.search
        if es is None:
            return None
        return await SearchSink.open(es, self.ctx.settings.elasticsearch_index_prefix, layout)

    async def _pipeline(
        self,
        sinks: Sinks,
        converter: RowConverter,
        lists: AsyncIterator[list[RecordBlock]],
        pending: list[Pending],
    ) -> None:
        """Read and convert ahead in one task while another writes."""
        queue: asyncio.Queue[PreparedBatch | None] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read(sinks, converter, lists, pending, queue))
            tasks.create_task(self._write(sinks, queue))

    async def _blocks(self, start: Position) -> AsyncGenerator[list[RecordBlock], None]:
        """The records from `start`, in blocks, a list per chunk that completed any.

        Parsed off the loop.
        """
        reader = CsvRecordReader(start.offset, start.line, MAX_RECORD_BYTES)
        chunks = self.objects.iter_object(
            self.bucket, self.key, start.offset, if_match=self.stat.etag or None
        )
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                # Set before parsing, so every record holding this NUL is checked.
                self.nul_seen = self.nul_seen or b"\x00" in chunk
                blocks = await asyncio.to_thread(reader.feed_blocks, chunk)
                if blocks:
                    yield blocks
        blocks = await asyncio.to_thread(reader.finish_blocks)
        if blocks:
            yield blocks

    async def _read(
        self,
        sinks: Sinks,
        converter: RowConverter,
        lists: AsyncIterator[list[RecordBlock]],
        pending: list[Pending],
        queue: asyncio.Queue[PreparedBatch | None],
    ) -> None:
        """Cut the records into batches, convert each, and queue it; None marks the end."""
        cutter = BatchCutter(self.ctx.settings.batch_size_for_insertion)
        while pending:
            rest = pending.pop(0)  # popped, so that no frame keeps the block alive
            await self._convert(sinks, converter, cutter.add(rest.block, rest.start), queue)
        async for blocks in lists:
            for block in blocks:
                await self._convert(sinks, converter, cutter.add(block), queue)
        await self._convert(sinks, converter, cutter.finish(), queue)
        await queue.put(None)

    async def _convert(
        self,
        sinks: Sinks,
        converter: RowConverter,
        batches: list[RecordBatch],
        queue: asyncio.Queue[PreparedBatch | None],
    ) -> None:
        """Convert each batch in a worker thread and queue it.

        A batch is let go once converted, before waiting for room in the queue: its records are
        most of the memory an import holds.
        """
        while batches:
            batch = batches.pop(0)
            prepared = await asyncio.to_thread(_prepare, sinks, converter, batch, self.nul_seen)
            del batch
            await queue.put(prepared)

    async def _write(self, sinks: Sinks, queue: asyncio.Queue[PreparedBatch | None]) -> None:
        """Write queued batches in order, reporting progress as each is committed.

        Cut short (cancelled, or another task failed), it still counts and reports every batch
        committed, the one committed just before the interruption included.
        """
        written = Written()
        try:
            async with asyncio.TaskGroup() as tasks:
                while (batch := await queue.get()) is not None:
                    await _write_batch(sinks, batch)  # commits the batch staged before
                    await self._committed(tasks, sinks, written)
                    written.staged = _written(batch)
                await sinks.postgres.flush()
                await self._committed(tasks, sinks, written)
        except BaseException:
            await self._report_interrupted(sinks, written)
            raise

    async def _committed(self, tasks: asyncio.TaskGroup, sinks: Sinks, written: Written) -> None:
        """Count the staged batch once committed, report progress and save a checkpoint."""
        end = self._count_committed(sinks, written)
        if end is None:
            return
        if written.reported is not None:
            await written.reported  # one report at a time, so they land in order
        # Reported while the next batch is written: round trips off the critical path.
        written.reported = tasks.create_task(self._report(self._progress(), self._checkpoint(end)))

    def _count_committed(self, sinks: Sinks, written: Written) -> Position | None:
        """Count the staged batch if PostgreSQL committed it (the other sinks had it already);
        where it ends, or None when there was none to count."""
        staged = written.staged
        if staged is None or sinks.postgres.commits == written.commits:
            return None
        self._count(staged.converted)
        written.commits, written.end, written.staged = sinks.postgres.commits, staged.end, None
        return staged.end

    async def _report_interrupted(self, sinks: Sinks, written: Written) -> None:
        """Count a batch whose commit went through before the interruption, and report the
        totals unless the last report, which the interruption may have cut short, holds them."""
        counted = self._count_committed(sinks, written) is not None
        if written.end is None or (not counted and succeeded(written.reported)):
            return
        report = self._report(self._progress(), self._checkpoint(written.end))
        try:
            await asyncio.wait_for(asyncio.shield(report), FINAL_REPORT_SECONDS)
        except Exception as exc:  # the attempt ends anyway; its own error is the one to record
            self.ctx.log.warning(
                "could not report the rows committed before the import stopped: %s",
                exc,
                extra={"action": "import_final_report_failed"},
            )

    async def _report(self, progress: dict[str, Any], checkpoint: Checkpoint) -> None:
        """Hand progress, then the checkpoint, to the runner."""
        await self.ctx.report_progress(progress)
        await self.ctx.save_checkpoint(checkpoint.to_json())

    def _checkpoint(self, end: Position) -> Checkpoint:
        """The checkpoint after a batch ending at `end`, with the totals so far."""
        totals = self.totals
        return Checkpoint(
            offset=end.offset,
            line=end.line,
            processed=totals.processed,
            failed=totals.failed,
            errors=list(totals.errors),
            header=list(self.header),
            size=self.stat.size,
            etag=self.stat.etag,
        )

    def _progress(self) -> dict[str, Any]:
        """The progress fields of the job_response."""
        return {
            "number_records_processed": self.totals.processed,
            "number_records_failed": self.totals.failed,
        }

    def _count(self, batch: ConvertedBatch) -> None:
        """Add a written batch to the totals, keeping at most the allowed error messages."""
        totals = self.totals
        totals.processed += batch.good
        totals.failed += len(batch.bad)
        if self.ctx.settings.metrics_enabled:
            metrics.ROWS_IMPORTED.labels(self.service.name).inc(batch.good)
            metrics.ROWS_FAILED.labels(self.service.name).inc(len(batch.bad))
        room = self.ctx.settings.import_max_reported_errors - len(totals.errors)
        totals.errors += [row.message for row in batch.bad[: max(room, 0)]]

    def _response(self, layout: RowLayout, failed_key: str | None) -> dict[str, Any]:
        """The job_response fields of a finished import."""
        totals = self.totals
        self.ctx.log.info(
            "imported %d rows, %d failed",
            totals.processed,
            totals.failed,
            extra={"action": "import_done"},
        )
        response: dict[str, Any] = {
            "messages": self._message(),
            "number_records_processed": totals.processed,
            "number_records_failed": totals.failed,
            "runtime_errors": totals.errors,
            "runtime_errors_total": totals.failed,
            "failed_rows_s3_key": failed_key,
            "ignored_columns": list(layout.ignored_columns),
            "s3_key": self.key,
            "s3_bucket": self.bucket,
            "service": self.service.name,
        }
        if self.resumed is not None:
            response["resumed_from_line"] = self.resumed.line
        return response

    def _message(self) -> str:
        """The `messages` of a finished import."""
        totals = self.totals
        message = f"imported {totals.processed} rows, {totals.failed} failed"
        if self.resumed is not None:
            return f"{message} (resumed from line {self.resumed.line})"
        if self.restarted:
            return f"{message} (the file changed since the last attempt: imported from the start)"
        return message


async def _first_record(
    lists: AsyncIterator[list[RecordBlock]],
) -> tuple[list[str], list[Pending]]:
    """The header's fields and the records that came with it; a bad header fails the job."""
    async for blocks in lists:
        first = blocks[0]
        if 0 in first.errors:
            error = first.errors[0][0]
            raise HeaderError(f"line {first.lines[0]}: the header row is unreadable: {error}")
        return first.rows[0], [Pending(first, 1), *(Pending(block, 0) for block in blocks[1:])]
    raise EmptyFileError


def _prepare(
    sinks: Sinks, converter: RowConverter, batch: RecordBatch, nul_seen: bool
) -> PreparedBatch:
    """Convert a batch and shape every sink's payload (CPU work, run in a thread)."""
    converted = converter.convert(batch, nul_seen)
    search = sinks.search
    csv = verbatim_csv(converter.layout, batch, converted)
    converted.texts = []  # only needed to choose how to COPY
    return PreparedBatch(
        # Rows COPYed as CSV are not needed again: only their counts are kept.
        converted=converted if csv is None else _counts(converted),
        failed_lines=failed_rows_lines(converted.bad, converter.width),
        filter_values=sinks.filters.values(converted.columns),
        search_actions=search.actions(converted.rows()) if search is not None else [],
        end=Position(*batch.end()),
        csv=csv,
    )


def _counts(converted: ConvertedBatch) -> ConvertedBatch:
    """A converted batch without its rows: how many were good, and the bad ones."""
    return ConvertedBatch(good=converted.good, bad=converted.bad)


def _written(batch: PreparedBatch) -> PreparedBatch:
    """What is kept of a written batch until its commit: its rows' counts and its end."""
    return PreparedBatch(_counts(batch.converted), [], set(), [], batch.end)


async def _write_batch(sinks: Sinks, batch: PreparedBatch) -> None:
    """Write one batch to every sink concurrently."""
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(sinks.postgres.write(batch.converted.rows(), batch.csv))
        if batch.filter_values:
            tasks.create_task(sinks.filters.write(batch.filter_values))
        if sinks.search is not None and batch.search_actions:
            tasks.create_task(sinks.search.write(batch.search_actions))
        if batch.failed_lines:
            tasks.create_task(sinks.failed.write(batch.failed_lines))


@contextlib.contextmanager
def _main_error() -> Iterator[None]:
    """Raise the most telling error of a task group (a project error first), not the group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        # Plain raise: the chosen error keeps its own __cause__ (the driver's error).
        raise next((e for e in leaves if isinstance(e, ConnectraError)), leaves[0])  # noqa: B904


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside nested exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


INSERT_CSV_FILE = JobType(
    "insert_csv_file",
    InsertCsvData,
    run_insert_csv,
    "imports a CSV file from S3 into PostgreSQL, Elasticsearch and the filter values",
)
