"""Real `connectra` processes for tests: the `spawn` fixture and what it returns, the `run`
fixture for commands run to their end, and `free_port`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.polling import eventually


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A `connectra` subprocess whose output (stdout) and JSON logs (stderr) go to files."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path, out_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.out_path = out_path

    def output(self) -> str:
        return self.out_path.read_text()

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    async def wait(self, seconds: float) -> int:
        return await asyncio.wait_for(self.proc.wait(), seconds)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]

    def plain_lines(self) -> list[str]:
        """What the process wrote on stderr besides its JSON log lines (no empty ones)."""
        return [line for line in self.log_lines() if line and not line.startswith("{")]

    async def until_logged(self, action: str, within: float = 30) -> None:
        """Until the process has logged `action`; it must not have stopped."""

        async def logged() -> bool:
            assert self.proc.returncode is None, self.log_path.read_text()[-3000:]
            return any(event.get("action") == action for event in self.events())

        await eventually(logged, within=within)

    async def stop(self, seconds: float = 30) -> int:
        """SIGTERM, then wait for the exit; its code."""
        self.send(signal.SIGTERM)
        return await self.wait(seconds)


Spawn = Callable[..., Awaitable[Process]]


@pytest.fixture
async def spawn(database_url: str, tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start `python -m connectra ARGS` with the test database and settings as env."""
    started: list[Process] = []

    async def start(*args: str, **env: str) -> Process:
        log_path = tmp_path / f"proc-{len(started)}.log"
        out_path = tmp_path / f"proc-{len(started)}.out"
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TICKER_INTERVAL_SECONDS": "0.2",
            "LOG_LEVEL": "INFO",
            # No runner listener unless a test asks: processes of one test (or of two test
            # runs on one machine) would race for the default port.
            "METRICS_PORT": "0",
            **env,
        }
        with log_path.open("wb") as log_file, out_path.open("wb") as out_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "connectra", *args,
                env=full_env, cwd=tmp_path, stdout=out_file, stderr=log_file,
            )  # fmt: skip
        started.append(Process(proc, log_path, out_path))
        return started[-1]

    yield start
    for process in started:
        if process.proc.returncode is None:
            process.proc.kill()
            await process.proc.wait()


class Result(NamedTuple):
    """How a command ended: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str


Run = Callable[..., Awaitable[Result]]


@pytest.fixture
def run(database_url: str) -> Run:
    """Run `python -m connectra ARGS` on the test database to its end (several may run at
    once)."""

    async def command(*args: str) -> Result:
        env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "ERROR"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "connectra", *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    return command
