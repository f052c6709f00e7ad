"""The cost of metrics: queue throughput with METRICS_ENABLED=true against false, same run.

    python bench/bench_metrics.py [--jobs 10000] [--rounds 6]

Each run is `bench_versions.py`'s throughput run (one `connectra jobs first_time`,
`PARALLEL_JOBS=10`, `JOB_IN_QUEUE_SIZE=100`, `--jobs` no-op jobs inserted in one statement
once it listens; `jobs / (last completed_at - first started_at)`), on one database emptied,
vacuumed and checkpointed before each run. "on" runs with METRICS_ENABLED=true and its metrics
listener on a free port, scraped every second while the jobs run (`GET /metrics`, a
Prometheus-like load but 15 times as often); "off" with METRICS_ENABLED=false and no listener.
A warm-up pair runs first and is not counted (a new database's first runs are the slowest),
then runs alternate on, off, off, on, on, off, ... so that a drift of the machine weighs on
both sides alike. Printed: every round's pair and its ratio, each side's median and the ratio of
the medians (on / off: below 1 means metrics cost throughput), and runner CPU per job.
Results: `bench/results/metrics-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import statistics
import sys
import time

import aiohttp
from bench_versions import median_run, throughput
from common import REPO, WORK, bench_database, free_port, log, write_report

SIDES = ("on", "off")
SCRAPE_EVERY_S = 1.0


async def scrape(port: int, stop: asyncio.Event) -> int:
    """GET /metrics every second until stopped (failures while the runner starts are fine);
    how many scrapes answered."""
    answered = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
                    await answer.read()
                    answered += answer.status == 200
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCRAPE_EVERY_S)
    return answered


async def one_run(
    side: str, dsn: str, jobs: int, round_no: int, listener: bool = True
) -> dict[str, float]:
    """One throughput run of a side ("on" without `listener`: instrumentation only)."""
    if side == "off" or not listener:
        enabled = "true" if side == "on" else "false"
        return await throughput(side, REPO, dsn, jobs, round_no, METRICS_ENABLED=enabled)
    port = free_port()
    stop = asyncio.Event()
    scraper = asyncio.create_task(scrape(port, stop))
    try:
        run = await throughput(
            side, REPO, dsn, jobs, round_no, METRICS_ENABLED="true", METRICS_PORT=port
        )
    finally:
        stop.set()
        scrapes = await scraper
    return run | {"scrapes": float(scrapes)}


def order(round_no: int) -> tuple[str, ...]:
    """on, off in odd rounds; off, on in even ones."""
    return SIDES if round_no % 2 else SIDES[::-1]


async def measure(args: argparse.Namespace) -> dict[str, object]:
    """Every round of both sides, and the figures."""
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    async with bench_database("metrics") as dsn:
        # The first runs on a new database are the slowest (caches, the catalog, the first
        # statements' plans): a warm-up pair, not counted, so that round 1's first side does
        # not pay for it.
        for side in SIDES:
            log(f"metrics: warm-up: {side}, {args.jobs} jobs (not counted)")
            await one_run(side, dsn, args.jobs, 0, not args.no_listener)
        for round_no in range(1, args.rounds + 1):
            for side in order(round_no):
                log(f"metrics: round {round_no}/{args.rounds}: {side}, {args.jobs} jobs")
                run = await one_run(side, dsn, args.jobs, round_no, not args.no_listener)
                runs[side].append(run)
                log(f"metrics:   {side}: {run['jobs_per_s']:.0f} jobs/s")
    medians = {side: median_run(runs[side]) for side in SIDES}
    on, off = medians["on"]["median_jobs_per_s"], medians["off"]["median_jobs_per_s"]
    return {
        "jobs": args.jobs,
        "listener": not args.no_listener,
        "rounds": [
            {side: round(runs[side][i]["jobs_per_s"], 1) for side in SIDES}
            | {"ratio": round(runs["on"][i]["jobs_per_s"] / runs["off"][i]["jobs_per_s"], 4)}
            for i in range(args.rounds)
        ],
        "sides": medians,
        "ratio_of_medians": round(on / off, 4),
        "median_round_ratio": round(
            statistics.median(
                runs["on"][i]["jobs_per_s"] / runs["off"][i]["jobs_per_s"]
                for i in range(args.rounds)
            ),
            4,
        ),
    }


def table(result: dict[str, object]) -> str:
    """The rounds and the figures, for people."""
    lines = [f"{'round':8} {'on':>10} {'off':>10} {'on/off':>8}"]
    for i, r in enumerate(result["rounds"], 1):  # type: ignore[arg-type]
        lines.append(f"{i:<8} {r['on']:>10.1f} {r['off']:>10.1f} {r['ratio']:>8.3f}")
    sides = result["sides"]
    for name, key in (("median", "median_jobs_per_s"), ("cpu us/job", "runner_cpu_us_per_job")):
        on, off = sides["on"][key], sides["off"][key]  # type: ignore[index]
        lines.append(f"{name:8} {on:>10.1f} {off:>10.1f} {on / off:>8.3f}")
    lines.append(f"ratio of medians (on/off): {result['ratio_of_medians']:.3f}")
    lines.append(f"median of round ratios:    {result['median_round_ratio']:.3f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per run")
    parser.add_argument("--rounds", type=int, default=6, help="rounds (one run of each side)")
    parser.add_argument(
        "--no-listener",
        action="store_true",
        help='"on" without the metrics listener and its scrapes: the instrumentation alone',
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.rounds < 1:
        parser.error("--jobs and --rounds must be positive")
    WORK.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.time()
    result = asyncio.run(measure(args))
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "seconds": round(time.time() - began, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "result": result,
    }
    path = write_report("metrics", report, began)
    print()
    print(table(result))
    log(f"wrote {path} in {report['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
