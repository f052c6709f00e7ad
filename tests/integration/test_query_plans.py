"""The runner's hot statements find their rows by primary key, whatever the statistics say
and whichever plan (custom or generic) PostgreSQL picks for them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from connectra.db import queries as q
from connectra.jobs import FIRST_TIME

RUNNER = "plans-test"
# Indexes holding an entry for every version of every row in some status.
STATUS_INDEXES = {"jobs_status_list_idx", "jobs_heartbeat_idx", "jobs_finished_idx"}


def _nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of an `EXPLAIN (FORMAT JSON)` plan."""
    if isinstance(plan, str):
        plan = json.loads(plan)
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        found.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


async def _indexes_used(pool: asyncpg.Pool, sql: str, *args: Any) -> set[str]:
    """Every index the plan of `sql` scans (custom plan: the arguments are known)."""
    async with pool.acquire() as conn, conn.transaction():
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    return {node["Index Name"] for node in _nodes(plan) if "Index Name" in node}


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


@pytest.mark.parametrize(
    ("claim", "waiting"),
    [
        (q.JOB_CLAIM_OPEN, "status = 'open'"),
        (
            q.JOB_CLAIM_RETRY,
            "status = 'failed', attempts = 1, retry_count = 3, run_after = now() - interval '1h'",
        ),
    ],
    ids=["first_time", "retry"],
)
async def test_the_claim_reads_only_the_rows_it_claims_under_a_generic_plan(
    pool: asyncpg.Pool, claim: str, waiting: str
) -> None:
    # A prepared statement may run on a generic plan, made without its arguments (after five
    # runs PostgreSQL may switch to one, and `plan_cache_mode` can force it). Such a plan
    # guesses that LIMIT $1 yields a tenth of the waiting jobs; a claim that joined its picked
    # rows back to the table then hashed the whole table on every claim.
    await pool.execute("INSERT INTO jobs (job_type) SELECT 'noop' FROM generate_series(1, 20000)")
    await pool.execute(f"UPDATE jobs SET {waiting}")
    await pool.execute("ANALYZE jobs")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE claim_plan (int, text) AS {claim}")
        try:
            plan = await conn.fetchval("EXPLAIN (FORMAT JSON) EXECUTE claim_plan (10, 'r')")
        finally:
            await conn.execute("DEALLOCATE claim_plan")
    nodes = _nodes(plan)
    scans = {node["Node Type"] for node in nodes if node.get("Relation Name") == "jobs"}
    assert "Seq Scan" not in scans, scans
    assert not any("Hash" in node["Node Type"] for node in nodes)
