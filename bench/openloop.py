"""An open-loop load generator: POST requests at a fixed rate over a fixed number of keep-alive
connections, latency counted from each request's scheduled time (so a slow server cannot hide
its queueing by slowing the load down, as a closed-loop tool like wrk does).

    python bench/openloop.py PORT PATH BODY_JSON API_KEY CONNECTIONS RATE SECONDS

Prints one JSON object: offered and achieved rate, p50/p90/p99/max latency in ms, errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

try:
    import uvloop
except ImportError:  # pragma: no cover - the bench environment has it
    uvloop = None  # type: ignore[assignment]


async def _connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request and read its response; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def main(
    port: int, path: str, body: str, key: str, connections: int, rate: float, seconds: float
) -> dict[str, float]:
    payload = body.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nX-API-Key: {key}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await _connection(port))
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter  # uvloop's loop.time() has millisecond steps

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = await free.get()
        try:
            status = await _request(*conn, request)
            if status >= 300:
                errors += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            conn = await _connection(port)
        finally:
            free.put_nowait(conn)
        latencies.append(clock() - scheduled)

    total = int(rate * seconds)
    began = clock() + 0.2
    async with asyncio.TaskGroup() as tg:
        for i in range(total):
            scheduled = began + i / rate
            delay = scheduled - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tg.create_task(one(scheduled))
    elapsed = clock() - began
    while not free.empty():
        _, writer = free.get_nowait()
        writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {
        "offered_rps": rate,
        "achieved_rps": len(latencies) / elapsed,
        "connections": connections,
        "requests": len(latencies),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": 1000 * latencies[-1],
        "errors": errors,
    }


if __name__ == "__main__":
    port, path, body, key, conns, rate, secs = sys.argv[1:8]
    run = uvloop.run if uvloop is not None else asyncio.run
    result = run(main(int(port), path, body, key, int(conns), float(rate), float(secs)))
    print(json.dumps(result))
