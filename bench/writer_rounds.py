"""The status writer's rounds, timed inside one runner: how long each round's statement takes,
and how much Python runs between the end of one round and the start of the next.

    python bench/writer_rounds.py [--jobs 10000] [--pairs 4] [--against DIR]

One runner (PARALLEL_JOBS 10, queue 100, the product's JSON logging into /dev/null) runs in a
child process and drains no-op jobs from a fresh bench database; a wrapper around
`JobStore.start_and_complete` stamps each round. With `--against` another checkout of the
product (for example `git worktree add /tmp/base HEAD~1`; its migrations must match), each
pair runs both trees, one after the other, and the ratio of each pair is printed: the machine's
noise hits both sides of a pair alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import PYTHON, REPO, bench_database, log, wait_for

CONCURRENCY = 10


async def measure(dsn: str, jobs: int) -> dict[str, float]:
    """Child side: drain `jobs` no-op jobs with one runner in this process."""
    from connectra.db.pool import create_pool
    from connectra.db.store import JobStore
    from connectra.jobs import FIRST_TIME
    from connectra.processors.registry import default_registry
    from connectra.retry import RetryPolicy
    from connectra.runners.runner import Runner, RunnerConfig, Stopping
    from connectra.settings import load_settings

    pool = await create_pool(dsn, max_size=CONCURRENCY + 6)
    store = JobStore(pool)
    await pool.execute("TRUNCATE jobs CASCADE")
    await pool.execute("VACUUM ANALYZE jobs")
    stamps: list[tuple[float, float]] = []
    writes: list[int] = []
    send = store.start_and_complete

    async def stamped(*args: Any) -> Any:
        began = time.perf_counter()
        result = await send(*args)
        stamps.append((began, time.perf_counter()))
        writes.append(len(args[2]) + len(args[3]))
        return result

    store.start_and_complete = stamped  # type: ignore[method-assign]
    config = RunnerConfig(
        kind=FIRST_TIME,
        concurrency=CONCURRENCY,
        queue_size=100,
        tick_interval=timedelta(seconds=1),
        shutdown_grace=timedelta(seconds=5),
        retry_policy=RetryPolicy(),
    )
    runner = Runner(store, default_registry(), load_settings(), config)
    stopping = Stopping()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runner.run(stopping))
        await asyncio.sleep(0.3)
        await pool.execute(
            "INSERT INTO jobs (job_type, data) SELECT 'noop', '{}' FROM generate_series(1, $1)",
            jobs,
        )
        cpu = time.process_time()
        runner.wake()

        async def done() -> bool:
            n = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
            return bool(n >= jobs)

        await wait_for(done, limit=600, what=f"{jobs} completed jobs")
        cpu = time.process_time() - cpu
        stopping.request()
    span = await pool.fetchval(
        "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM jobs"
    )
    await pool.close()
    steady = stamps[5:-5]  # leave out the ramp up and the tail
    return {
        "jobs_per_s": jobs / float(span),
        "cpu_us_per_job": 1e6 * cpu / jobs,
        "rounds": len(stamps),
        "writes_per_round": statistics.mean(writes),
        "statement_ms": 1e3 * statistics.median(end - began for began, end in steady),
        "between_ms": 1e3
        * statistics.median(steady[i + 1][0] - steady[i][1] for i in range(len(steady) - 1)),
    }


def run_child(tree: Path, dsn: str, jobs: int) -> dict[str, float]:
    """One measurement of the product in `tree`, in a child process."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [PYTHON, __file__, "--child", dsn, "--jobs", str(jobs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def show(name: str, figures: dict[str, float]) -> None:
    print(
        f"{name:>10}  {figures['jobs_per_s']:7.0f} jobs/s  runner CPU "
        f"{figures['cpu_us_per_job']:4.0f} us/job  {figures['writes_per_round']:4.1f} writes/round"
        f"  statement {figures['statement_ms']:.3f} ms  between rounds "
        f"{figures['between_ms']:.3f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    trees = {"this": REPO} | ({"against": Path(args.against)} if args.against else {})
    async with bench_database("rounds") as dsn:
        for pair in range(1, args.pairs + 1):
            log(f"writer rounds: pair {pair}/{args.pairs}, {args.jobs} jobs")
            figures = {}
            for name, tree in trees.items():
                figures[name] = await asyncio.to_thread(run_child, tree, dsn, args.jobs)
                show(name, figures[name])
            if args.against:
                ratio = figures["this"]["jobs_per_s"] / figures["against"]["jobs_per_s"]
                print(f"{'ratio':>10}  {ratio:.2f}x jobs/s (this / against)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--against", help="another checkout of the product, run in turn")
    parser.add_argument("--child", metavar="DSN", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        from connectra import logs

        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - where the log lines go, for good
        logs.configure_logging("INFO")
        print(json.dumps(uvloop.run(measure(args.child, args.jobs))))
    else:
        asyncio.run(main(args))
