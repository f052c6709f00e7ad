"""The runner's hot statements find their rows by primary key, whatever the statistics say."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from connectra.db import queries as q
from connectra.jobs import FIRST_TIME

RUNNER = "plans-test"
# Indexes holding an entry for every version of every row in some status.
STATUS_INDEXES = {"jobs_status_list_idx", "jobs_heartbeat_idx", "jobs_finished_idx"}


async def _indexes_used(pool: asyncpg.Pool, sql: str, *args: Any) -> set[str]:
    """Every index the plan of `sql` scans (custom plan: the arguments are known)."""
    async with pool.acquire() as conn, conn.transaction():
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    if isinstance(plan, str):
        plan = json.loads(plan)
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


async def test_batched_starts_and_completions_use_the_primary_key_when_statistics_lag(
    pool: asyncpg.Pool,
) -> None:
    # Statistics taken while every job was open, then every job moved on without a new
    # ANALYZE: the planner believes no job is queued or running, so a status index looks
    # like the cheapest way in, while it holds an entry for every version of every row.
    await pool.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
    try:
        await pool.execute(
            "INSERT INTO jobs (job_type) SELECT 'noop' FROM generate_series(1, 20000)"
        )
        await pool.execute("ANALYZE jobs")
        await pool.execute("UPDATE jobs SET status = $1, runner_id = $2", FIRST_TIME.queued, RUNNER)
        ids = [int(r["id"]) for r in await pool.fetch("SELECT id FROM jobs LIMIT 10")]
        queued, running = FIRST_TIME.queued, FIRST_TIME.running
        start = await _indexes_used(
            pool, q.JOB_START_AND_COMPLETE, ids, queued, RUNNER, running, [], []
        )
        await pool.execute(
            "UPDATE jobs SET status = $1 WHERE runner_id = $2", FIRST_TIME.running, RUNNER
        )
        complete = await _indexes_used(
            pool, q.JOB_START_AND_COMPLETE, [], queued, RUNNER, running, ids, [{}] * len(ids)
        )
    finally:
        await pool.execute("ALTER TABLE jobs RESET (autovacuum_enabled)")
    # (The empty half of each statement may name any index: an empty ANY matches nothing.)
    for used in (start, complete):
        assert "jobs_pkey" in used
        assert not used & STATUS_INDEXES, used
