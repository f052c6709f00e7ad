"""Dispatching jobs from Python: in the caller's own transaction, announced after its commit,
and many at once in one statement."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel

from connectra import JobContext, JobStatus, JobTypeRegistry
from connectra.db.announcer import CHANNEL
from connectra.errors import InvalidJobDataError, UnknownJobTypeError
from connectra.processors.registry import default_registry

registry = JobTypeRegistry()


class Invoice(BaseModel):
    number: int


@registry.job(queue="billing", priority=3, retry_count=2)
async def bill(ctx: JobContext, data: Invoice) -> None:
    """Bill one invoice."""


@pytest.fixture
def jobs_registry() -> JobTypeRegistry:
    combined = default_registry()
    combined.include(registry)
    return combined


class Listener:
    """A connection listening on the jobs channel, collecting payloads."""

    def __init__(self) -> None:
        self.heard: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.heard.put_nowait(payload)


@pytest.fixture
async def listener(database_url: str) -> Any:
    conn = await asyncpg.connect(database_url)
    heard = Listener()
    await conn.add_listener(CHANNEL, heard)
    try:
        yield heard
    finally:
        await conn.close()


async def test_a_job_dispatched_in_a_transaction_exists_only_once_it_commits(
    database_url: str, jobs_registry: JobTypeRegistry, listener: Listener
) -> None:
    conn = await asyncpg.connect(database_url)  # the user's own connection, no codecs
    try:
        async with conn.transaction():
            job = await jobs_registry.dispatch(conn, "bill", {"number": 7})
            await asyncio.sleep(0.2)  # the point: no announcement while uncommitted
            assert listener.heard.empty(), "announced before the commit"
            other = await asyncpg.connect(database_url)
            try:
                assert await other.fetchval("SELECT count(*) FROM jobs") == 0
            finally:
                await other.close()
        assert await asyncio.wait_for(listener.heard.get(), 5) == "open"
        row = await conn.fetchrow("SELECT status, queue, priority, retry_count FROM jobs")
    finally:
        await conn.close()
    assert job.data == {"number": 7}
    assert tuple(row) == ("open", "billing", 3, 2)


async def test_a_rolled_back_dispatch_leaves_no_job_and_no_announcement(
    database_url: str, jobs_registry: JobTypeRegistry, listener: Listener
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with contextlib.suppress(RuntimeError):
            async with conn.transaction():
                await bill.dispatch(conn, {"number": 1})
                raise RuntimeError("the caller's work failed")
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
    finally:
        await conn.close()
    await asyncio.sleep(0.2)  # the point: no announcement comes
    assert listener.heard.empty()


async def test_dispatch_many_creates_every_job_in_one_statement_in_order(
    pool: asyncpg.Pool, jobs_registry: JobTypeRegistry, listener: Listener
) -> None:
    wanted = [
        jobs_registry.new_job("bill", {"number": n}, priority=n % 3, delay_seconds=n % 2 * 60)
        for n in range(500)
    ]
    jobs = await jobs_registry.dispatch_many(pool, wanted)
    assert [job.data["number"] for job in jobs] == list(range(500))
    assert [job.priority for job in jobs] == [n % 3 for n in range(500)]
    assert {job.status for job in jobs[1::2]} == {JobStatus.SCHEDULED}
    assert {job.status for job in jobs[::2]} == {JobStatus.OPEN}
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 500
    heard = {await asyncio.wait_for(listener.heard.get(), 5) for _ in range(2)}
    assert heard == {"open", "scheduled"}
    assert listener.heard.empty(), "one announcement of each kind for the whole batch"


async def test_dispatch_validates_before_anything_is_written(
    pool: asyncpg.Pool, jobs_registry: JobTypeRegistry
) -> None:
    with pytest.raises(InvalidJobDataError):
        await jobs_registry.dispatch(pool, "bill", {"number": "seven"})
    with pytest.raises(UnknownJobTypeError):
        await jobs_registry.dispatch(pool, "nope", {})
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0
