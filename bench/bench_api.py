"""API create: requests/s and latency percentiles of POST /common/jobs/create under wrk at 50
and 200 connections, vs a bare aiohttp handler (bare_api.py) on the same machine; then, for
both, the latency of an open-loop load at half the create rate wrk measured (openloop.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from common import (
    BENCH_DIR,
    PYTHON,
    WORK,
    Figure,
    Result,
    bench_database,
    children,
    free_port,
    log,
    product_env,
    start,
    wait_log,
)

KEY = "bench-key"
BODY = '{"job_type": "noop", "job_data": {}, "retry_count": 0}'
# The open-loop point: this share of the create rate measured at 200 connections.
OPEN_LOOP_SHARE = 0.5
LUA = """\
wrk.method = "POST"
wrk.body = 'BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "KEY"
""".replace("KEY", KEY).replace("BODY", BODY)
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def wrk(port: int, connections: int, seconds: int) -> dict[str, float]:
    script = WORK / "create.lua"
    script.write_text(LUA)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/common/jobs/create",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        figures[f"p{pct}_ms"] = _ms(match.group(1)) if match else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = int(bad.group(1)) if bad else 0
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        figures["socket_errors"] = errors.group(1)  # type: ignore[assignment]
    return figures


def open_loop(port: int, connections: int, rate: float, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            PYTHON,
            str(BENCH_DIR / "openloop.py"),
            str(port),
            "/common/jobs/create",
            BODY,
            KEY,
            str(connections),
            str(rate),
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    ).stdout
    return dict(json.loads(out))


async def run(quick: bool) -> Result:
    seconds = 5 if quick else 15
    result = Result("api_create", details={"seconds_per_point": seconds})
    d = result.details
    async with bench_database("api") as dsn:
        for name in ("bare", "connectra"):
            async with _server(name, dsn) as (port, pid):
                for conns in (50, 200):
                    log(f"api: {name}, {conns} connections, {seconds}s")
                    cpu = _cpu_seconds(pid)
                    point = await asyncio.to_thread(wrk, port, conns, seconds)
                    used = _cpu_seconds(pid) - cpu
                    point["server_cpu_ms_per_req"] = 1000 * used / (point["rps"] * seconds)
                    point["server_cpu_util"] = used / seconds
                    d[f"{name}_c{conns}"] = point
        rate = max(100.0, round(OPEN_LOOP_SHARE * d["connectra_c200"]["rps"], -2))
        d["open_loop_rate"] = rate
        for name in ("bare", "connectra"):
            async with _server(name, dsn) as (port, _):
                log(f"api: {name}, open loop, 200 connections, {rate:.0f} req/s, {seconds}s")
                d[f"{name}_open"] = await asyncio.to_thread(open_loop, port, 200, rate, seconds)
    for conns in (50, 200):
        ours, bare = d[f"connectra_c{conns}"], d[f"bare_c{conns}"]
        result.figures += [
            Figure(
                f"create req/s @{conns} conns",
                ours["rps"],
                "req/s",
                "bare aiohttp req/s",
                bare["rps"],
            ),
            Figure(
                f"create p99 @{conns} conns",
                ours["p99_ms"],
                "ms",
                "bare aiohttp p99",
                bare["p99_ms"],
                "< 10 ms" if conns == 200 else "",
                ours["p99_ms"] < 10 if conns == 200 else None,
            ),
        ]
    ours, bare = d["connectra_open"], d["bare_open"]
    result.figures.append(
        Figure(
            f"create p99 @200 conns, open loop {rate:.0f} req/s",
            ours["p99_ms"],
            "ms",
            "bare aiohttp p99, same load",
            bare["p99_ms"],
        )
    )
    return result


@contextlib.asynccontextmanager
async def _server(name: str, dsn: str) -> AsyncIterator[tuple[int, int]]:
    """The bare handler or `connectra api` on a free port, for the duration of the block;
    yields the port and the server's pid."""
    port = free_port()
    if name == "bare":
        args, env, ready = [PYTHON, str(BENCH_DIR / "bare_api.py"), str(port)], None, "bare"
    else:
        args = [PYTHON, "-m", "connectra", "api"]
        env = product_env(dsn, API_KEYS=KEY, API_PORT=port, LOG_LEVEL="WARNING")
        ready = None
    with children() as procs:
        server = start(f"api_{name}", args, env)
        procs.append(server)
        if ready:
            await wait_log(server, ready)
        await _wait_port(port)
        yield port, server.proc.pid


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_port(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")
