"""The API's and the metrics listener's limits on slow clients, served as the daemon serves
them (`serve_api`, `serve_monitoring`): body and header deadlines, the idle keep-alive
timeout, and the cap on open connections."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from connectra.api.app import create_app
from connectra.api.server import serve_api
from connectra.api.server_limits import ServerLimits
from connectra.db.store import JobStore
from connectra.monitoring.health import ProcessHealth
from connectra.monitoring.web import Monitor, serve_monitoring
from connectra.processors.registry import default_registry
from connectra.settings import load_settings
from tests.polling import eventually
from tests.processes import free_port

KEY = "k1"
GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@asynccontextmanager
async def serving(store: JobStore, **settings: object) -> AsyncIterator[int]:
    """The API served by `serve_api` with these settings; its port."""
    app = create_app(store, default_registry(), load_settings(API_KEYS=KEY, **settings))
    stop = asyncio.Event()
    ports: list[int] = []
    task = asyncio.create_task(serve_api(app, "127.0.0.1", 0, stop, ports.append))

    async def listening() -> bool:
        assert not task.done()
        return bool(ports)

    await eventually(listening, within=10)
    try:
        yield ports[0]
    finally:
        stop.set()
        await task


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, bytes, dict[str, object]]:
    """One HTTP answer (status, head, JSON body) read off a connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    return int(head.split()[1]), head, json.loads(body)


async def test_a_body_still_arriving_after_the_body_timeout_is_a_408(store: JobStore) -> None:
    async with serving(store, API_BODY_TIMEOUT_SECONDS="0.5") as port:
        reader, writer = await connect(port)
        began = time.monotonic()
        writer.write(
            b"POST /common/jobs/create HTTP/1.1\r\nHost: x\r\nX-API-Key: k1\r\n"
            b"X-Request-ID: slow-body\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"job_type": "noop",'
        )
        status, head, body = await answer_of(reader)
        took = time.monotonic() - began
        assert (status, body) == (
            408,
            {
                "error": "ERR_REQUEST_TIMEOUT: the request body did not arrive within 0.5 seconds",
                "success": False,
            },
        )
        assert b"X-Request-ID: slow-body" in head
        assert 0.5 <= took < 1.5
        # The rest never comes: the connection is closed after a short linger.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert await store.pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_body_sent_slowly_within_the_body_timeout_is_taken(
    store: JobStore, pool: asyncpg.Pool
) -> None:
    body = b'{"job_type": "noop", "job_data": {}}'
    async with serving(store, API_BODY_TIMEOUT_SECONDS="2") as port:
        reader, writer = await connect(port)
        writer.write(
            b"POST /common/jobs/create HTTP/1.1\r\nHost: x\r\nX-API-Key: k1\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await asyncio.sleep(0.5)
        writer.write(body[10:])
        status, _, _ = await answer_of(reader)
        assert status == 201
        writer.close()
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1


async def test_a_later_requests_head_has_the_header_timeout_from_its_first_byte(
    store: JobStore,
) -> None:
    async with serving(
        store, API_HEADER_TIMEOUT_SECONDS="0.5", API_KEEPALIVE_TIMEOUT_SECONDS="5"
    ) as port:
        reader, writer = await connect(port)
        writer.write(GET)
        assert (await answer_of(reader))[0] == 200
        await asyncio.sleep(0.7)  # idle past the header timeout: keep-alive applies
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        began = time.monotonic()
        status, _, body = await answer_of(reader)
        assert (status, str(body["error"]).split(":")[0]) == (408, "ERR_REQUEST_TIMEOUT")
        assert 0.4 <= time.monotonic() - began < 1.5
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_a_head_sent_slowly_outlives_the_keepalive_timeout_within_the_header_timeout(
    store: JobStore,
) -> None:
    async with serving(
        store, API_HEADER_TIMEOUT_SECONDS="3", API_KEEPALIVE_TIMEOUT_SECONDS="0.3"
    ) as port:
        reader, writer = await connect(port)
        for piece in (GET[:10], GET[10:20], GET[20:]):
            writer.write(piece)
            await asyncio.sleep(0.25)  # 0.75s in all, more than the keep-alive timeout
        assert (await answer_of(reader))[0] == 200
        writer.close()


async def test_an_idle_keepalive_connection_is_closed_without_an_answer(store: JobStore) -> None:
    async with serving(
        store, API_HEADER_TIMEOUT_SECONDS="5", API_KEEPALIVE_TIMEOUT_SECONDS="0.5"
    ) as port:
        reader, writer = await connect(port)
        writer.write(GET)
        assert (await answer_of(reader))[0] == 200
        began = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.4 <= time.monotonic() - began < 2
        writer.close()


async def test_past_the_cap_the_oldest_waiting_connection_is_closed_for_a_new_one(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "connectra.api.server_limits")
    async with serving(store, API_MAX_CONNECTIONS="5") as port:
        idle = [await connect(port) for _ in range(5)]
        await asyncio.sleep(0.1)  # the point: at the cap, nothing is closed yet
        assert not any(reader.at_eof() for reader, _ in idle)
        newcomers = [await connect(port) for _ in range(2)]
        for reader, writer in newcomers:
            writer.write(GET)
            assert (await answer_of(reader))[0] == 200

        async def two_closed() -> bool:
            return sum(reader.at_eof() for reader, _ in idle) >= 2

        await eventually(two_closed, within=5)
        assert [reader.at_eof() for reader, _ in idle] == [True, True, False, False, False]
        for _, writer in idle + newcomers:
            writer.close()
    shed = [r for r in caplog.records if getattr(r, "action", "") == "http_connections_shed"]
    assert len(shed) == 1, "one warning a minute"
    assert "closing the oldest idle connections" in shed[0].getMessage()


async def test_past_the_cap_with_every_connection_busy_a_new_one_is_refused(
    store: JobStore,
) -> None:
    async with serving(store, API_MAX_CONNECTIONS="3") as port:
        busy = [await connect(port) for _ in range(3)]
        for _, writer in busy:  # each handler waits for the rest of its body
            writer.write(
                b"POST /common/jobs HTTP/1.1\r\nHost: x\r\nX-API-Key: k1\r\n"
                b"Content-Length: 10\r\n\r\n{"
            )
        # Nothing tells the client when the server has read the three heads: give it the time.
        await asyncio.sleep(0.2)
        reader, writer = await connect(port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        for reader, writer in busy:  # the busy ones go on
            writer.write(b"        }")
            status, _, body = await answer_of(reader)
            assert (status, body["success"]) == (200, True)
            writer.close()


async def test_the_metrics_listener_has_the_same_limits(pool: asyncpg.Pool) -> None:
    port = free_port()
    stop = asyncio.Event()
    monitor = Monitor(ProcessHealth(pool, []))
    limits = ServerLimits(
        header_timeout=0.5, body_timeout=1, keepalive_timeout=5, max_connections=10
    )
    task = asyncio.create_task(serve_monitoring(monitor, "127.0.0.1", port, stop, limits))

    async def listening() -> bool:
        try:
            _, writer = await connect(port)
        except OSError:
            return False
        writer.close()
        return True

    await eventually(listening, within=10)
    try:
        reader, writer = await connect(port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost")
        status, _, body = await answer_of(reader)
        assert (status, str(body["error"]).split(":")[0]) == (408, "ERR_REQUEST_TIMEOUT")
        reader, writer = await connect(port)
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n")
        status, _, body = await answer_of(reader)
        assert (status, str(body["error"]).split(":")[0]) == (431, "ERR_HEADER_TOO_LARGE")
    finally:
        stop.set()
        await task
