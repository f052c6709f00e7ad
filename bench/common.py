"""Shared helpers: a throw-away database, child processes, timing and result records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
WORK = Path(os.environ.get("BENCH_WORK_DIR", "/tmp/connectra-bench"))
LOGS = WORK / "logs"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BackendCpu:
    """CPU seconds the PostgreSQL backends of one database use while the block runs.

    Samples `pg_stat_activity` and /proc every 0.1 s (the server runs on this machine): a
    backend's CPU before its first sample or after its last one is missed, a few ms each.
    `exclude` names backends that are not the contender's (the benchmark's own connection,
    which inserts the jobs and polls for their completion).
    """

    def __init__(self, dsn: str, exclude: frozenset[int] = frozenset()) -> None:
        self.dsn = dsn
        self.exclude = exclude
        self.seconds = 0.0
        self._seen: dict[int, list[float]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BackendCpu:
        conn = await asyncpg.connect(self.dsn)
        self._task = asyncio.create_task(self._sample(conn))
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task
        self.seconds = sum(last - first for first, last in self._seen.values())

    async def _sample(self, conn: asyncpg.Connection) -> None:
        skip = self.exclude | {conn.get_server_pid()}
        try:
            while True:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                )
                for row in rows:
                    used = cpu_seconds(row["pid"]) if row["pid"] not in skip else None
                    if used is not None:
                        self._seen.setdefault(row["pid"], [used, used])[1] = used
                if self._stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.1)
        finally:
            await conn.close()


@dataclass
class Figure:
    """One measured figure, its same-run baseline and the target it is judged by."""

    metric: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value  # type: ignore[operator]

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": round(self.value, 3),
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": None
            if self.baseline_value is None
            else round(self.baseline_value, 3),
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "target": self.target,
            "met": self.met,
        }


@dataclass
class Result:
    """What one benchmark returns."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figures": [f.as_dict() for f in self.figures],
            "details": self.details,
        }


def write_report(prefix: str, report: dict[str, Any], began: float) -> Path:
    """Write a benchmark's report as `results/<prefix>-<UTC start time>.json`."""
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(began))}.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dsn_for(dbname: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{dbname}"


@contextlib.asynccontextmanager
async def bench_database(
    tag: str, migrate: bool = True, checkout: Path | str | None = None
) -> AsyncIterator[str]:
    """A fresh database (migrated with `connectra migrate`), dropped afterwards.

    `checkout`: the product tree whose `connectra migrate` (and so whose `migrations/`) to
    run; this repository by default."""
    name = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(WORK.mkdir, parents=True, exist_ok=True)  # children run there
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = dsn_for(name)
    try:
        if migrate:
            await asyncio.to_thread(
                subprocess.run,
                [PYTHON, "-m", "connectra", "migrate"],
                env=product_env(dsn, checkout=checkout),
                cwd=WORK,
                check=True,
                capture_output=True,
            )
        yield dsn
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def product_env(dsn: str, *, checkout: Path | str | None = None, **extra: Any) -> dict[str, str]:
    """Environment for a product process: only what we set, plus PATH and friends.

    `checkout`: the product tree the process imports `connectra` from (`PYTHONPATH`, which
    comes before the venv's editable install of this repository); this repository by default.
    """
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        DATABASE_URL=dsn,
        LOG_LEVEL="INFO",
        PYTHONPATH=str(checkout or REPO),
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        METRICS_PORT="0",  # several runners on one machine: no metrics listener unless asked
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def status_mb(pid: int, field: str) -> float | None:
    """A field of /proc/PID/status in MB (VmRSS, VmHWM), while the process lives."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class Child:
    """A child process in its own session, with its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def peak_rss_mb(self) -> float | None:
        """VmHWM (peak resident set) of the process, while it is alive."""
        return status_mb(self.proc.pid, "VmHWM")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process so far, while it is alive."""
        return cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def start(name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{name}.log"
    out = log_path.open("wb")
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=WORK,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    return Child(name, proc, log_path)


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Every child appended to the list is stopped on the way out, whatever happens."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


async def wait_for(predicate: Any, limit: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_log(child: Child, text: str, limit: float = 30) -> None:
    def seen() -> bool:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited early:\n{child.log_text()[-3000:]}")
        return text in child.log_text()

    await wait_for(seen, limit, f"{text!r} in {child.name}'s log")


def started_at(log_text: str) -> dict[str, float]:
    """When each job started: its `job_start` log line, written once the start is committed
    and just before the handler runs (millisecond timestamps)."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        if '"job_start"' in line:
            event = json.loads(line)
            found[event["job_uuid"]] = datetime.fromisoformat(event["ts"]).timestamp()
    return found


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_psql(dsn: str, *commands: str) -> float:
    """Run commands in one psql session; the wall time in seconds."""
    args = ["psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        args += ["-c", command]
    began = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - began
