"""Pickup latency of an idle runner: create committed -> handler started, product and pgqueuer.

Both are measured the same way: from the moment the create (or `enqueue`) call returned, its
commit done, to the moment the job started, on the one host clock (the server runs on this
host). Product: jobs created one at a time through the product's `JobStore.create` (the API's
and CLI's path: insert, commit, NOTIFY) while one runner idles with a one-hour tick, so only
LISTEN/NOTIFY can wake it; the start is the runner's `job started` log line, logged once the
start is committed, just before the handler runs (its timestamp has millisecond precision).
pgqueuer: a `pgq.run` worker with a 60 s dequeue timeout; the start is `time.time()` in the
handler. (Counting from `jobs.created_at`, the insert's transaction start, would add the
create's own commit, which a slow disk stretches to hundreds of ms now and then.)"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from common import (
    BENCH_DIR,
    PYTHON,
    Figure,
    Result,
    bench_database,
    children,
    log,
    percentile,
    product_env,
    start,
    started_at,
    wait_for,
    wait_log,
)

from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from connectra.jobs import NewJob

GAP_S = 0.1  # idle time between two creates


async def connectra_latency(dsn: str, samples: int) -> list[float]:
    env = product_env(dsn, PARALLEL_JOBS=4, TICKER_INTERVAL_MINUTES=60)
    with children() as procs:
        procs.append(
            start("latency_runner", [PYTHON, "-m", "connectra", "jobs", "first_time"], env)
        )
        await wait_log(procs[0], "listening for new jobs")
        await asyncio.sleep(0.5)
        conn = await asyncpg.connect(dsn)
        pool = await create_pool(dsn, max_size=2)
        try:
            store = JobStore(pool)  # the product's create path: insert, commit, NOTIFY
            returned: dict[str, float] = {}
            for _ in range(samples):
                job = await store.create(NewJob("noop", {}))
                returned[str(job.uuid)] = time.time()
                await asyncio.sleep(GAP_S)

            async def done() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
                return bool(n >= samples)

            await wait_for(done, 60, "latency jobs to complete")
            runner = procs[0]
            await wait_for(
                lambda: len(started_at(runner.log_text())) >= samples, 5, "job start log lines"
            )
            started = started_at(runner.log_text())
        finally:
            await pool.close()
            await conn.close()
    return [started[uuid] - moment for uuid, moment in returned.items()]


async def pgqueuer_latency(dsn: str, samples: int) -> list[float]:
    from pgqueuer import AsyncpgDriver, Queries

    setup = await asyncio.create_subprocess_exec(
        PYTHON, str(BENCH_DIR / "peer_workers.py"), "pgqueuer-setup", dsn
    )
    await setup.wait()
    with children() as procs:
        worker = start(
            "latency_pgqueuer", [PYTHON, str(BENCH_DIR / "peer_workers.py"), "pgqueuer-listen", dsn]
        )
        procs.append(worker)
        await wait_log(worker, "ready")
        await asyncio.sleep(1.5)  # let pgq.run start listening
        conn = await asyncpg.connect(dsn)
        queries = Queries(AsyncpgDriver(conn))
        sent: dict[int, float] = {}
        try:
            for _ in range(samples):
                (job_id,) = await queries.enqueue("noop", None)
                sent[int(job_id)] = time.time()
                await asyncio.sleep(GAP_S)
        finally:
            await conn.close()

        def received() -> dict[int, float]:
            got = {}
            for line in worker.log_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit():
                    got[int(parts[0])] = float(parts[1])
            return got

        await wait_for(lambda: len(received()) >= samples, 60, "pgqueuer latency jobs")
        got = received()
    return [got[i] - t for i, t in sent.items() if i in got]


async def run(quick: bool) -> Result:
    samples = 50 if quick else 300
    result = Result("pickup_latency", details={"samples": samples, "gap_s": GAP_S})
    async with bench_database("latency") as dsn:
        log(f"latency: connectra, {samples} single creates")
        ours = await connectra_latency(dsn, samples)
        log(f"latency: pgqueuer, {samples} single enqueues")
        theirs = await pgqueuer_latency(dsn, samples)
    for name, values in (("connectra", ours), ("pgqueuer", theirs)):
        result.details[name] = {
            f"p{p}_ms": round(percentile(values, p) * 1000, 3) for p in (50, 90, 99)
        } | {"max_ms": round(max(values) * 1000, 3), "n": len(values)}
    o, t = result.details["connectra"], result.details["pgqueuer"]
    result.figures += [
        Figure("pickup p50", o["p50_ms"], "ms", "pgqueuer p50", t["p50_ms"]),
        Figure(
            "pickup p99",
            o["p99_ms"],
            "ms",
            "pgqueuer p99",
            t["p99_ms"],
            "< 100 ms",
            o["p99_ms"] < 100,
        ),
    ]
    return result
