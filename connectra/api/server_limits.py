"""Limits on what slow and abusive clients can hold, for the API and the metrics listener.

Why: aiohttp has no timeout for a request's head; half a header held a socket for an hour.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.typedefs import Handler, Middleware

from connectra.errors import (
    ConnectraError,
    HeaderTooLargeError,
    MalformedRequestError,
    RequestTimeoutError,
)
from connectra.settings import Settings

log = logging.getLogger(__name__)

# The longest request line and header field (aiohttp's default); longer is 431.
MAX_LINE_BYTES = 8190
# Connections the kernel queues until they are accepted: a burst past it is dropped and the
# clients retry a second later.
LISTEN_BACKLOG = 1024
# File descriptors kept for everything but client connections: the database pool, the object
# store's and search's connections, log and data files.
FD_RESERVE = 256
# How long an answered request's unread body is still read (and dropped) before the
# connection closes, so that the client gets to read the answer.
LINGERING_SECONDS = 2.0
# At most one warning per this many seconds while connections are being shed.
SHED_WARNING_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Timeouts (seconds) and the connection cap of one HTTP listener."""

    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ServerLimits:
        """The limits the settings give (API_HEADER_TIMEOUT_SECONDS and the like)."""
        return cls(
            header_timeout=settings.api_header_timeout_seconds,
            body_timeout=settings.api_body_timeout_seconds,
            keepalive_timeout=settings.api_keepalive_timeout_seconds,
            max_connections=settings.api_max_connections,
        )


def connection_cap(wanted: int) -> int:
    """How many connections fit the open-file limit, raised first (within the hard limit) so
    that `wanted` fit with FD_RESERVE to spare; at least half the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(soft - FD_RESERVE, soft // 2))


def error_body(error: ConnectraError) -> bytes:
    """The API's error shape, `{"error": "ERR_CODE: message", "success": false}`, as bytes."""
    return json.dumps({"error": error.render(), "success": False}).encode()


def error_response(error: ConnectraError, status: int | None = None) -> web.Response:
    """The one error shape as an answer (with the error's own status unless `status`)."""
    return web.Response(
        status=status or error.http_status,
        body=error_body(error),
        content_type="application/json",
        charset="utf-8",
    )


def raw_answer(error: ConnectraError) -> bytes:
    """A whole HTTP answer carrying `error`, for a connection no request handler serves."""
    body = error_body(error)
    status = error.http_status
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def protocol_error(exc: BaseException | None, status: int, max_size: int) -> ConnectraError:
    """The product error for what aiohttp's parser refused, in words that quote nothing of
    the request (a header's value may be a key)."""
    if status >= 500:
        return ConnectraError("an unexpected error occurred")
    if isinstance(exc, LineTooLong):
        return HeaderTooLargeError(
            f"the request line and each header field must be at most {max_size} bytes"
        )
    if isinstance(exc, BadStatusLine):
        return MalformedRequestError("the request line is not valid HTTP/1.1")
    if isinstance(exc, InvalidHeader):
        return MalformedRequestError("a header is not valid HTTP/1.1")
    if isinstance(exc, InvalidURLError):
        return MalformedRequestError("the request target is not a valid URL")
    if isinstance(exc, PayloadEncodingError):
        return MalformedRequestError("the request body's framing or encoding is not valid")
    if isinstance(exc, BadHttpMessage) and exc.message == "Too many headers received":
        return HeaderTooLargeError("the request has too many header fields")
    return MalformedRequestError()


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler with a deadline for each request's line and headers.

    The first request's head must arrive within `header_timeout` of the connection opening;
    a later one's within `header_timeout` of its first byte (before that byte, the idle
    keep-alive timeout applies). On time out, a client that sent part of a head is answered
    408 ERR_REQUEST_TIMEOUT; the connection is closed either way.
    """

    __slots__ = ("_head_begun", "_head_timer", "_limits")

    def __init__(self, manager: web.Server, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and not self._head_begun and self.awaiting_head():
            self._head_begun = True
            self._stop_keepalive_timer()  # the head's own deadline applies now
            if self._head_timer is None:
                self._arm_head_timer()
        requests = self._request_count
        super().data_received(data)
        if self._request_count != requests:  # a head (or a parse error) arrived
            self._disarm_head_timer()
            self._head_begun = False

    def awaiting_head(self) -> bool:
        """Whether the connection waits for a request's line and headers (idle, or sent in
        part) rather than handling a request."""
        return not self._messages and (self._waiter is not None or self._request_count == 0)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """What the server itself refuses (malformed HTTP, a header too long), in the error
        shape; logged without any of the request's bytes."""
        error = protocol_error(exc, status, max(self.max_line_size, self.max_field_size))
        if status >= 500:
            log.error("request failed", exc_info=exc, extra={"action": "http_error"})
        else:
            log.info(
                "refused: %s",
                error.render(),
                extra={"action": "http_refused", "reason": type(exc).__name__},
            )
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was sent already; the connection is broken")
        answer = error_response(error)
        answer.force_close()
        return answer

    def _arm_head_timer(self) -> None:
        """Start the deadline of the next request's head."""
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_late)

    def _disarm_head_timer(self) -> None:
        """The head arrived, or the connection is gone."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _stop_keepalive_timer(self) -> None:
        """aiohttp's idle timer would close a connection whose head is on its way; it is set
        again after the answer."""
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None

    def _head_late(self) -> None:
        """The head's deadline passed: answer 408 if part of it came, and close."""
        self._head_timer = None
        if self.transport is None or not self.awaiting_head():
            return
        if self._head_begun:
            seconds = self._limits.header_timeout
            self.transport.write(
                raw_answer(
                    RequestTimeoutError(
                        f"the request line and headers did not arrive within {seconds:g} seconds"
                    )
                )
            )
        self.force_close()


class GuardedServer(web.Server):
    """aiohttp's server (the protocol factory) making `GuardedRequestHandler`s, at most
    `max_connections` at once: past the cap the oldest connection waiting for a request (idle
    or half-sent) is closed, or the new one when every connection is handling a request."""

    def __init__(self, plain: web.Server, limits: ServerLimits, cap: int) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **plain._kwargs,
        )
        self._limits = limits
        self.cap = cap
        self._open: dict[web.RequestHandler, None] = {}  # oldest first
        self._warned_at = -SHED_WARNING_INTERVAL

    def __call__(self) -> web.RequestHandler:
        return GuardedRequestHandler(self, self._limits, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._open[handler] = None
        if len(self._open) > self.cap:
            self._shed(handler)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self._open.pop(handler, None)

    def _shed(self, newcomer: web.RequestHandler) -> None:
        """Close the oldest connection waiting for a request, else the newcomer."""
        victim = next((h for h in self._open if h is not newcomer and _waits(h)), newcomer)
        del self._open[victim]
        if victim is newcomer:
            # Not from within `connection_made`: its request loop must start before it ends.
            self._loop.call_soon(victim.force_close)
        else:
            victim.force_close()
        self._warn_shedding(victim is newcomer)

    def _warn_shedding(self, refused: bool) -> None:
        """Say so, at most once a minute."""
        now = time.monotonic()
        if now - self._warned_at < SHED_WARNING_INTERVAL:
            return
        self._warned_at = now
        what = "refusing new connections" if refused else "closing the oldest idle connections"
        log.warning(
            "%d connections are open (API_MAX_CONNECTIONS): %s",
            self.cap,
            what,
            extra={"action": "http_connections_shed", "max_connections": self.cap},
        )


def _waits(handler: web.RequestHandler) -> bool:
    """Whether a connection waits for a request (so closing it interrupts no request)."""
    return isinstance(handler, GuardedRequestHandler) and handler.awaiting_head()


class GuardedAppRunner(web.AppRunner):
    """An `AppRunner` serving through `GuardedServer`, with the idle keep-alive timeout."""

    __slots__ = ("_limits",)

    def __init__(self, app: web.Application, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(
            app,
            keepalive_timeout=limits.keepalive_timeout,
            lingering_time=LINGERING_SECONDS,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            **kwargs,
        )
        self._limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        cap = connection_cap(self._limits.max_connections)
        if cap < self._limits.max_connections:
            log.warning(
                "API_MAX_CONNECTIONS lowered to %d to fit the open-file limit",
                cap,
                extra={"action": "http_connection_cap", "max_connections": cap},
            )
        return GuardedServer(plain, self._limits, cap)


def body_deadline(seconds: float) -> Middleware:
    """A middleware answering 408 ERR_REQUEST_TIMEOUT when a request's body has not wholly
    arrived `seconds` after its head (what the handler does meanwhile is not limited)."""

    @web.middleware
    async def body_deadline_middleware(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if request.content.is_eof():  # no body, or all of it here already
            return await handler(request)
        scope = asyncio.timeout(None)
        watch = asyncio.get_running_loop().call_later(seconds, _expire, request, scope)
        try:
            async with scope:
                return await handler(request)
        except TimeoutError:
            if not scope.expired():
                raise
            raise RequestTimeoutError(
                f"the request body did not arrive within {seconds:g} seconds"
            ) from None
        finally:
            watch.cancel()

    return body_deadline_middleware


def _expire(request: web.Request, scope: asyncio.Timeout) -> None:
    """Stop the handler if the body is still on its way."""
    if not request.content.is_eof():
        scope.reschedule(asyncio.get_running_loop().time())
