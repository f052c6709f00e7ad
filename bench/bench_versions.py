"""Two checkouts of the product, same run: queue throughput and pickup latency, this / against.

    python bench/bench_versions.py --against DIR [--this DIR] [--jobs 10000] [--rounds 3]
                                   [--samples 200]

"this" is the checkout this script lives in (or `--this DIR`), "against" another one, for
example a worktree of an earlier commit (`git worktree add --detach /tmp/connectra-before REV`).
Each side gets its own database, migrated by its own `connectra migrate` (its own
`migrations/`), and its processes import its own code (`PYTHONPATH=<checkout>`, checked before
anything is measured: the venv's editable install points at one checkout only). Rounds are
interleaved (this, against, this, against, ...), so a noisy moment of the machine hits both.
Each run starts from the same state: its `jobs` table emptied and vacuumed, then a
`CHECKPOINT`; each run's rows are truncated as soon as it ends, so autovacuum has nothing of
one side to clean up during the other's run. Each runner start imports its checkout anew: a
digest of `connectra/` and `migrations/` taken at the start and the end flags a tree edited
during the run (for a stable "this", use a worktree and `--this`).

- Throughput, as `bench_queue.py`'s 1-process product run: one `connectra jobs first_time`
  (`PARALLEL_JOBS=10`, `JOB_IN_QUEUE_SIZE=100`) listening, then all no-op jobs inserted in one
  statement; `jobs / (last completed_at - first started_at)` from the `jobs` table, emptied and
  vacuumed before each run. The median of the rounds per side, and the ratio of the medians.
- Pickup latency, as `bench_latency.py`'s product run: one idle runner with a one-hour tick;
  jobs created one at a time 0.1 s apart by plain SQL (insert committed, then the
  `pg_notify('connectra_jobs', 'open')` the product's announcer sends), from that call's return
  to the runner's `job started` log line. The samples are split over the rounds; p50 and p99
  of each side's pooled samples, and their ratios (below 1: this side is faster).

Jobs are inserted with `job_type` only, the rest from the column defaults, so that the
statements suit both sides' schemas. Results: a table on stdout and
`bench/results/versions-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from bench_queue import CONCURRENCY, _check_alive, _reset
from common import (
    PYTHON,
    REPO,
    WORK,
    BackendCpu,
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
    write_report,
)

SIDES = ("this", "against")
GAP_S = 0.1  # idle time between two creates (as bench_latency.py)
MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")  # as connectra/db/migrate.py
INSERT_MANY = "INSERT INTO jobs (job_type) SELECT 'noop' FROM generate_series(1, $1)"
INSERT_ONE = "INSERT INTO jobs (job_type) VALUES ('noop') RETURNING uuid"
ANNOUNCE = "SELECT pg_notify('connectra_jobs', 'open')"  # what the product sends after commit
RUNNER = ["-m", "connectra", "jobs", "first_time"]

# Run in a child with the side's environment and working directory: where its code comes from.
PROBE = """\
import json
import connectra
try:
    from connectra.db.migrate import migrations_dir
    folder = str(migrations_dir())
except Exception:
    folder = None
print(json.dumps({"connectra": connectra.__file__, "migrations": folder}))
"""


def _git(checkout: Path, *args: str) -> str:
    """Read-only git queries (`--no-optional-locks`: never refreshes the index)."""
    out = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(checkout), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.rstrip("\n") if out.returncode == 0 else ""


def fingerprint(checkout: Path) -> str:
    """A digest of the side's code and migrations as they are on disk now: every runner start
    imports them anew, so an edit during the run would mix two versions in one side."""
    digest = hashlib.sha256()
    for path in sorted(
        [*(checkout / "connectra").rglob("*.py"), *(checkout / "migrations").glob("*.sql")]
    ):
        digest.update(str(path.relative_to(checkout)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def describe(checkout: Path) -> dict[str, Any]:
    """Where a side's code comes from, checked: a child with the side's environment must import
    `connectra` (and find its migrations) inside the checkout, not in the editable install."""
    probe = subprocess.run(
        [PYTHON, "-c", PROBE],
        env=product_env("postgresql://unused", checkout=checkout),
        cwd=WORK,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        raise RuntimeError(f"cannot import connectra from {checkout}:\n{probe.stderr[-3000:]}")
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    imported = Path(found["connectra"]).resolve()
    if not imported.is_relative_to(checkout):
        raise RuntimeError(f"children for {checkout} import connectra from {imported}")
    if found["migrations"] is not None:
        folder = Path(found["migrations"]).resolve()
        if folder != checkout / "migrations":
            raise RuntimeError(f"children for {checkout} migrate from {folder}")
    return {
        "path": str(checkout),
        "commit": _git(checkout, "rev-parse", "HEAD"),
        "subject": _git(checkout, "log", "-1", "--format=%s"),
        "changed": _git(
            checkout, "status", "--porcelain", "--", "connectra", "migrations"
        ).splitlines()[:40],
        "connectra": str(imported),
        "fingerprint": fingerprint(checkout),
        "migrations": sorted(
            p.stem for p in (checkout / "migrations").glob("*.sql") if MIGRATION_FILE.match(p.name)
        ),
    }


async def check_schema(dsn: str, side: str, expected: list[str]) -> None:
    """The side's database holds exactly the side's own migrations."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    if sorted(applied) != expected:
        raise RuntimeError(f"{side}: database has migrations {applied}, checkout has {expected}")


async def settle(dsn: str) -> None:
    """Before a run: the side's `jobs` emptied and vacuumed (as bench_queue.py), then a
    checkpoint, so that the previous run's dirty pages (the other side's too) are not flushed
    during this one."""
    await _reset(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def empty(dsn: str) -> None:
    """After a run: its rows go at once, so autovacuum has nothing of it to clean up while the
    other side runs."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE jobs CASCADE")
    finally:
        await conn.close()


async def throughput(
    side: str, checkout: Path, dsn: str, jobs: int, round_no: int, **env_extra: object
) -> dict:
    """One runner process drains `jobs` no-op jobs inserted at once (bench_queue's 1 process).
    `env_extra`: more settings of the runner (bench_metrics.py: METRICS_ENABLED)."""
    await settle(dsn)
    load = round(os.getloadavg()[0], 2)  # the machine's other work shows here
    env = product_env(
        dsn,
        checkout=checkout,
        PARALLEL_JOBS=CONCURRENCY,
        JOB_IN_QUEUE_SIZE=100,
        TICKER_INTERVAL_SECONDS=1,
        DATABASE_POOL_SIZE=CONCURRENCY + 6,
        **env_extra,
    )
    with children() as procs:
        runner = start(f"versions_{side}_queue_r{round_no}", [PYTHON, *RUNNER], env)
        procs.append(runner)
        await wait_log(runner, "listening for new jobs")
        runner_cpu = runner.cpu_seconds() or 0.0
        conn = await asyncpg.connect(dsn)
        backends = BackendCpu(dsn, exclude=frozenset({conn.get_server_pid()}))
        try:
            await backends.__aenter__()
            began = time.perf_counter()
            await conn.execute(INSERT_MANY, jobs)
            await conn.execute(ANNOUNCE)

            async def done() -> bool:
                _check_alive(procs)  # a runner that died fails the run now, not at the limit
                n = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
                return bool(n >= jobs)

            await wait_for(done, limit=600, what=f"{side}: {jobs} completed jobs", interval=0.1)
            wall = time.perf_counter() - began
            span = await conn.fetchval(
                "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM jobs"
            )
            runner_cpu = (runner.cpu_seconds() or 0.0) - runner_cpu
        finally:
            await backends.__aexit__()
            await conn.close()
        _check_alive(procs)
    await empty(dsn)
    return {
        "jobs_per_s": jobs / float(span),
        "loadavg_1m_before": load,
        "span_s": float(span),
        "wall_s": wall,
        "runner_cpu_us_per_job": 1e6 * runner_cpu / jobs,
        "server_cpu_us_per_job": 1e6 * backends.seconds / jobs,
    }


async def latency(side: str, checkout: Path, dsn: str, samples: int, round_no: int) -> list[float]:
    """Pickup latency of an idle runner (bench_latency's product run), jobs created by SQL."""
    await settle(dsn)
    env = product_env(dsn, checkout=checkout, PARALLEL_JOBS=4, TICKER_INTERVAL_MINUTES=60)
    with children() as procs:
        runner = start(f"versions_{side}_latency_r{round_no}", [PYTHON, *RUNNER], env)
        procs.append(runner)
        await wait_log(runner, "listening for new jobs")
        await asyncio.sleep(0.5)
        conn = await asyncpg.connect(dsn)
        try:
            returned: dict[str, float] = {}
            for _ in range(samples):
                job = await conn.fetchval(INSERT_ONE)  # committed on return (autocommit)
                await conn.execute(ANNOUNCE)
                returned[str(job)] = time.time()
                await asyncio.sleep(GAP_S)
            uuids = list(returned)

            async def done() -> bool:
                _check_alive(procs)
                n = await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE status = 'completed' AND uuid::text = ANY($1)",
                    uuids,
                )
                return bool(n >= samples)

            await wait_for(done, 60, f"{side}: latency jobs to complete")
            await wait_for(
                lambda: len(started_at(runner.log_text())) >= samples,
                5,
                f"{side}: job start log lines",
            )
            started = started_at(runner.log_text())
        finally:
            await conn.close()
        _check_alive(procs)
    await empty(dsn)
    return [started[uuid] - moment for uuid, moment in returned.items()]


def split(total: int, parts: int) -> list[int]:
    """`total` samples over `parts` rounds, as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def median_run(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The run with the median rate (the lower middle one for an even count), every rate beside."""
    ordered = sorted(runs, key=lambda run: run["jobs_per_s"])
    middle = dict(ordered[(len(ordered) - 1) // 2])
    return middle | {
        "median_jobs_per_s": statistics.median(run["jobs_per_s"] for run in runs),
        "runs_jobs_per_s": [round(run["jobs_per_s"], 1) for run in runs],
        "runs": [{k: round(v, 3) for k, v in run.items()} for run in runs],
    }


def latency_figures(values: list[float]) -> dict[str, float]:
    return {f"p{p}_ms": round(percentile(values, p) * 1000, 3) for p in (50, 90, 99)} | {
        "max_ms": round(max(values) * 1000, 3),
        "n": len(values),
    }


async def measure(args: argparse.Namespace, trees: dict[str, Path]) -> Result:
    result = Result(
        "versions",
        details={
            "jobs": args.jobs,
            "rounds": args.rounds,
            "samples": args.samples,
            "concurrency": CONCURRENCY,
            "gap_s": GAP_S,
            "checkouts": {side: describe(tree) for side, tree in trees.items()},
        },
    )
    checkouts = result.details["checkouts"]
    for side in SIDES:
        log(
            f"versions: {side} = {trees[side]} ({checkouts[side]['commit'][:9]}), connectra from "
            f"{checkouts[side]['connectra']}"
        )
    if trees["this"] == trees["against"]:
        log("versions: warning: both sides are the same checkout")
    rates: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    delays: dict[str, list[list[float]]] = {side: [] for side in SIDES}
    async with contextlib.AsyncExitStack() as stack:
        dsns = {}
        for side in SIDES:
            log(f"versions: {side}: a database, migrated by the side's own `connectra migrate`")
            dsns[side] = await stack.enter_async_context(
                bench_database(f"versions_{side}", checkout=trees[side])
            )
            await check_schema(dsns[side], side, checkouts[side]["migrations"])
        chunks = split(args.samples, args.rounds)
        for round_no in range(1, args.rounds + 1):
            for side in SIDES:
                log(
                    f"versions: round {round_no}/{args.rounds}: {side} throughput, {args.jobs} jobs"
                )
                run = await throughput(side, trees[side], dsns[side], args.jobs, round_no)
                rates[side].append(run)
                log(f"versions:   {side}: {run['jobs_per_s']:.0f} jobs/s")
            for side in SIDES:
                n = chunks[round_no - 1]
                if n == 0:
                    continue
                log(f"versions: round {round_no}/{args.rounds}: {side} pickup, {n} creates")
                values = await latency(side, trees[side], dsns[side], n, round_no)
                delays[side].append(values)
                log(
                    f"versions:   {side}: p50 {1000 * percentile(values, 50):.1f} ms, "
                    f"p99 {1000 * percentile(values, 99):.1f} ms"
                )
    d = result.details
    for side in SIDES:
        after = fingerprint(trees[side])
        checkouts[side]["fingerprint_after"] = after
        if after != checkouts[side]["fingerprint"]:
            log(f"versions: warning: {side}'s code or migrations changed during the run")
    d["throughput"] = {side: median_run(rates[side]) for side in SIDES}
    d["throughput"]["rounds"] = [
        {side: round(rates[side][i]["jobs_per_s"], 1) for side in SIDES}
        | {"ratio": round(rates["this"][i]["jobs_per_s"] / rates["against"][i]["jobs_per_s"], 3)}
        for i in range(args.rounds)
    ]
    d["latency"] = {
        side: latency_figures([v for chunk in delays[side] for v in chunk])
        | {"rounds": [latency_figures(chunk) for chunk in delays[side]]}
        for side in SIDES
    }
    against = f"against {checkouts['against']['commit'][:9] or trees['against']}"
    this, other = d["throughput"]["this"], d["throughput"]["against"]
    result.figures += [
        Figure(
            "throughput, median of rounds",
            this["median_jobs_per_s"],
            "jobs/s",
            against,
            other["median_jobs_per_s"],
        ),
        Figure(
            "runner CPU per job (median round)",
            this["runner_cpu_us_per_job"],
            "us",
            against,
            other["runner_cpu_us_per_job"],
        ),
        Figure(
            "PostgreSQL CPU per job (median round)",
            this["server_cpu_us_per_job"],
            "us",
            against,
            other["server_cpu_us_per_job"],
        ),
    ]
    for p in (50, 99):
        result.figures.append(
            Figure(
                f"pickup p{p}",
                d["latency"]["this"][f"p{p}_ms"],
                "ms",
                against,
                d["latency"]["against"][f"p{p}_ms"],
            )
        )
    return result


def table(result: Result) -> str:
    d = result.details
    head = f"{'figure':40} {'this':>10} {'against':>10} {'unit':7} {'this/against':>12}"
    lines = [head, "-" * len(head)]
    for i, run in enumerate(d["throughput"]["rounds"], 1):
        lines.append(
            f"{f'  throughput round {i}':40} {run['this']:>10.1f} {run['against']:>10.1f} "
            f"{'jobs/s':7} {run['this'] / run['against']:>11.2f}x"
        )
    for figure in result.figures:
        ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}x"
        lines.append(
            f"{figure.metric:40} {figure.value:>10.1f} {figure.baseline_value or 0:>10.1f} "
            f"{figure.unit:7} {ratio:>12}"
        )
    for side in SIDES:
        c = d["checkouts"][side]
        changed = f", {len(c['changed'])} changed files" if c["changed"] else ""
        if c["fingerprint_after"] != c["fingerprint"]:
            changed += ", CODE CHANGED DURING THE RUN"
        lines.append(f"{side}: {c['path']} {c['commit'][:9]} {c['subject'][:60]}{changed}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the other checkout of the product")
    parser.add_argument("--this", default=str(REPO), help="this side's checkout (default: here)")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--samples", type=int, default=200, help="pickup samples per side")
    args = parser.parse_args()
    if args.jobs < 1 or args.rounds < 1 or args.samples < 1:
        parser.error("--jobs, --rounds and --samples must be positive")
    trees = {"this": Path(args.this).resolve(), "against": Path(args.against).resolve()}
    for side, tree in trees.items():
        if not (tree / "connectra" / "__init__.py").is_file():
            parser.error(f"{side}: {tree} is not a checkout of the product")
    WORK.mkdir(parents=True, exist_ok=True)
    # A SIGTERM (`timeout`, a CI cancel) unwinds like Ctrl-C: runners stopped, databases dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.time()
    try:
        result = asyncio.run(measure(args, trees))
    except subprocess.CalledProcessError as exc:  # e.g. a side's `connectra migrate`
        print(f"{exc}\n{(exc.stderr or b'')[-3000:].decode(errors='replace')}", file=sys.stderr)
        return 1
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "seconds": round(time.time() - began, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": [result.as_dict()],
    }
    path = write_report("versions", report, began)
    print()
    print(table(result))
    log(f"wrote {path} in {report['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
