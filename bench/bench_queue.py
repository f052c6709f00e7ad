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

import asyncpg
from common import (
    BENCH_DIR,
    PYTHON,
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


async def _reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE jobs CASCADE")
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()


async def connectra_rate(dsn: str, jobs: int, processes: int) -> dict[str, float]:
    await _reset(dsn)
    env = product_env(
        dsn,
        PARALLEL_JOBS=CONCURRENCY,
        JOB_IN_QUEUE_SIZE=100,
        TICKER_INTERVAL_SECONDS=1,
        DATABASE_POOL_SIZE=CONCURRENCY + 6,
    )
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
        conn = await asyncpg.connect(dsn)
        try:
            began = time.perf_counter()
            await conn.execute(
                "INSERT INTO jobs (job_type, data) SELECT 'noop', '{}' FROM generate_series(1, $1)",
                jobs,
            )

            async def done() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
                return bool(n >= jobs)

            await wait_for(done, limit=600, what=f"{jobs} completed jobs", interval=0.1)
            wall = time.perf_counter() - began
            span = await conn.fetchval(
                "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM jobs"
            )
        finally:
            await conn.close()
        _check_alive(procs)
    return {"jobs_per_s": jobs / float(span), "span_s": float(span), "wall_s": wall}


def _check_alive(procs: list[Child]) -> None:
    for child in procs:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} died:\n{child.log_text()[-2000:]}")


def _peer(*args: str, timeout: float = 900) -> str:
    out = subprocess.run(
        [PYTHON, PEERS, *args], check=True, capture_output=True, text=True, timeout=timeout
    )
    return out.stdout


def peer_rate(peer: str, dsn: str, jobs: int, arg: int) -> dict[str, float]:
    _peer(f"{peer}-enqueue", dsn, str(jobs))
    began = time.perf_counter()
    out = _peer(f"{peer}-drain", dsn, str(arg))
    wall = time.perf_counter() - began
    report = json.loads(out.strip().splitlines()[-1])
    if report["jobs"] != jobs:
        raise RuntimeError(f"{peer} ran {report['jobs']} of {jobs} jobs")
    span = report["last"] - report["first"]
    return {"jobs_per_s": jobs / span, "span_s": span, "wall_s": wall}


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
    result = Result("queue_throughput", details={"jobs": jobs, "concurrency": CONCURRENCY})
    async with bench_database("queue") as dsn:
        d = result.details
        log(f"queue: connectra 1 process, {jobs} jobs")
        d["connectra_1proc"] = await connectra_rate(dsn, jobs, 1)
        log(f"queue: connectra 3 processes, {jobs} jobs")
        d["connectra_3proc"] = await connectra_rate(dsn, jobs, 3)
        log("queue: raw SQL ceiling (pgbench, batch 10 and 1)")
        d["pgbench_batch10"] = await pgbench_rate(dsn, jobs, 10)
        d["pgbench_batch1"] = await pgbench_rate(dsn, min(jobs, 5_000), 1)
        log("queue: pgqueuer (batch 10, batch 100)")
        _peer("pgqueuer-setup", dsn)
        d["pgqueuer_batch10"] = peer_rate("pgqueuer", dsn, jobs, 10)
        d["pgqueuer_batch100"] = peer_rate("pgqueuer", dsn, jobs, 100)
        log(f"queue: procrastinate (-c {CONCURRENCY})")
        _peer("procrastinate-setup", dsn)
        d["procrastinate_c10"] = peer_rate("procrastinate", dsn, jobs, CONCURRENCY)
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
    return result
