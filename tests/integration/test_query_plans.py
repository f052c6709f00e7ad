"""The runner's hot statements read only about the rows they write, whatever the statistics
say and whichever plan (custom or generic) PostgreSQL keeps for them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from connectra.db import queries as q
from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from connectra.jobs import FIRST_TIME, RETRY, RunnerKind

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


async def _reads_of_jobs(conn: asyncpg.Connection) -> tuple[int, int]:
    """Sequential scans of `jobs` so far, and index entries read from its indexes."""
    await conn.execute("SELECT pg_stat_force_next_flush()")  # flushed as the session idles
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    seq_scans = await conn.fetchval(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'jobs'"
    )
    entries = await conn.fetchval(
        "SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = 'jobs'"
    )
    return int(seq_scans), int(entries)


@pytest.mark.parametrize("kind", [FIRST_TIME, RETRY], ids=["first_time", "retry"])
@pytest.mark.parametrize("before_burst", ["idle_claims", "only_finished_jobs"])
@pytest.mark.parametrize(
    "queues", [None, ["default"], ["default", "other"]], ids=["all", "one", "two"]
)
async def test_a_claim_after_a_burst_reads_only_about_the_jobs_it_claims(
    database_url: str, kind: RunnerKind, before_burst: str, queues: list[str] | None
) -> None:
    # The planner works from statistics, and after a quiet spell they say that no job waits:
    # - idle_claims: the runner's idle ticks claim from an empty table more than five times,
    #   after which PostgreSQL may keep one generic plan, made for an empty table;
    # - only_finished_jobs: statistics taken while the table held only finished jobs.
    # Then 20,000 jobs wait. A plan made for "no job waits" reads every one of them (a scan
    # and a sort) to claim a queue's worth, 100 (the default JOB_IN_QUEUE_SIZE), on every
    # claim until the next ANALYZE. One connection: every claim shares its statement cache.
    # With named queues the claim walks the queue index once per queue; priorities vary.
    waiting = {
        FIRST_TIME: "status = 'open'",
        RETRY: "status = 'failed', attempts = 1, retry_count = 3, run_after = '2000-01-01'",
    }[kind]
    pool = await create_pool(database_url, max_size=1)
    store = JobStore(pool)
    try:
        async with pool.acquire() as conn:
            if conn.get_server_version() < (15, 0):
                pytest.skip("pg_stat_force_next_flush() needs PostgreSQL 15")
            await conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
            if before_burst == "only_finished_jobs":
                await conn.execute(
                    "INSERT INTO jobs (job_type, status) "
                    "SELECT 'noop', 'completed' FROM generate_series(1, 2000)"
                )
            await conn.execute("ANALYZE jobs")
        if before_burst == "idle_claims":
            for _ in range(8):
                assert await store.claim(kind, RUNNER, 100, queues) == []
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO jobs (job_type, queue, priority) "
                "SELECT 'noop', CASE WHEN n % 2 = 0 THEN 'default' ELSE 'other' END, n % 5 "
                "FROM generate_series(1, 20000) AS n"
            )
            await conn.execute(f"UPDATE jobs SET {waiting} WHERE status = 'open'")
            seq_before, entries_before = await _reads_of_jobs(conn)
        for _ in range(3):
            assert len(await store.claim(kind, RUNNER, 100, queues)) == 100
        async with pool.acquire() as conn:
            seq_after, entries_after = await _reads_of_jobs(conn)
    finally:
        await pool.execute("ALTER TABLE jobs RESET (autovacuum_enabled)")
        await pool.close()
    assert seq_after == seq_before
    # A claim reads its 100 jobs' entries, in the claim index and the primary key, and those
    # of jobs claimed before it (not cleaned up yet): about 1,000-1,600 for the three claims
    # here. A plan that reads every waiting job reads 20,000 per claim.
    assert entries_after - entries_before < 20_000


async def test_delayed_jobs_not_yet_due_cost_the_claim_nothing(database_url: str) -> None:
    # 20,000 jobs delayed by an hour and 100 open ones: each claim checks for due delayed
    # jobs (one probe of jobs_scheduled_idx) and walks the open jobs only.
    pool = await create_pool(database_url, max_size=1)
    store = JobStore(pool)
    try:
        async with pool.acquire() as conn:
            if conn.get_server_version() < (15, 0):
                pytest.skip("pg_stat_force_next_flush() needs PostgreSQL 15")
            await conn.execute(
                "INSERT INTO jobs (job_type, status, run_after) "
                "SELECT 'noop', 'scheduled', now() + interval '1 hour' "
                "FROM generate_series(1, 20000)"
            )
            await conn.execute(
                "INSERT INTO jobs (job_type) SELECT 'noop' FROM generate_series(1, 300)"
            )
            await conn.execute("ANALYZE jobs")
            seq_before, entries_before = await _reads_of_jobs(conn)
        for _ in range(3):
            assert len(await store.claim(FIRST_TIME, RUNNER, 100)) == 100
        async with pool.acquire() as conn:
            seq_after, entries_after = await _reads_of_jobs(conn)
    finally:
        await pool.close()
    assert seq_after == seq_before
    assert entries_after - entries_before < 2_000


async def test_the_claim_functions_fix_their_planning_and_never_jit(pool: asyncpg.Pool) -> None:
    # Their one sort is priced "disabled", far above jit_above_cost: with JIT on, every claim
    # was compiled (150 ms each, measured). Planned anew on every call, the claim of every
    # queue spent longer planning (1.4 ms) than claiming: one generic plan is kept instead.
    rows = await pool.fetch(
        "SELECT proname, proconfig FROM pg_proc "
        "WHERE proname IN ('claim_open_jobs', 'claim_due_retries', 'promote_due_jobs')"
    )
    assert len(rows) == 3
    for row in rows:
        assert {
            "jit=off",
            "enable_sort=off",
            "enable_seqscan=off",
            "plan_cache_mode=force_generic_plan",
        } <= set(row["proconfig"])
