"""New jobs are announced after their commit, one NOTIFY for many concurrent creates."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg

from connectra.db.announcer import CHANNEL, Announcer
from connectra.db.store import JobStore
from connectra.jobs import NewJob
from tests.polling import eventually


async def test_concurrent_creates_share_announcements(store: JobStore, database_url: str) -> None:
    listener = await asyncpg.connect(database_url)
    payloads: list[str] = []
    await listener.add_listener(CHANNEL, lambda *args: payloads.append(args[-1]))
    try:
        await asyncio.gather(*(store.create(NewJob("noop", {})) for _ in range(50)))

        async def all_heard() -> bool:
            return len(payloads) == store.announcer.sent

        await eventually(all_heard)
    finally:
        await listener.close()
    assert 1 <= store.announcer.sent < 50
    assert set(payloads) == {"open"}


async def test_an_idempotent_repeat_announces_nothing(store: JobStore) -> None:
    for _ in range(2):
        await store.create_once("key-1", "fingerprint", timedelta(hours=1), NewJob("noop", {}))
    assert store.announcer.sent == 1


class _SlowPool:
    """Stands in for the pool: each NOTIFY waits until the test lets it finish."""

    def __init__(self) -> None:
        self.started: list[asyncio.Event] = []
        self.release: list[asyncio.Event] = []

    async def execute(self, *_: Any) -> None:
        started, release = asyncio.Event(), asyncio.Event()
        self.started.append(started)
        self.release.append(release)
        started.set()
        await release.wait()


async def test_a_create_waits_for_an_announcement_that_started_after_it() -> None:
    pool = _SlowPool()
    announcer = Announcer(pool)  # type: ignore[arg-type]
    first = asyncio.create_task(announcer.new_jobs())
    await eventually(lambda: _true(len(pool.started) == 1))
    # Two creates commit while the first announcement is on its way: it may have left
    # before their commits, so they need the next one, and share it.
    later = [asyncio.create_task(announcer.new_jobs()) for _ in range(2)]
    await asyncio.sleep(0.01)  # they start (no hook tells when they wait)
    pool.release[0].set()
    await first
    await eventually(lambda: _true(len(pool.started) == 2))
    assert not any(task.done() for task in later)
    pool.release[1].set()
    await asyncio.gather(*later)
    assert announcer.sent == 2


async def _true(value: bool) -> bool:
    return value


class _RefusingPool:
    async def execute(self, *_: Any) -> None:
        raise asyncpg.TooManyConnectionsError("sorry, too many clients already")


async def test_a_failed_announcement_does_not_fail_the_create(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    store.announcer.pool = _RefusingPool()  # type: ignore[assignment]
    job = await store.create(NewJob("noop", {}))
    assert await pool.fetchval("SELECT status FROM jobs WHERE uuid = $1", job.uuid) == "open"
    assert store.announcer.sent == 0
