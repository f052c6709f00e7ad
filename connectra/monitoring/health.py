"""Readiness of one process: what its `/readyz` checks, and the JSON body that names what is wrong.

Every process: the database answers. A runner process: its listener (none behind a
transaction-mode pooler without `DATABASE_DIRECT_URL`: nothing to check) and each runner's
heartbeats. The API: how many runners are live (none is reported, not a failure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import asyncpg

from connectra.db.driver_errors import DATABASE_DOWN
from connectra.db.monitor_store import MonitorStore

READY_TIMEOUT = 2.0
NOT_READY: tuple[type[Exception], ...] = (TimeoutError, *DATABASE_DOWN)
# A runner is unready once its last heartbeat round is older than this many intervals.
HEARTBEAT_INTERVALS = 2


class WatchedConfig(Protocol):
    """What health and the gauges read of a runner's configuration."""

    @property
    def heartbeat_interval(self) -> timedelta: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def queue_size(self) -> int: ...


class WatchedRunner(Protocol):
    """What health and the gauges read of a runner (`connectra.runners.runner.Runner`)."""

    @property
    def label(self) -> str: ...

    @property
    def config(self) -> WatchedConfig: ...

    def heartbeat_age(self) -> float: ...

    def is_fenced(self) -> bool: ...

    def queue_depth(self) -> int: ...

    def busy_slots(self) -> int: ...


class WatchedListener(Protocol):
    """The LISTEN connection (`connectra.db.listener.Listener`)."""

    @property
    def connected(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of `/readyz`: 200 or 503, and the body."""

    ready: bool
    body: dict[str, Any]

    @property
    def http_status(self) -> int:
        """200 when ready, else 503."""
        return 200 if self.ready else 503


@dataclass(frozen=True, slots=True)
class ProcessHealth:
    """The readiness checks of one process."""

    pool: asyncpg.Pool
    runners: Sequence[WatchedRunner] = ()
    listener: WatchedListener | None = None
    # Set in the API: report runners that heartbeated recently, from the runners table.
    presence: MonitorStore | None = None

    async def readiness(self) -> Readiness:
        """Run every check; the body has one entry per check and `problems`, what is wrong."""
        problems: list[str] = []
        body: dict[str, Any] = {"status": "ready"}
        body |= await self._database(problems)
        if self.listener is not None:
            body["listener"] = "ok" if self.listener.connected else "disconnected"
            if not self.listener.connected:
                problems.append("listener disconnected: new jobs wait for the next tick")
        if self.runners:
            body["heartbeats"] = {
                runner.label: _heartbeat(runner, problems) for runner in self.runners
            }
        if problems:
            body["status"] = "unavailable"
        body["problems"] = problems
        return Readiness(not problems, body)

    async def _database(self, problems: list[str]) -> dict[str, Any]:
        """The database check; in the API, the live runners too (the same round trip)."""
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                if self.presence is None:
                    await self.pool.fetchval("SELECT 1")
                    return {"database": "ok"}
                live = await self.presence.live_runners()
        except NOT_READY as exc:
            problems.append(f"database unreachable: {type(exc).__name__}")
            return {"database": f"unreachable: {type(exc).__name__}"}
        seen = live.last_seen_seconds
        runners = {"live": live.live, "last_seen_seconds": None if seen is None else round(seen, 3)}
        return {"database": "ok", "runners": runners}


def _heartbeat(runner: WatchedRunner, problems: list[str]) -> dict[str, Any]:
    """One runner's heartbeat check; a problem is added when it fails."""
    age = runner.heartbeat_age()
    limit = HEARTBEAT_INTERVALS * runner.config.heartbeat_interval.total_seconds()
    fenced = runner.is_fenced()
    if fenced:
        problems.append(
            f"{runner.label}: fenced: no heartbeat for {age:.1f} s, it gave up its jobs"
        )
    elif age > limit:
        problems.append(f"{runner.label}: last heartbeat round {age:.1f} s ago (over {limit:g} s)")
    return {"last_heartbeat_seconds": round(age, 3), "fenced": fenced}
