"""A real `connectra api` process against slow and abusive clients: thousands of half-sent
requests neither starve a legitimate one nor outlive the header timeout, and what the HTTP
server refuses itself (a header too long, garbage) is answered in the error shape and logged
without the request's bytes."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.processes import Process, Spawn, free_port, spawn

__all__ = ["spawn"]  # the fixture, requested by name

HALF_OPEN = 2000
HEADER_TIMEOUT = 3.0
KEY = "k1"
HALF_A_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def open_files_limit(pid: int) -> int:
    """A process's soft limit on open files, from /proc."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line")


@pytest.fixture
def room_for_half_open() -> None:
    """This test process's soft limit on open files raised to fit the connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HALF_OPEN + 512
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the hard limit on open files ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.fixture
async def api(spawn: Spawn) -> AsyncIterator[tuple[Process, int]]:
    """An API process with a short header timeout, once it listens."""
    port = free_port()
    process = await spawn(
        "api", API_PORT=str(port), API_KEYS=KEY, API_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT)
    )
    await process.until_logged("api_listen")
    yield process, port
    if process.proc.returncode is None:
        assert await process.stop() == 0


async def half_open(port: int) -> tuple[Connection, float]:
    """A connection that sent part of a request's headers and will never send the rest, and
    when it began to open (the server's clock for it starts later)."""
    began = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HALF_A_REQUEST)
    return (reader, writer), began


async def closing(connection: Connection) -> tuple[bytes, float]:
    """What the server answers before it closes the connection, and when it closed it."""
    reader, writer = connection
    answer = await reader.read()
    writer.close()
    return answer, time.monotonic()


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, object], bytes]:
    """Send bytes, read until the server closes: the status, the JSON body, the raw answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), raw


async def test_two_thousand_half_open_connections_neither_starve_a_request_nor_stay_open(
    api: tuple[Process, int], room_for_half_open: None
) -> None:
    process, port = api
    assert open_files_limit(process.proc.pid) >= HALF_OPEN + 256
    began = time.monotonic()
    opened: list[tuple[Connection, float]] = []
    for _ in range(HALF_OPEN // 200):
        opened += await asyncio.gather(*(half_open(port) for _ in range(200)))
    opening = time.monotonic() - began

    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        asked = time.monotonic()
        async with http.get("/healthz") as answer:
            assert (answer.status, await answer.json()) == (200, {"status": "ok"})
        async with http.post("/common/jobs", json={}, headers={"X-API-Key": KEY}) as answer:
            assert answer.status == 200
        answered = time.monotonic() - asked
    assert answered < 1.0, f"answered in {answered:.3f}s"

    # Each is answered 408 and closed once the header timeout has passed since it opened.
    closings = asyncio.gather(*(closing(connection) for connection, _ in opened))
    closed = await asyncio.wait_for(closings, HEADER_TIMEOUT + 10)
    lifetimes = [at - opened_at for (_, at), (_, opened_at) in zip(closed, opened, strict=True)]
    assert min(lifetimes) > HEADER_TIMEOUT - 0.05, min(lifetimes)
    assert max(lifetimes) < HEADER_TIMEOUT + 2, max(lifetimes)
    answers = {answer for answer, _ in closed}
    assert {answer.split(b"\r\n", 1)[0] for answer in answers} == {b"HTTP/1.1 408 Request Timeout"}
    assert all(b'"error": "ERR_REQUEST_TIMEOUT: ' in answer for answer in answers)
    print(
        f"\n{HALF_OPEN} half-open connections opened in {opening:.2f}s; two requests answered "
        f"in {answered * 1000:.1f}ms; each closed {min(lifetimes):.2f}-{max(lifetimes):.2f}s "
        "after it opened"
    )


async def test_an_oversized_header_is_a_json_431_and_no_header_value_is_logged(
    api: tuple[Process, int],
) -> None:
    process, port = api
    secret = b"padded-secret-" * 700  # 9,800 bytes, over the 8,190 a header field may have
    status, body, raw = await raw_exchange(
        port, b"GET /common/jobs/x HTTP/1.1\r\nHost: x\r\nX-API-Key: " + secret + b"\r\n\r\n"
    )
    assert status == 431
    assert body == {
        "error": "ERR_HEADER_TOO_LARGE: the request line and each header field must be at "
        "most 8190 bytes",
        "success": False,
    }
    assert b"Content-Type: application/json" in raw
    long_path = b"/common/" + b"padded-secret-" * 700
    status, body, _ = await raw_exchange(port, b"GET " + long_path + b" HTTP/1.1\r\n\r\n")
    assert (status, str(body["error"]).split(":")[0]) == (431, "ERR_HEADER_TOO_LARGE")
    status, body, _ = await raw_exchange(port, b"\x16\x03\x01\x02\x00padded-secret-\r\n\r\n")
    assert (status, body["error"]) == (
        400,
        "ERR_MALFORMED_REQUEST: the request line is not valid HTTP/1.1",
    )
    bad_header = b"GET /healthz HTTP/1.1\r\nX-API-Key: padded-secret-\x00\r\n\r\n"
    status, body, _ = await raw_exchange(port, bad_header)
    assert (status, str(body["error"]).split(":")[0]) == (400, "ERR_MALFORMED_REQUEST")

    process.send(signal.SIGTERM)
    assert await process.wait(30) == 0
    log = process.log_path.read_text()
    assert "padded-secret" not in log
    refusals = [e for e in process.events() if e.get("action") == "http_refused"]
    assert [e["level"] for e in refusals] == ["info"] * 4
    assert {e["reason"] for e in refusals} >= {"LineTooLong", "BadHttpMethod"}
