"""Import rows/s: insert_csv_file (S3 = moto_server) vs `psql \\copy` into a TEMP staging table
followed by the same upsert; peak RSS of the runner process (VmHWM)."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg
from common import (
    PYTHON,
    WORK,
    Figure,
    Result,
    bench_database,
    children,
    log,
    product_env,
    run_psql,
    start,
    wait_log,
)
from gen_contacts import COLUMNS, generate
from jobwait import run_job
from s3local import BUCKET, client, moto, s3_env

BATCH = int(os.environ.get("BENCH_BATCH_SIZE", "5000"))
COLS = ", ".join(COLUMNS)
UPSERT = (
    f"INSERT INTO contacts ({COLS}) SELECT {COLS} FROM staging "
    "ON CONFLICT (uuid) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
    + ", updated_at = now()"
)


def data_file(rows: int):  # type: ignore[no-untyped-def]
    path = WORK / "data" / f"contacts_{rows}.csv"
    if not path.exists():
        log(f"generating {rows} rows into {path}")
    return generate(rows, path)


async def _empty(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE contacts, filter_values")
        await conn.execute("VACUUM ANALYZE contacts")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def psql_import(dsn: str, path: str) -> float:
    return run_psql(
        dsn,
        "CREATE TEMP TABLE staging (LIKE contacts INCLUDING DEFAULTS)",
        f"\\copy staging ({COLS}) FROM '{path}' WITH (FORMAT csv, HEADER true)",
        UPSERT,
    )


async def product_import(dsn: str, endpoint: str, key: str, rows: int) -> dict[str, float]:
    env = product_env(
        dsn,
        PARALLEL_JOBS=4,
        TICKER_INTERVAL_SECONDS=1,
        BATCH_SIZE_FOR_INSERTION=BATCH,
        **s3_env(endpoint),
    )
    with children() as procs:
        runner = start(
            f"import_runner_{rows}", [PYTHON, "-m", "connectra", "jobs", "first_time"], env
        )
        procs.append(runner)
        await wait_log(runner, "listening for new jobs")
        idle_rss = runner.peak_rss_mb() or 0.0
        done = await run_job(
            dsn,
            runner,
            "insert_csv_file",
            {"s3_key": key, "s3_bucket": BUCKET, "service": "contact"},
            limit=3600,
        )
        peak = runner.peak_rss_mb() or 0.0
    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval("SELECT count(*) FROM contacts")
    finally:
        await conn.close()
    if count != rows:
        raise RuntimeError(f"imported {count} of {rows} rows: {str(done['response'])[:500]}")
    return {
        "rows_per_s": rows / done["seconds"],
        "seconds": done["seconds"],
        "peak_rss_mb": peak,
        "idle_rss_mb": idle_rss,
    }


async def measure(
    dsn: str, endpoint: str, rows: int, baseline: bool = True
) -> dict[str, dict[str, float]]:
    path = data_file(rows)
    key = f"imports/{path.name}"
    began = time.perf_counter()
    await asyncio.to_thread(client(endpoint).upload_file, str(path), BUCKET, key)
    log(
        f"import: uploaded {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - began:.1f}s"
    )
    psql = {}
    if baseline:
        await _empty(dsn)
        log(f"import: psql \\copy staging + upsert, {rows} rows")
        seconds = await asyncio.to_thread(psql_import, dsn, str(path))
        psql = {"rows_per_s": rows / seconds, "seconds": seconds}
    await _empty(dsn)
    log(f"import: connectra insert_csv_file, {rows} rows (batch {BATCH})")
    ours = await product_import(dsn, endpoint, key, rows)
    return {"psql": psql, "connectra": ours}


async def run(quick: bool, rows: int | None = None, big: bool = False) -> Result:
    rows = rows or (100_000 if quick else 1_000_000)
    result = Result("import", details={"rows": rows, "batch_size": BATCH})
    async with bench_database("import") as dsn, moto() as endpoint:
        result.details |= await measure(dsn, endpoint, rows)
        if big:
            result.details["big"] = await measure(dsn, endpoint, 10 * rows, baseline=False)
    d = result.details
    ours, psql = d["connectra"], d["psql"]
    result.figures += [
        Figure(
            "import rows/s",
            ours["rows_per_s"],
            "rows/s",
            "psql \\copy staging + upsert",
            psql["rows_per_s"],
            ">= 0.8x",
            ours["rows_per_s"] >= 0.8 * psql["rows_per_s"],
        ),
        Figure(
            "import runner peak RSS",
            ours["peak_rss_mb"],
            "MB",
            "idle runner RSS",
            ours["idle_rss_mb"],
            "< 150 MB",
            ours["peak_rss_mb"] < 150,
        ),
    ]
    if big:
        b = d["big"]["connectra"]
        result.figures.append(
            Figure(
                f"import peak RSS {10 * rows} rows",
                b["peak_rss_mb"],
                "MB",
                f"peak RSS {rows} rows",
                ours["peak_rss_mb"],
                "<= 1.2x",
                b["peak_rss_mb"] <= 1.2 * ours["peak_rss_mb"],
            )
        )
    return result
