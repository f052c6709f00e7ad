"""Resumable imports: an interrupted insert_csv_file continues from its last checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.errors import ObjectChanged, ObjectStoreUnavailable
from connectra.failure_policy import is_transient
from connectra.jobs import FIRST_TIME, RETRY, Job, JobStatus, NewJob, RunnerKind
from connectra.logs import BoundLogger
from connectra.objectstore import ObjectStat, ObjectStore
from connectra.processors.base import JobContext, Services
from connectra.processors.importing.job_type import INSERT_CSV_FILE
from connectra.processors.registry import default_registry
from connectra.retry import RetryPolicy
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.settings import load_settings
from tests.integration.test_insert_csv import (
    CONTACT_HEADER,
    Env,
    contact_line,
    env,  # noqa: F401  (the fixture)
    uid,
)
from tests.polling import eventually

KEY = "in/resume.csv"
FAILED_KEY = "in/resume.failed.csv"
BATCH = 5


ChunkHook = Callable[[int], Awaitable[None]]


class ScriptedStore(ObjectStore):
    """The test's store, in small chunks, recording where each GET starts.

    `hook` is awaited with each chunk's offset before the chunk is served; it may raise.
    """

    def __init__(self, inner: ObjectStore, hook: ChunkHook | None = None) -> None:
        super().__init__(None, "us-east-1")
        self._client = inner.client
        self.hook = hook
        self.starts: list[int] = []
        self.if_matches: list[str | None] = []

    async def iter_object(
        self, bucket: str, key: str, start: int = 0, if_match: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The object from `start` in 64-byte chunks."""
        self.starts.append(start)
        self.if_matches.append(if_match)
        offset = start
        chunks = super().iter_object(bucket, key, start, if_match)
        async with contextlib.aclosing(chunks):
            async for data in chunks:
                for i in range(0, len(data), 64):
                    if self.hook is not None:
                        await self.hook(offset)
                    offset += len(data[i : i + 64])
                    yield data[i : i + 64]
                    await asyncio.sleep(0)


def drop_when(event: asyncio.Event) -> ChunkHook:
    """A hook that drops the connection once `event` is set."""

    async def hook(offset: int) -> None:
        if event.is_set():
            raise ObjectStoreUnavailable("injected: the connection dropped")

    return hook


@dataclasses.dataclass
class Attempt:
    """One attempt of a job, with what it saved."""

    env: Env
    job: Job
    store: ScriptedStore
    checkpoints: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dropped: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    fail_after: int | None = None  # set `dropped` after this many checkpoints
    before_save: Callable[[], Awaitable[None]] | None = None

    async def save(self, checkpoint: dict[str, Any]) -> None:
        """Keep the checkpoint as the jobs table would (a JSON round trip)."""
        if self.before_save is not None:
            await self.before_save()
        self.checkpoints.append(json.loads(json.dumps(checkpoint)))
        if self.fail_after is not None and len(self.checkpoints) >= self.fail_after:
            self.dropped.set()

    async def run(self) -> dict[str, Any]:
        """Run the handler; its result."""
        ctx = JobContext(
            job=self.job,
            attempt=1,
            settings=load_settings(
                BATCH_SIZE_FOR_INSERTION=BATCH,
                IMPORT_MAX_REPORTED_ERRORS=3,
                S3_ALLOWED_BUCKETS=self.env.bucket,
            ),
            log=BoundLogger(logging.getLogger("test"), {}),
            services=Services(pool=self.env.pool, objects=self.store),
            save_checkpoint=self.save,
        )
        result = await INSERT_CSV_FILE.run(ctx)
        assert result is not None
        return result


def source(rows: int, bad: set[int], start: int = 0) -> str:
    """A contacts file; rows in `bad` have three fields instead of fourteen."""
    lines = [f"{uid(i)},only,three" if i in bad else contact_line(i) for i in range(start, rows)]
    return "\n".join([CONTACT_HEADER, *lines]) + "\n"


def digest(uuids: list[str]) -> str:
    """A checksum of a set of uuids."""
    return hashlib.md5(",".join(sorted(uuids)).encode()).hexdigest()


async def table_digest(pool: asyncpg.Pool) -> tuple[int, str]:
    """How many contacts there are, and the checksum of their uuids."""
    rows = await pool.fetch("SELECT uuid::text AS u FROM contacts")
    return len(rows), digest([row["u"] for row in rows])


async def interrupted(env: Env, job: Job, after: int) -> Attempt:
    """An attempt whose stream drops after `after` checkpoints."""
    dropped = asyncio.Event()
    store = ScriptedStore(env.objects, drop_when(dropped))
    first = Attempt(env, job, store, dropped=dropped, fail_after=after)
    with pytest.raises(ObjectStoreUnavailable):
        await first.run()
    assert len(first.checkpoints) >= after
    return first


async def test_an_interrupted_import_resumes_from_its_checkpoint(env: Env) -> None:
    bad = {1, 6, 30, 41, 58}  # in the first attempt's batches and in the tail
    data = source(60, bad)
    await env.put(KEY, data)
    job = await JobStore(env.pool).create(
        NewJob("insert_csv_file", {"s3_key": KEY, "s3_bucket": env.bucket})
    )

    first = await interrupted(env, job, after=2)
    saved = first.checkpoints[-1]
    assert 0 < saved["offset"] < len(data.encode())
    assert saved["failed"] >= 2  # rows 1 and 6 (lines 3 and 8) were committed

    second = Attempt(env, dataclasses.replace(job, checkpoint=saved), ScriptedStore(env.objects))
    result = await second.run()

    assert second.store.starts == [saved["offset"]]  # only the tail was read
    good = [uid(i) for i in range(60) if i not in bad]
    assert await table_digest(env.pool) == (len(good), digest(good))
    assert result["number_records_processed"] == len(good)
    assert result["number_records_failed"] == len(bad)
    assert result["runtime_errors_total"] == len(bad)
    assert result["runtime_errors"] == [
        f"line {i + 2}: expected 14 fields, found 3" for i in (1, 6, 30)
    ]
    assert result["resumed_from_line"] == saved["line"]
    assert result["messages"] == f"imported 55 rows, 5 failed (resumed from line {saved['line']})"
    failed = await env.failed_rows(FAILED_KEY)
    assert failed[0] == ["line", "error", *CONTACT_HEADER.split(","), "raw"]
    assert [[*row[:2], row[-1][:36]] for row in failed[1:]] == [
        [str(i + 2), "expected 14 fields, found 3", uid(i)] for i in sorted(bad)
    ]
    assert await env.pool.fetchval("SELECT count(*) FROM import_failed_rows") == 0


async def test_a_changed_object_makes_the_import_start_over(env: Env) -> None:
    await env.put(KEY, source(60, {2, 40}))
    job = await JobStore(env.pool).create(
        NewJob("insert_csv_file", {"s3_key": KEY, "s3_bucket": env.bucket})
    )
    first = await interrupted(env, job, after=2)
    await env.put(KEY, source(80, {70}, start=60))  # other rows under the same key

    retry = dataclasses.replace(job, checkpoint=first.checkpoints[-1])
    second = Attempt(env, retry, ScriptedStore(env.objects))
    result = await second.run()

    assert second.store.starts == [0]
    assert "resumed_from_line" not in result
    assert result["messages"] == (
        "imported 19 rows, 1 failed "
        "(the file changed since the last attempt: imported from the start)"
    )
    assert (result["number_records_processed"], result["number_records_failed"]) == (19, 1)
    rows = {row["u"] for row in await env.pool.fetch("SELECT uuid::text AS u FROM contacts")}
    assert {uid(i) for i in range(60, 80) if i != 70} <= rows
    failed = await env.failed_rows(FAILED_KEY)
    assert [row[:2] for row in failed[1:]] == [["12", "expected 14 fields, found 3"]]


async def test_an_object_replaced_after_its_check_is_not_read(env: Env) -> None:
    # The ETag is read first (to match a checkpoint), the bytes later: if the object is
    # replaced in between, the read must fail instead of mixing two versions.
    await env.put(KEY, source(30, set()))
    job = await JobStore(env.pool).create(
        NewJob("insert_csv_file", {"s3_key": KEY, "s3_bucket": env.bucket})
    )

    class ReplacedAfterStat(ScriptedStore):
        checked = ""

        async def stat(self, bucket: str, key: str) -> ObjectStat:
            stat = await super().stat(bucket, key)
            self.checked = stat.etag
            await env.put(KEY, source(60, set(), start=30))
            return stat

    store = ReplacedAfterStat(env.objects)
    with pytest.raises(ObjectChanged) as caught:
        await Attempt(env, job, store).run()
    assert caught.value.code == "ERR_S3_OBJECT_CHANGED"
    assert is_transient(caught.value)  # the next attempt starts over on the new object
    assert store.if_matches == [store.checked]
    assert await env.pool.fetchval("SELECT count(*) FROM contacts") == 0


async def test_a_checkpoint_is_saved_once_each_batch_is_committed(env: Env) -> None:
    data = source(23, {7})
    await env.put(KEY, data)
    job = await JobStore(env.pool).create(
        NewJob("insert_csv_file", {"s3_key": KEY, "s3_bucket": env.bucket})
    )
    committed: list[tuple[int, int]] = []

    async def count_committed() -> None:
        contacts = await env.pool.fetchval("SELECT count(*) FROM contacts")
        failed = await env.pool.fetchval("SELECT count(*) FROM import_failed_rows")
        committed.append((contacts, failed))

    attempt = Attempt(env, job, ScriptedStore(env.objects), before_save=count_committed)
    await attempt.run()

    ends = [len("".join(data.splitlines(keepends=True)[:n]).encode()) for n in (6, 11, 16, 21, 24)]
    stat = await env.objects.stat(env.bucket, KEY)
    assert attempt.checkpoints == [
        {
            "offset": end,
            "line": line,
            "processed": processed,
            "failed": failed,
            "errors": ["line 9: expected 14 fields, found 3"] if failed else [],
            "header": CONTACT_HEADER.split(","),
            "size": len(data.encode()),
            "etag": stat.etag,
        }
        for end, line, processed, failed in zip(
            ends, (7, 12, 17, 22, 25), (5, 9, 14, 19, 22), (0, 1, 1, 1, 1), strict=True
        )
    ]
    # Each checkpoint came after its batch's rows and bad rows were committed.
    assert all(
        rows >= cp["processed"] and bad >= cp["failed"]
        for (rows, bad), cp in zip(committed, attempt.checkpoints, strict=True)
    )


async def test_a_rerun_from_a_checkpoint_at_the_end_keeps_the_failed_rows_file(env: Env) -> None:
    await env.put(KEY, source(12, {3}))
    job = await JobStore(env.pool).create(
        NewJob("insert_csv_file", {"s3_key": KEY, "s3_bucket": env.bucket})
    )
    first = Attempt(env, job, ScriptedStore(env.objects))
    await first.run()

    # As if the runner died after the handler finished but before the job was marked completed.
    again = Attempt(env, dataclasses.replace(job, checkpoint=first.checkpoints[-1]), first.store)
    result = await again.run()

    assert (result["number_records_processed"], result["number_records_failed"]) == (11, 1)
    assert result["failed_rows_s3_key"] == FAILED_KEY
    assert [row[0] for row in (await env.failed_rows(FAILED_KEY))[1:]] == ["5"]


async def test_the_retry_runner_resumes_a_failed_import_from_the_job_row(env: Env) -> None:
    bad = {4, 50}
    data = source(60, bad)
    await env.put(KEY, data)
    store = JobStore(env.pool)
    job_data = {"s3_key": KEY, "s3_bucket": env.bucket}
    job = await store.create(NewJob("insert_csv_file", job_data, retry_count=1, retry_interval=1))

    async def checkpoint_saved() -> bool:
        saved = await env.pool.fetchval("SELECT checkpoint FROM jobs WHERE id = $1", job.id)
        return saved is not None

    async def drop_after_a_checkpoint(offset: int) -> None:
        if offset >= len(data.encode()) * 2 // 3:
            await eventually(checkpoint_saved)  # the stream stalls until then
            raise ObjectStoreUnavailable("injected: the connection dropped")

    first = ScriptedStore(env.objects, drop_after_a_checkpoint)
    async with running(store, FIRST_TIME, first, env.bucket):
        await eventually(lambda: status_is(store, job, JobStatus.FAILED))
    saved = (await store.get(job.uuid)).checkpoint
    assert saved is not None
    assert 0 < saved["offset"] < len(data.encode())

    second = ScriptedStore(env.objects)
    async with running(store, RETRY, second, env.bucket):
        await eventually(lambda: status_is(store, job, JobStatus.COMPLETED))

    assert second.starts == [saved["offset"]]
    response = (await store.get(job.uuid)).job_response
    assert response["resumed_from_line"] == saved["line"]
    assert (response["number_records_processed"], response["number_records_failed"]) == (58, 2)
    good = [uid(i) for i in range(60) if i not in bad]
    assert await table_digest(env.pool) == (len(good), digest(good))
    failed = await env.failed_rows(FAILED_KEY)
    assert [row[0] for row in failed[1:]] == ["6", "52"]


@contextlib.asynccontextmanager
async def running(
    store: JobStore, kind: RunnerKind, objects: ObjectStore, bucket: str
) -> AsyncIterator[None]:
    """A runner of `kind` importing through `objects` from `bucket` for the duration of the
    block."""
    cfg = RunnerConfig(
        kind=kind,
        concurrency=1,
        queue_size=1,
        tick_interval=timedelta(seconds=0.05),
        shutdown_grace=timedelta(seconds=5),
        retry_policy=RetryPolicy(),
    )
    settings = load_settings(BATCH_SIZE_FOR_INSERTION=BATCH, S3_ALLOWED_BUCKETS=bucket)
    services = Services(pool=store.pool, objects=objects)
    runner = Runner(store, default_registry(), settings, cfg, services=services)
    stopping = Stopping()
    task = asyncio.create_task(runner.run(stopping))
    try:
        yield
    finally:
        stopping.request()
        await asyncio.wait_for(task, 30)


async def status_is(store: JobStore, job: Job, status: JobStatus) -> bool:
    """True once the job has this status."""
    return (await store.get(job.uuid)).status is status
