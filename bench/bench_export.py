"""Export rows/s: export_csv_file (Postgres source, S3 = moto_server) vs
`psql \\copy (SELECT ...) TO` a local file, same columns and order."""

from __future__ import annotations

import asyncio

import asyncpg
from bench_import import data_file
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
from gen_contacts import COLUMNS
from jobwait import run_job
from s3local import moto, s3_env

PAGE = 5000


def psql_export(dsn: str) -> float:
    """Seconds for psql to copy every contact, in the export's order, to a local file."""
    out = WORK / "export_psql.csv"
    cols = ", ".join(COLUMNS)
    try:
        return run_psql(
            dsn,
            f"\\copy (SELECT {cols} FROM contacts ORDER BY uuid) TO '{out}' WITH (FORMAT csv, "
            "HEADER)",
        )
    finally:
        out.unlink(missing_ok=True)


async def run(quick: bool, rows: int | None = None) -> Result:
    rows = rows or (100_000 if quick else 1_000_000)
    path = data_file(rows)
    cols = ", ".join(COLUMNS)
    result = Result("export", details={"rows": rows, "page_size": PAGE})
    async with bench_database("export") as dsn, moto() as endpoint:
        log(f"export: loading {rows} rows")
        await asyncio.to_thread(
            run_psql, dsn, f"\\copy contacts ({cols}) FROM '{path}' WITH (FORMAT csv, HEADER)"
        )
        conn = await asyncpg.connect(dsn)
        await conn.execute("VACUUM ANALYZE contacts")
        await conn.close()
        log("export: psql \\copy (SELECT ...) TO")
        seconds = await asyncio.to_thread(psql_export, dsn)
        psql = {"rows_per_s": rows / seconds, "seconds": seconds}
        log("export: connectra export_csv_file")
        env = product_env(dsn, PARALLEL_JOBS=4, TICKER_INTERVAL_SECONDS=1, **s3_env(endpoint))
        with children() as procs:
            runner = start("export_runner", [PYTHON, "-m", "connectra", "jobs", "first_time"], env)
            procs.append(runner)
            await wait_log(runner, "listening for new jobs")
            done = await run_job(
                dsn,
                runner,
                "export_csv_file",
                {"service": "contact", "vql": {"select_columns": list(COLUMNS), "limit": PAGE}},
                limit=3600,
            )
            peak = runner.peak_rss_mb()
    ours = {
        "rows_per_s": rows / done["seconds"],
        "seconds": done["seconds"],
        "peak_rss_mb": peak,
        "messages": done["response"].get("messages"),
    }
    result.details |= {"psql": psql, "connectra": ours}
    result.figures.append(
        Figure(
            "export rows/s",
            ours["rows_per_s"],
            "rows/s",
            "psql \\copy (SELECT) TO",
            psql["rows_per_s"],
            ">= 0.5x",
            ours["rows_per_s"] >= 0.5 * psql["rows_per_s"],
        )
    )
    return result
