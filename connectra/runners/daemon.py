"""The daemon: one process hosting the API and/or runners, owning signals and the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from connectra.connections import open_services
from connectra.db.migrate import ensure_schema
from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, RETRY, Job
from connectra.processors.base import JobTypeRegistry, Services
from connectra.processors.registry import default_registry
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Parts:
    """Which parts this process runs."""

    api: bool = False
    first_time: bool = False
    retry: bool = False
    migrate: bool = False


@dataclass(frozen=True, slots=True)
class Wiring:
    """What every part of the daemon shares."""

    settings: Settings
    store: JobStore
    services: Services
    registry: JobTypeRegistry


async def serve(
    settings: Settings,
    database_url: str,
    parts: Parts,
    *,
    registry: JobTypeRegistry | None = None,
    on_api_listening: Callable[[int], None] | None = None,
) -> None:
    """Run the chosen parts until SIGINT/SIGTERM; a second signal stops at once."""
    stopping = Stopping()
    pool = await create_pool(database_url, max_size=settings.pool_size)
    try:
        await ensure_schema(pool, apply=parts.migrate)
        async with open_services(settings, pool) as services:
            wiring = Wiring(settings, JobStore(pool), services, registry or default_registry())
            with _signals_request(stopping):
                await _run_parts(wiring, parts, stopping, on_api_listening)
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def _run_parts(
    wiring: Wiring,
    parts: Parts,
    stopping: Stopping,
    on_api_listening: Callable[[int], None] | None,
) -> None:
    """Start every part in one task group; a part that fails stops the others."""
    runners = _runners(wiring, parts)
    async with asyncio.TaskGroup() as tg:
        for runner in runners:
            tg.create_task(runner.run(stopping))
        if parts.api:
            from connectra.api.app import create_app
            from connectra.api.server import serve_api

            settings = wiring.settings
            app = create_app(
                wiring.store,
                wiring.registry,
                settings,
                on_job_created=_waker(runners),
                objects=wiring.services.objects,
            )
            tg.create_task(
                serve_api(
                    app, settings.api_host, settings.api_port, stopping.soft, on_api_listening
                )
            )


def _runners(wiring: Wiring, parts: Parts) -> list[Runner]:
    """The runners this process hosts: first_time with PARALLEL_JOBS consumers, retry with one."""
    wanted = [(FIRST_TIME, wiring.settings.parallel_jobs)] if parts.first_time else []
    wanted += [(RETRY, 1)] if parts.retry else []
    return [
        Runner(
            wiring.store,
            wiring.registry,
            wiring.settings,
            RunnerConfig.from_settings(wiring.settings, kind, concurrency),
            services=wiring.services,
        )
        for kind, concurrency in wanted
    ]


def _waker(runners: list[Runner]) -> Callable[[Job], None]:
    """A job created in this process wakes its first_time runner at once."""
    first_time = [runner for runner in runners if runner.kind is FIRST_TIME]

    def wake(_job: Job) -> None:
        for runner in first_time:
            runner.wake()

    return wake


@contextlib.contextmanager
def _signals_request(stopping: Stopping) -> Iterator[None]:
    """SIGINT and SIGTERM ask the daemon to stop: soft the first time, hard after."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        level = "hard" if stopping.soft.is_set() else "soft"
        log.warning("%s received: %s stop", signum.name, level, extra={"action": "signal"})
        stopping.request()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
