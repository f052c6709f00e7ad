"""The HTTP side of monitoring: `/metrics`, `/healthz` and `/readyz`, on the API's app (with
the request-duration middleware) or, in a process running only runners, on a small listener
of its own (METRICS_HOST:METRICS_PORT)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric

from connectra import metrics as m
from connectra.api.server_limits import LISTEN_BACKLOG, GuardedAppRunner, ServerLimits
from connectra.db.monitor_store import MonitorStore
from connectra.errors import ListenError
from connectra.monitoring.collectors import DatabaseFigures, RunnerGauges
from connectra.monitoring.health import ProcessHealth, WatchedListener, WatchedRunner

log = logging.getLogger(__name__)

# Open connections get this long to finish once the daemon stops.
SHUTDOWN_TIMEOUT = 2.0
# Methods kept as they are in the `method` label; any other is "other" (bounded labels).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the `route` of a request no route matched (404, 405)
CLIENT_CLOSED = 499  # the `status` of a request whose client went away first
# The classic text format, which every Prometheus reads (what `generate_latest` writes).
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Monitor:
    """What one process's `/metrics` and `/readyz` serve."""

    health: ProcessHealth
    metrics_enabled: bool = True
    # The API's: jobs by status and queue, live runners (from PostgreSQL).
    database: DatabaseFigures | None = None

    def collect(self) -> Iterable[Metric]:
        """Every family of a scrape: the process's counters and histograms, its runners'
        gauges and the database's figures."""
        yield from m.REGISTRY.collect()
        yield from RunnerGauges(self.health.runners).collect()
        if self.database is not None:
            yield from self.database.collect()


MONITOR = web.AppKey("monitor", Monitor)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """`GET /metrics`: the Prometheus text format."""
    monitor = request.app[MONITOR]
    if monitor.database is not None:
        await monitor.database.refresh()
    body = generate_latest(monitor)
    return web.Response(body=body, headers={"Content-Type": TEXT_FORMAT})


async def healthz(_request: web.Request) -> web.Response:
    """`GET /healthz`: 200 while the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """`GET /readyz`: 200 when every check passes, else 503; the body names what is wrong."""
    readiness = await request.app[MONITOR].health.readiness()
    return web.json_response(readiness.body, status=readiness.http_status)


def add_monitoring(app: web.Application, monitor: Monitor) -> None:
    """Keep the monitor on the app and serve `/metrics` (unless metrics are off); the app
    routes `/healthz` and `/readyz` to `healthz` and `readyz` itself."""
    app[MONITOR] = monitor
    if monitor.metrics_enabled:
        app.router.add_get("/metrics", metrics_endpoint)


def monitoring_app(monitor: Monitor) -> web.Application:
    """The listener of a process running only runners."""
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_monitoring(app, monitor)
    return app


async def serve_monitoring(
    monitor: Monitor, host: str, port: int, stop: asyncio.Event, limits: ServerLimits
) -> None:
    """Serve `monitoring_app` until `stop` is set, slow clients bounded as on the API."""
    runner = GuardedAppRunner(
        monitoring_app(monitor),
        limits,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG).start()
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {host}:{port} (METRICS_HOST, METRICS_PORT; 0 turns the "
                f"listener off): {exc.strerror or exc}"
            ) from exc
        log.info(
            "metrics and health on http://%s:%d", host, port, extra={"action": "metrics_listen"}
        )
        await stop.wait()
    finally:
        await runner.cleanup()


@web.middleware
async def request_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request into `connectra_http_request_duration_seconds` by method, route and
    status; outermost, so that it sees the status the client gets."""
    began = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        resource = request.match_info.route.resource
        method = request.method if request.method in KNOWN_METHODS else "other"
        route = resource.canonical if resource is not None else UNMATCHED
        m.HTTP_REQUEST_DURATION.labels(method, route, status).observe(time.perf_counter() - began)


def api_monitor(
    pool: asyncpg.Pool,
    metrics_enabled: bool,
    runners: Sequence[WatchedRunner] = (),
    listener: WatchedListener | None = None,
) -> Monitor:
    """The API's monitor: the database and the runners table, and the runners and listener
    of its own process (`connectra run`)."""
    store = MonitorStore(pool)
    health = ProcessHealth(pool, runners, listener, presence=store)
    return Monitor(health, metrics_enabled, DatabaseFigures(store))
