"""The Elasticsearch paths: `insert_csv_file` with Elasticsearch on, and `export_csv_file` from
the Elasticsearch source, each against its psql baseline on the same rows in the same run.

The engine is `BENCH_ELASTICSEARCH_URL` or a private osmem-server (see eslocal.py); with
osmem the figures mostly measure osmem. Rows: `--rows` / 10 by default (osmem holds every
document in memory), at least 10,000."""

from __future__ import annotations

import asyncio
import time

from bench_export import psql_export
from bench_import import BATCH, _empty, data_file, psql_import
from common import (
    PYTHON,
    Figure,
    Result,
    bench_database,
    children,
    log,
    product_env,
    start,
    wait_log,
)
from eslocal import Search, search_engine
from gen_contacts import COLUMNS
from jobwait import run_job
from s3local import BUCKET, client, moto, s3_env


async def _run_one(
    dsn: str,
    env: dict[str, str],
    search: Search,
    name: str,
    job_type: str,
    data: dict[str, object],
) -> dict[str, float]:
    """One job on a fresh runner; its time, and the CPU the runner and the engine spent."""
    with children() as procs:
        runner = start(name, [PYTHON, "-m", "connectra", "jobs", "first_time"], env)
        procs.append(runner)
        await wait_log(runner, "listening for new jobs")
        runner_cpu, engine_cpu = runner.cpu_seconds() or 0.0, search.cpu_seconds()
        done = await run_job(dsn, runner, job_type, data, limit=3600)
        runner_cpu = (runner.cpu_seconds() or 0.0) - runner_cpu
        engine_cpu = search.cpu_seconds() - engine_cpu
        peak = runner.peak_rss_mb() or 0.0
    return {
        "seconds": done["seconds"],
        "peak_rss_mb": peak,
        "runner_cpu_s": runner_cpu,
        "engine_cpu_s": engine_cpu,
    }


async def run(quick: bool, rows: int | None = None) -> Result:
    rows = max(10_000, (rows or (100_000 if quick else 1_000_000)) // 10)
    path = data_file(rows)
    key = f"imports/{path.name}"
    result = Result("search", details={"rows": rows, "batch_size": BATCH})
    async with bench_database("search") as dsn, moto() as endpoint:
        await asyncio.to_thread(client(endpoint).upload_file, str(path), BUCKET, key)
        with search_engine() as search:
            result.details["engine"] = search.engine
            env = product_env(
                dsn,
                PARALLEL_JOBS=4,
                TICKER_INTERVAL_SECONDS=1,
                BATCH_SIZE_FOR_INSERTION=BATCH,
                **s3_env(endpoint),
                **search.env(),
            )
            await _empty(dsn)
            log(f"search: psql \\copy staging + upsert, {rows} rows")
            seconds = await asyncio.to_thread(psql_import, dsn, str(path))
            psql_in = {"rows_per_s": rows / seconds, "seconds": seconds}
            await _empty(dsn)
            log(f"search: insert_csv_file with Elasticsearch on ({search.engine}), {rows} rows")
            began = time.perf_counter()
            ours_in = await _run_one(
                dsn,
                env,
                search,
                "search_import_runner",
                "insert_csv_file",
                {"s3_key": key, "s3_bucket": BUCKET, "service": "contact"},
            )
            ours_in["rows_per_s"] = rows / ours_in["seconds"]
            log(f"search: import took {time.perf_counter() - began:.1f}s; psql copy out")
            seconds = await asyncio.to_thread(psql_export, dsn)
            psql_out = {"rows_per_s": rows / seconds, "seconds": seconds}
            log("search: export_csv_file from Elasticsearch")
            ours_out = await _run_one(
                dsn,
                env,
                search,
                "search_export_runner",
                "export_csv_file",
                {"service": "contact", "vql": {"select_columns": list(COLUMNS), "limit": 5000}},
            )
            ours_out["rows_per_s"] = rows / ours_out["seconds"]
    result.details |= {
        "import": {"psql": psql_in, "connectra": ours_in},
        "export": {"psql": psql_out, "connectra": ours_out},
    }
    engine = result.details["engine"]
    result.figures += [
        Figure(
            f"import rows/s, ES on ({engine.split()[0]})",
            ours_in["rows_per_s"],
            "rows/s",
            "psql \\copy staging + upsert",
            psql_in["rows_per_s"],
            "",
            None,
        ),
        Figure(
            f"export rows/s, ES source ({engine.split()[0]})",
            ours_out["rows_per_s"],
            "rows/s",
            "psql \\copy (SELECT) TO",
            psql_out["rows_per_s"],
            "",
            None,
        ),
    ]
    return result
