"""Instant pickup: LISTEN on channel `connectra_jobs` and wake the runners; the other half of
`connectra.db.announcer`, which NOTIFYs. A notification is only a hint: runners still poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from connectra.db.announcer import CHANNEL
from connectra.db.driver_errors import DATABASE_DOWN

log = logging.getLogger(__name__)

# How often the idle listener checks that its connection still answers.
LIVENESS_INTERVAL = 15.0
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 30.0


class Listener:
    """Keeps one listening connection and calls `on_notify(payload)` for each notification."""

    def __init__(
        self, dsn: str, on_notify: Callable[[str], None], on_connect: Callable[[], None]
    ) -> None:
        self.dsn = dsn
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.listening = False
        self._conn: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        """Whether the listening connection is up now (asyncpg notices a closed one at once;
        the loop below only at its next liveness check)."""
        return self.listening and self._conn is not None and not self._conn.is_closed()

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until stopped, reconnecting with backoff whenever the connection is lost."""
        delay = RECONNECT_FIRST
        while not stop.is_set():
            try:
                await self._listen(stop)
                delay = RECONNECT_FIRST
            except DATABASE_DOWN as exc:
                log.warning(
                    "listener lost: %s; polling only until it reconnects",
                    exc,
                    extra={"action": "listen_lost"},
                )
            self.listening = False
            if not stop.is_set():
                await _sleep_unless(stop, delay)
                delay = min(delay * 2, RECONNECT_MAX)

    async def _listen(self, stop: asyncio.Event) -> None:
        """One connection's life: listen, wake the runners once, then watch the connection."""
        conn = self._conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.add_listener(CHANNEL, self._deliver)
            self.listening = True
            log.info("listening for new jobs", extra={"action": "listen"})
            self.on_connect()
            while not stop.is_set():
                await _sleep_unless(stop, LIVENESS_INTERVAL)
                await conn.execute("SELECT 1", timeout=10)
        finally:
            self._conn = None
            await conn.close(timeout=5)

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        """asyncpg's listener callback."""
        self.on_notify(payload)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake as soon as `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
