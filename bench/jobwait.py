"""Run one product job in a runner process and read its timings from the jobs table."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from common import Child, wait_for

DONE = ("completed", "failed", "failed_final", "aborted")


async def run_job(
    dsn: str, runner: Child, job_type: str, data: dict[str, Any], limit: float
) -> dict[str, Any]:
    """Insert the job, wait for a final state; seconds from started_at to completed_at."""
    conn = await asyncpg.connect(dsn)
    try:
        job_id = await conn.fetchval(
            "INSERT INTO jobs (job_type, data) VALUES ($1, $2::jsonb) RETURNING id",
            job_type,
            json.dumps(data),
        )
        await conn.execute("NOTIFY connectra_jobs, 'open'")  # as the product's create does

        async def finished() -> bool:
            if runner.proc.poll() is not None:
                raise RuntimeError(f"runner died:\n{runner.log_text()[-3000:]}")
            status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job_id)
            return status in DONE

        await wait_for(finished, limit, f"{job_type} job", interval=0.25)
        row = await conn.fetchrow(
            "SELECT status, job_response::text AS response,"
            " extract(epoch FROM completed_at - started_at) AS seconds FROM jobs WHERE id = $1",
            job_id,
        )
    finally:
        await conn.close()
    if row["status"] != "completed":
        raise RuntimeError(f"{job_type} ended {row['status']}: {row['response'][:2000]}")
    return {"seconds": float(row["seconds"]), "response": json.loads(row["response"])}
