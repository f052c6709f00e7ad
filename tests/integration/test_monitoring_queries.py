"""The job counts of `/metrics` stay cheap however many finished jobs the table holds: the
exact counts read only the jobs waiting or running (partial indexes), never the table; the
finished ones are estimated from the statistics (the catalog only)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from connectra.db import queries as q
from connectra.db.monitor_store import MonitorStore

FINISHED = {"completed": 200_000, "failed_final": 6_000, "aborted": 4_000}
WAITING = [  # (status, queue, jobs, run_after, runner_id)
    ("open", "default", 300, None, None),
    ("open", "reports", 200, None, None),
    ("scheduled", "default", 100, "1 hour", None),
    ("failed", "reports", 50, "1 hour", None),
    ("in_queue", "default", 10, None, "r"),
    ("processing", "default", 4, None, "r"),
    ("retrying", "reports", 1, None, "r"),
]


async def _fill(pool: asyncpg.Pool) -> None:
    """200,000 completed jobs and 10,000 other finished ones, then a few hundred waiting or
    running in two queues; statistics taken after."""
    for status, jobs in FINISHED.items():
        await pool.execute(
            "INSERT INTO jobs (job_type, status, completed_at) "
            "SELECT 'noop', $1, now() FROM generate_series(1, $2)",
            status,
            jobs,
        )
    for status, queue, jobs, due_in, runner in WAITING:
        await pool.execute(
            "INSERT INTO jobs (job_type, queue, status, run_after, runner_id, heartbeat_at) "
            "SELECT 'noop', $1, $2, now() + $3::text::interval, $4, "
            "       CASE WHEN $4::text IS NOT NULL THEN now() END "
            "FROM generate_series(1, $5)",
            queue,
            status,
            due_in,
            runner,
            jobs,
        )
    await pool.execute("ANALYZE jobs")


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _reads_of_jobs(conn: asyncpg.Connection) -> tuple[int, int]:
    """Sequential scans of `jobs` so far, and index entries read from its indexes."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    seq_scans = await conn.fetchval(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'jobs'"
    )
    entries = await conn.fetchval(
        "SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = 'jobs'"
    )
    return int(seq_scans), int(entries)


async def test_job_counts_read_only_the_waiting_jobs_and_estimate_the_finished_ones(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        if conn.get_server_version() < (15, 0):
            pytest.skip("pg_stat_force_next_flush() needs PostgreSQL 15")
    await pool.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
    try:
        await _fill(pool)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(q.JOB_COUNTS_PLAN)
            plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + q.JOB_COUNT_UNFINISHED_BY_QUEUE)
            text = await conn.fetch("EXPLAIN " + q.JOB_COUNT_UNFINISHED_BY_QUEUE)
        print("\n".join(row[0] for row in text))  # the plan, shown with `pytest -s`
        plan = json.loads(plan) if isinstance(plan, str) else plan
        nodes = _nodes(plan[0]["Plan"])
        scans = {(n["Node Type"], n.get("Index Name")) for n in nodes if "Relation Name" in n}
        assert all(kind != "Seq Scan" for kind, _ in scans), scans
        used = {index for _, index in scans}
        assert {"jobs_claim_open_idx", "jobs_scheduled_idx", "jobs_claim_retry_idx"} <= used

        async with pool.acquire() as conn:
            seq_before, entries_before = await _reads_of_jobs(conn)
        counts = await MonitorStore(pool).job_counts()
        async with pool.acquire() as conn:
            seq_after, entries_after = await _reads_of_jobs(conn)
    finally:
        await pool.execute("ALTER TABLE jobs RESET (autovacuum_enabled)")

    assert counts.unfinished == {(status, queue): jobs for status, queue, jobs, *_ in WAITING}
    assert seq_after == seq_before
    # 665 jobs wait or run: their index entries, not the 210,000 finished jobs'.
    assert entries_after - entries_before < 2_000
    for status, jobs in FINISHED.items():
        assert counts.finished_estimate[status] == pytest.approx(jobs, rel=0.15), status
    assert set(counts.finished_estimate) == set(FINISHED)
