"""Queue throughput: no-op jobs/s through the product (1 and 3 runner processes), pgqueuer,
procrastinate and a raw SQL claim+complete ceiling (pgbench), same database, same job count."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from common import (
    BENCH_DIR,
    PYTHON,
    BackendCpu,
    Child,
    Figure,
    Result,
    bench_database,
    children,
    log,
    product_env,
    start,
    wait_for,
    wait_log,
)

CONCURRENCY = 10  # PARALLEL_JOBS of each runner process; procrastinate -c; pgqueuer batch
REPEAT = 3  # rounds per figure (medians reported) in a full run
PEERS = str(BENCH_DIR / "peer_workers.py")

CLAIM_COMPLETE = """\
WITH c AS (SELECT id FROM jobs WHERE status = 'open' ORDER BY id LIMIT {batch}
           FOR UPDATE SKIP LOCKED)
UPDATE jobs SET status = 'processing', runner_id = 'pgbench:' || :client_id,
       attempts = attempts + 1, started_at = now(), updated_at = now()
  FROM c WHERE jobs.id = c.id;
UPDATE jobs SET status = 'completed', runner_id = NULL, completed_at = now(), updated_at = now()
 WHERE runner_id = 'pgbench:' || :client_id AND status = 'processing';
"""


# Tables a contender leaves behind, emptied and vacuumed before each of its runs, so that no
# round inherits an earlier one's rows: pgqueuer keeps a log row per job and leaves its queue
# table's deleted rows to vacuum. Without this its rounds slowed as they went (five 10k-job
# runs in a row: 5,653 down to 3,715 jobs/s, PostgreSQL CPU per job 103 up to 189 us).
RESET_TABLES = {
    "connectra": ("jobs",),
    "pgqueuer": ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics"),
}


async def _reset(dsn: str, contender: str = "connectra") -> None:
    tables = ", ".join(RESET_TABLES[contender])
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {tables} CASCADE")
        await conn.execute(f"VACUUM ANALYZE {tables}")
    finally:
        await conn.close()


def runner_env(dsn: str, **extra: Any) -> dict[str, str]:
    """The environment of a measured `connectra jobs first_time` process on `dsn`."""
    return product_env(
        dsn,
        PARALLEL_JOBS=CONCURRENCY,
        JOB_IN_QUEUE_SIZE=100,
        TICKER_INTERVAL_SECONDS=1,
        DATABASE_POOL_SIZE=CONCURRENCY + 6,
        **extra,
    )


async def connectra_rate(dsn: str, jobs: int, processes: int) -> dict[str, float]:
    await _reset(dsn)
    env = runner_env(dsn)
    with children() as procs:
        for i in range(processes):
            procs.append(
                start(
                    f"queue_runner{processes}_{i}",
                    [PYTHON, "-m", "connectra", "jobs", "first_time"],
                    env,
                )
            )
        for child in procs:
            await wait_log(child, "listening for new jobs")
        runner_cpu = sum(child.cpu_seconds() or 0.0 for child in procs)
        conn = await asyncpg.connect(dsn)
        # The jobs' insert and the polling below are the benchmark's, not the runners' (for
        # the peers, the enqueue happens before their backends are measured).
        backends = BackendCpu(dsn, exclude=frozenset({conn.get_server_pid()}))
        try:
            await backends.__aenter__()
            began = time.perf_counter()
            await conn.execute(
                "INSERT INTO jobs (job_type, data) SELECT 'noop', '{}' FROM generate_series(1, $1)",
                jobs,
            )
            await conn.execute("NOTIFY connectra_jobs, 'open'")  # as the product's create does

            async def done() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
                return bool(n >= jobs)

            await wait_for(done, limit=600, what=f"{jobs} completed jobs", interval=0.1)
            wall = time.perf_counter() - began
            span = await conn.fetchval(
                "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM jobs"
            )
            runner_cpu = sum(child.cpu_seconds() or 0.0 for child in procs) - runner_cpu
        finally:
            await backends.__aexit__()
            await conn.close()
        _check_alive(procs)
    return {
        "jobs_per_s": jobs / float(span),
        "span_s": float(span),
        "wall_s": wall,
        "client_cpu_us_per_job": 1e6 * runner_cpu / jobs,
        "server_cpu_us_per_job": 1e6 * backends.seconds / jobs,
    }


def _median(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The run with the median rate, with every run's rate beside it."""
    ordered = sorted(runs, key=lambda run: run["jobs_per_s"])
    middle = dict(ordered[len(ordered) // 2])
    return middle | {"runs_jobs_per_s": [round(run["jobs_per_s"], 1) for run in runs]}


def _check_alive(procs: list[Child]) -> None:
    for child in procs:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} died:\n{child.log_text()[-2000:]}")


def _peer(*args: str, timeout: float = 900) -> str:
    out = subprocess.run(
        [PYTHON, PEERS, *args], check=True, capture_output=True, text=True, timeout=timeout
    )
    return out.stdout


async def peer_rate(peer: str, dsn: str, jobs: int, arg: int) -> dict[str, float]:
    if peer in RESET_TABLES:
        await _reset(dsn, peer)
    await asyncio.to_thread(_peer, f"{peer}-enqueue", dsn, str(jobs))
    began = time.perf_counter()
    async with BackendCpu(dsn) as backends:
        out = await asyncio.to_thread(_peer, f"{peer}-drain", dsn, str(arg))
    wall = time.perf_counter() - began
    report = json.loads(out.strip().splitlines()[-1])
    if report["jobs"] != jobs:
        raise RuntimeError(f"{peer} ran {report['jobs']} of {jobs} jobs")
    span = report["last"] - report["first"]
    return {
        "jobs_per_s": jobs / span,
        "span_s": span,
        "wall_s": wall,
        "client_cpu_us_per_job": 1e6 * report["cpu_s"] / jobs,
        "server_cpu_us_per_job": 1e6 * backends.seconds / jobs,
    }


async def pgbench_rate(dsn: str, jobs: int, batch: int, clients: int = 4) -> dict[str, float]:
    await _reset(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO jobs (job_type, data) SELECT 'noop', '{}' FROM generate_series(1, $1)",
            jobs,
        )
        await conn.execute("ANALYZE jobs")
    finally:
        await conn.close()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write(CLAIM_COMPLETE.format(batch=batch))
        script = fh.name
    per_client = max(1, jobs // (batch * clients))
    began = time.perf_counter()
    out = await asyncio.to_thread(
        subprocess.run,
        ["pgbench", "-n", "-c", str(clients), "-j", "2", "-t", str(per_client), "-f", script, dsn],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - began
    await asyncio.to_thread(Path(script).unlink)
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    return {"jobs_per_s": tps * batch, "wall_s": wall, "tps": tps}


async def run(quick: bool, jobs: int | None = None) -> Result:
    jobs = jobs or (2_000 if quick else 10_000)
    repeat = 1 if quick else REPEAT
    result = Result(
        "queue_throughput", details={"jobs": jobs, "concurrency": CONCURRENCY, "repeat": repeat}
    )
    runs: dict[str, list[dict[str, float]]] = {}
    async with bench_database("queue") as dsn:
        _peer("pgqueuer-setup", dsn)
        for round_no in range(1, repeat + 1):
            # Interleaved rounds, so a noisy moment hits every contender alike.
            log(f"queue: round {round_no}/{repeat}: connectra 1 and 3 processes, {jobs} jobs")
            runs.setdefault("connectra_1proc", []).append(await connectra_rate(dsn, jobs, 1))
            runs.setdefault("connectra_3proc", []).append(await connectra_rate(dsn, jobs, 3))
            log(f"queue: round {round_no}/{repeat}: raw SQL ceiling (pgbench, batch 10 and 1)")
            runs.setdefault("pgbench_batch10", []).append(await pgbench_rate(dsn, jobs, 10))
            runs.setdefault("pgbench_batch1", []).append(
                await pgbench_rate(dsn, min(jobs, 5_000), 1)
            )
            log(f"queue: round {round_no}/{repeat}: pgqueuer (batch 10, batch 100)")
            runs.setdefault("pgqueuer_batch10", []).append(
                await peer_rate("pgqueuer", dsn, jobs, 10)
            )
            runs.setdefault("pgqueuer_batch100", []).append(
                await peer_rate("pgqueuer", dsn, jobs, 100)
            )
        log(f"queue: procrastinate (-c {CONCURRENCY}), once (it is ~20x slower)")
        _peer("procrastinate-setup", dsn)
        runs["procrastinate_c10"] = [await peer_rate("procrastinate", dsn, jobs, CONCURRENCY)]
    d = result.details
    for name, measured in runs.items():
        d[name] = _median(measured)
    one, three = d["connectra_1proc"]["jobs_per_s"], d["connectra_3proc"]["jobs_per_s"]
    pgq = d["pgqueuer_batch10"]["jobs_per_s"]
    for label, value in (("1 process", one), ("3 processes", three)):
        result.figures += [
            Figure(
                f"throughput {label}",
                value,
                "jobs/s",
                "pgqueuer batch 10",
                pgq,
                ">= 1.5x",
                value >= 1.5 * pgq,
            ),
            Figure(
                f"throughput {label} vs pgqueuer b100",
                value,
                "jobs/s",
                "pgqueuer batch 100",
                d["pgqueuer_batch100"]["jobs_per_s"],
            ),
            Figure(
                f"throughput {label} vs procrastinate",
                value,
                "jobs/s",
                "procrastinate -c 10",
                d["procrastinate_c10"]["jobs_per_s"],
            ),
            Figure(
                f"throughput {label} vs SQL ceiling",
                value,
                "jobs/s",
                "pgbench claim+complete b10",
                d["pgbench_batch10"]["jobs_per_s"],
            ),
        ]
    base = d["pgqueuer_batch10"]
    for side, label in (("client", "runner process"), ("server", "PostgreSQL backends")):
        result.figures.append(
            Figure(
                f"{label} CPU per job, 1 process",
                d["connectra_1proc"][f"{side}_cpu_us_per_job"],
                "us",
                "pgqueuer batch 10",
                base[f"{side}_cpu_us_per_job"],
            )
        )
    return result
