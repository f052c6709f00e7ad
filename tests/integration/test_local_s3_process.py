"""`connectra run`'s local S3 in real processes: the server is a child of the daemon that holds
what is uploaded (the daemon's memory does not grow with it), is stopped with the daemon however
that stops (SIGTERM, Ctrl-C, a port already taken) and exits by itself when the daemon is
killed; if it dies first, the daemon stops and says why."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from connectra.cli import LOCAL_API_KEY
from tests.polling import eventually
from tests.processes import Process, Spawn, free_port, spawn
from tests.services import moto_object_store

__all__ = ["spawn"]

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")

UPLOAD_MB = 50
NO_KEYS = {"API_KEYS": ""}  # empty counts as unset: `connectra run` takes the local key


def peak_rss_mb(pid: int) -> float:
    """VmHWM, the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then the parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits for init to reap it, sometimes for a while)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


async def started(spawn: Spawn) -> tuple[Process, int, int]:
    """`connectra run` with the local S3 on a free port, once its API listens: the daemon,
    its API port and the S3 server's pid."""
    api_port = free_port()
    daemon = await spawn("run", API_PORT=str(api_port), LOCAL_S3_PORT="0", **NO_KEYS)
    await daemon.until_logged("api_listen", within=60)
    return daemon, api_port, int(str(s3_event(daemon, "local_s3")["pid"]))


def s3_event(process: Process, action: str) -> dict[str, object]:
    """The one log line of the daemon with this `action`."""
    (event,) = [event for event in process.events() if event.get("action") == action]
    return event


async def test_the_s3_server_is_a_child_that_holds_what_is_uploaded(spawn: Spawn) -> None:
    daemon, api_port, child = await started(spawn)
    parent, group = stat_fields(child)[1:3]  # type: ignore[index]
    assert (parent, group) == (str(daemon.proc.pid), str(child))  # a session of its own
    body = b"uuid,email\n" + b"0f6c1a52-0000-4000-8000-000000000000,ada@example.com\n" * (
        UPLOAD_MB * 1024 * 1024 // 53
    )
    async with aiohttp.ClientSession() as http:
        response = await http.get(
            f"http://127.0.0.1:{api_port}/common/upload-url?filename=big.csv",
            headers={"X-API-Key": LOCAL_API_KEY},
        )
        target = await response.json()
        daemon_before, child_before = peak_rss_mb(daemon.proc.pid), peak_rss_mb(child)
        put = await http.put(target["upload_url"], data=body, headers={"Content-Type": "text/csv"})
        assert put.status == 200, await put.text()
    daemon_growth = peak_rss_mb(daemon.proc.pid) - daemon_before
    child_growth = peak_rss_mb(child) - child_before
    assert daemon_growth < 20, f"daemon +{daemon_growth:.1f} MB, S3 server +{child_growth:.1f} MB"
    assert child_growth > UPLOAD_MB * 0.8, f"S3 server +{child_growth:.1f} MB"
    endpoint = str(s3_event(daemon, "local_s3")["endpoint_url"])
    async with moto_object_store(endpoint) as store:
        assert await store.head(target["s3_bucket"], target["s3_key"]) == len(body)


async def test_sigterm_stops_the_daemon_and_its_s3_server(spawn: Spawn) -> None:
    daemon, _, child = await started(spawn)
    daemon.send(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    assert not running(child)
    assert s3_event(daemon, "local_s3_stop")["exit_code"] == 0


async def test_ctrl_c_stops_the_daemon_which_then_stops_its_s3_server(spawn: Spawn) -> None:
    daemon, _, child = await started(spawn)
    for pid in (child, daemon.proc.pid):  # the server ignores it: the daemon may need it still
        os.kill(pid, signal.SIGINT)
    assert await daemon.wait(30) == 0
    assert not running(child)
    assert s3_event(daemon, "local_s3_stop")["exit_code"] == 0


async def test_a_killed_daemon_leaves_no_s3_server_behind(spawn: Spawn) -> None:
    daemon, _, child = await started(spawn)
    daemon.send(signal.SIGKILL)
    assert await daemon.wait(10) == -signal.SIGKILL

    async def gone() -> bool:
        return not running(child)

    await eventually(gone, within=5, message="the S3 server outlived its daemon")


async def test_an_s3_server_that_dies_stops_the_daemon_with_err_local_s3(spawn: Spawn) -> None:
    daemon, _, child = await started(spawn)
    os.kill(child, signal.SIGKILL)
    assert await daemon.wait(30) == 1
    plain = daemon.plain_lines()
    assert plain == [
        f"ERR_LOCAL_S3: the local S3 server (pid {child}) exited with code -9 while connectra "
        "run was running; the objects it held are lost"
    ]
    assert s3_event(daemon, "local_s3_exit")["level"] == "error"


async def test_a_port_in_use_is_one_line_and_exit_code_1_with_nothing_left(
    spawn: Spawn,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        daemon = await spawn("run", API_PORT=str(free_port()), LOCAL_S3_PORT=str(port), **NO_KEYS)
        assert await daemon.wait(60) == 1
    plain = daemon.plain_lines()
    assert plain == [
        f"ERR_LOCAL_S3: the local S3 server cannot listen on 127.0.0.1:{port} (Address already "
        "in use); set LOCAL_S3_PORT to a free port, or S3_ENDPOINT_URL to an S3 of your own"
    ]
    child = int(str(s3_event(daemon, "local_s3_stop")["pid"]))
    assert not running(child)
    assert not any(event.get("action") == "api_listen" for event in daemon.events())


async def test_a_daemon_that_fails_to_start_stops_its_s3_server(spawn: Spawn) -> None:
    # Off loopback without any API key the daemon refuses to start, after the server is up.
    daemon = await spawn(
        "run", API_HOST="0.0.0.0", API_PORT=str(free_port()), LOCAL_S3_PORT="0", **NO_KEYS
    )
    assert await daemon.wait(60) == 2
    child = int(str(s3_event(daemon, "local_s3")["pid"]))
    assert not running(child)
    assert s3_event(daemon, "local_s3_stop")["exit_code"] == 0
