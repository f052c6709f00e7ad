"""Export rows/s: export_csv_file (Postgres source, S3 = moto_server) vs
`psql \\copy (SELECT ...) TO` a local file, same columns and order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import s3local
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

from connectra.objectstore import DEFAULT_PART_SIZE

PAGE = 5000


def psql_export(dsn: str, out: Path | None = None) -> float:
    """Seconds for psql to copy every contact, in the export's order, to a local file (kept
    when `out` is given)."""
    path = out or WORK / "export_psql.csv"
    cols = ", ".join(COLUMNS)
    try:
        return run_psql(
            dsn,
            f"\\copy (SELECT {cols} FROM contacts ORDER BY uuid) TO '{path}' "
            "WITH (FORMAT csv, HEADER)",
        )
    finally:
        if out is None:
            path.unlink(missing_ok=True)


def s3_upload(endpoint: str, path: Path) -> dict[str, float]:
    """Seconds the S3 server takes to accept this file as the export writes it: parts of
    the product's part size one after the other, then the completion (which the export
    cannot overlap with anything: it comes after the last byte)."""
    s3 = s3local.client(endpoint)
    key = "bench-floor.csv"
    began = time.perf_counter()
    upload_id = s3.create_multipart_upload(Bucket=s3local.BUCKET, Key=key)["UploadId"]
    parts = []
    with path.open("rb") as f:
        while chunk := f.read(DEFAULT_PART_SIZE):
            number = len(parts) + 1
            etag = s3.upload_part(
                Bucket=s3local.BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
    uploaded = time.perf_counter()
    s3.complete_multipart_upload(
        Bucket=s3local.BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    done = time.perf_counter()
    s3.delete_object(Bucket=s3local.BUCKET, Key=key)
    return {"parts_s": uploaded - began, "complete_s": done - uploaded}


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
        out = WORK / "export_psql.csv"
        try:
            seconds = await asyncio.to_thread(psql_export, dsn, out)
            log("export: the same bytes uploaded to the same S3 server (boto3)")
            floor = await asyncio.to_thread(s3_upload, endpoint, out)
        finally:
            out.unlink(missing_ok=True)
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
    result.details |= {"psql": psql, "connectra": ours, "s3_upload_of_psql_file": floor}
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
    # The same bytes through the same two servers one after the other: psql's copy-out, then
    # the upload of its file (parts, then the completion, which nothing can overlap).
    serial = seconds + floor["parts_s"] + floor["complete_s"]
    result.figures.append(
        Figure(
            "export rows/s vs copy-out + S3 upload",
            ours["rows_per_s"],
            "rows/s",
            "psql copy-out, then its file to S3",
            rows / serial,
        )
    )
    return result
