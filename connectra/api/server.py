"""Serves the API inside the daemon, which owns the signals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from connectra.api.server_limits import LISTEN_BACKLOG, GuardedAppRunner, ServerLimits
from connectra.api.state import SETTINGS

log = logging.getLogger(__name__)

# Open HTTP connections get this long to finish once the daemon stops.
API_SHUTDOWN_TIMEOUT = 5.0


async def serve_api(
    app: web.Application,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Listen until `stop` is set, then close connections and return; slow clients and
    connections are bounded by the app's settings (`ServerLimits`)."""
    runner = GuardedAppRunner(
        app,
        ServerLimits.of(app[SETTINGS]),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=API_SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        bound = _bound_port(runner, port)
        log.info("API listening on http://%s:%d", host, bound, extra={"action": "api_listen"})
        if on_listening is not None:
            on_listening(bound)
        await stop.wait()
    finally:
        await runner.cleanup()


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    """The port actually bound (differs from the request when it was 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
