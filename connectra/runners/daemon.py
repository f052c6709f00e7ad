"""The daemon: one process hosting the API and/or runners, owning signals and the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from connectra.api.server_limits import ServerLimits
from connectra.db.announcer import DELAYED
from connectra.db.api_key_store import ApiKeyStore
from connectra.db.driver_errors import DATABASE_DOWN
from connectra.db.listener import Listener
from connectra.db.migrate import ensure_schema
from connectra.db.pool import create_pool
from connectra.db.schedule_store import ScheduleStore
from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, RETRY, Job, JobStatus
from connectra.monitoring.health import ProcessHealth
from connectra.monitoring.web import Monitor, api_monitor, serve_monitoring
from connectra.processors.base import JobTypeRegistry, Services
from connectra.processors.registry import default_registry
from connectra.runners.maintenance import Cleaner, Rescuer
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.runners.scheduler import Scheduler
from connectra.service_clients import open_services
from connectra.settings import ConfigError, Settings

log = logging.getLogger(__name__)

CONNECT_RETRY_FIRST = 0.5
CONNECT_RETRY_MAX = 15.0
NO_API_KEYS = (
    "invalid configuration: API_KEYS: no API key is set and none is stored; set API_KEYS or "
    "create one with 'connectra keys create NAME --scope admin' (connectra run accepts the "
    "local development key only when API_HOST is a loopback address)"
)


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
    database_url: str
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
    with _signals_request(stopping):
        pool = await _connect(database_url, settings, pool_size(settings, parts), stopping.soft)
        if pool is None:
            return
        try:
            await ensure_schema(pool, apply=parts.migrate)
            if parts.api:
                await _require_api_keys(settings, pool)
            async with open_services(settings, pool) as services:
                store = JobStore(pool)
                wiring = Wiring(
                    settings, database_url, store, services, registry or default_registry()
                )
                await _run_parts(wiring, parts, stopping, on_api_listening)
        finally:
            await asyncio.wait_for(pool.close(), 10)


async def _require_api_keys(settings: Settings, pool: asyncpg.Pool) -> None:
    """An API that accepts no key at all is a mistake: without API_KEYS, at least one
    managed key must be active (one created later works at once, but is no reason to start)."""
    if not settings.api_keys and not await ApiKeyStore(pool).any_active():
        raise ConfigError(NO_API_KEYS)


def pool_size(settings: Settings, parts: Parts) -> int:
    """The process's pool: sized by the first_time runners' slots, or by the retry runner's
    one slot in a process that runs nothing else."""
    only_retry = parts.retry and not (parts.first_time or parts.api)
    return settings.pool_size_for(1) if only_retry else settings.pool_size


async def _connect(
    url: str, settings: Settings, size: int, stop: asyncio.Event
) -> asyncpg.Pool | None:
    """A pool, waiting with backoff while the database is down; None if stopped first."""
    delay = CONNECT_RETRY_FIRST
    while True:
        try:
            return await create_pool(
                url,
                max_size=size,
                transaction_pooler=settings.database_transaction_pooler,
            )
        except DATABASE_DOWN as exc:
            log.warning(
                "database unavailable (%s); retrying in %.1fs",
                exc,
                delay,
                extra={"action": "db_connect_retry"},
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return None
        delay = min(delay * 2, CONNECT_RETRY_MAX)


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
        listener = _start_maintenance(tg, wiring, runners, stopping.soft) if runners else None
        # No listener (LISTEN off behind a transaction pooler): readiness does not check it.
        settings = wiring.settings
        if parts.api:
            from connectra.api.app import create_app
            from connectra.api.server import serve_api

            app = create_app(
                wiring.store,
                wiring.registry,
                settings,
                on_job_created=_waker(runners),
                objects=wiring.services.objects,
                monitor=api_monitor(wiring.store.pool, settings.metrics_enabled, runners, listener),
            )
            tg.create_task(
                serve_api(
                    app, settings.api_host, settings.api_port, stopping.soft, on_api_listening
                )
            )
        elif runners and settings.metrics_port:
            # Runner processes: metrics and health on a listener of their own.
            health = ProcessHealth(wiring.store.pool, runners, listener)
            monitor = Monitor(health, settings.metrics_enabled)
            tg.create_task(
                serve_monitoring(
                    monitor,
                    settings.metrics_host,
                    settings.metrics_port,
                    stopping.soft,
                    ServerLimits.of(settings),
                )
            )


def _start_maintenance(
    tg: asyncio.TaskGroup, wiring: Wiring, runners: list[Runner], stop: asyncio.Event
) -> Listener | None:
    """Instant pickup, rescue of dead runners' jobs, retention and, beside a first_time
    runner, cron schedules; the listener (instant pickup), if any, is returned for the
    health checks."""
    settings = wiring.settings
    listener = _listener(wiring, runners)
    objects = wiring.services.objects
    rescuer = Rescuer(wiring.store, settings.retry_policy(), settings.lease, objects)
    cleaner = Cleaner(
        wiring.store,
        objects,
        job_ttl=timedelta(days=settings.job_ttl_days),
        result_ttl=timedelta(days=settings.result_ttl_days),
        policy=settings.bucket_policy(),
        export_prefix=settings.s3_upload_file_path_prefix,
        upload_ttl=timedelta(hours=settings.multipart_upload_ttl_hours),
    )
    if listener is not None:
        tg.create_task(listener.run(stop))
    tg.create_task(rescuer.run(stop))
    tg.create_task(cleaner.run(timedelta(seconds=settings.cleanup_interval_seconds), stop))
    if any(runner.kind is FIRST_TIME for runner in runners):
        scheduler = Scheduler(ScheduleStore(wiring.store.pool), wiring.registry)
        tg.create_task(scheduler.run(stop))
    return listener


def _listener(wiring: Wiring, runners: list[Runner]) -> Listener | None:
    """The LISTEN connection that wakes the runners, on a session of its own; None (and a
    warning) behind a transaction pooler without `DATABASE_DIRECT_URL`."""
    settings = wiring.settings
    url = settings.listen_url(wiring.database_url)
    if url is None:
        log.warning(
            "DATABASE_TRANSACTION_POOLER is set without DATABASE_DIRECT_URL: no LISTEN, new "
            "jobs wait for the next tick (every %g s, TICKER_INTERVAL_SECONDS)",
            settings.ticker_interval.total_seconds(),
            extra={"action": "listen_off"},
        )
        return None
    return Listener(
        url,
        on_notify=lambda payload: _dispatch(runners, payload),
        on_connect=lambda: _dispatch(runners, None),
    )


def _dispatch(runners: list[Runner], payload: str | None) -> None:
    """Route a notification: new jobs wake first_time (delayed ones make it look up when they
    fall due), failed ones retry, the rest heartbeat."""
    for runner in runners:
        if payload == DELAYED and runner.kind is FIRST_TIME:
            runner.expect_due()
        if payload is None or payload == runner.kind.claims:
            runner.wake()
        if payload is None or payload in (runner.kind.running, runner.kind.queued):
            runner.check_leases()


def _runners(wiring: Wiring, parts: Parts) -> list[Runner]:
    """The runners this process hosts: first_time ones (one for every queue with PARALLEL_JOBS
    handler slots, or one per group of `QUEUES`), and retry with one slot."""
    settings = wiring.settings
    wanted = settings.first_time_groups() if parts.first_time else []
    kinds = [(FIRST_TIME, queues, slots) for queues, slots in wanted]
    kinds += [(RETRY, settings.queue_names, 1)] if parts.retry else []
    return [
        Runner(
            wiring.store,
            wiring.registry,
            settings,
            RunnerConfig.from_settings(settings, kind, concurrency, queues),
            services=wiring.services,
        )
        for kind, queues, concurrency in kinds
    ]


def _waker(runners: list[Runner]) -> Callable[[Job], None]:
    """A job created in this process wakes its first_time runner at once."""
    first_time = [runner for runner in runners if runner.kind is FIRST_TIME]

    def wake(job: Job) -> None:
        for runner in first_time:
            if job.status is JobStatus.SCHEDULED:
                runner.expect_due()
            else:
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
