"""Bounded soak test (issue #4): three real runner processes, one SIGKILLed every few seconds.

While jobs keep arriving (2000 short `sleep` jobs and 20 `insert_csv_file` imports of a few
thousand contacts each, in batches of 200 rows so imports die half-way), a seeded RNG picks a
runner to SIGKILL every couple of seconds (the first import seen running, then half the time a
runner that is importing, if any) and
restarts it at once. Leases are short, so the survivors rescue the dead runner's jobs (queued
ones back to `open`, running ones to `failed`, which the retry runner re-runs). After the
chaos the fleet drains, then every job must be finished exactly once and the imported rows
must match the generated files row for row.

`CONNECTRA_SOAK_SECONDS` sets the chaos period (default 60), `CONNECTRA_SOAK_SEED` the RNG seed.
Marked `soak`, so `make test` leaves it out: `make soak` (or `pytest -m soak`) runs it, and CI
runs both. Run with `-s` to see the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectra.objectstore import ObjectStore
from tests.services import moto_process_env

pytestmark = pytest.mark.soak

SOAK_SECONDS = float(os.environ.get("CONNECTRA_SOAK_SECONDS", "60"))
SEED = int(os.environ.get("CONNECTRA_SOAK_SEED", "4"))
DRAIN_SECONDS = 60.0
SLEEP_JOBS = 2000
IMPORT_JOBS = 20
IMPORT_ROWS = (2000, 5000)
RETRY_COUNT = 25
# Jobs arrive over the first part of the chaos period, so kills always find work in flight.
ARRIVAL_SHARE = 0.75
ARRIVAL_WAVE_SECONDS = 0.5
# Seconds between kills; shorter for a chaos period under a minute, so it still kills often.
KILL_EVERY = (1.5 * min(1.0, SOAK_SECONDS / 60), 3.5 * min(1.0, SOAK_SECONDS / 60))
# Share of kills aimed at a runner that is importing, so imports do die half-way.
TARGET_IMPORTS = 0.5
ROLES = ("first_time", "first_time", "retry")
LEASE_SECONDS = 1.5
RUNNER_SETTINGS = {
    "HEARTBEAT_INTERVAL_SECONDS": "0.3",
    "LEASE_SECONDS": str(LEASE_SECONDS),
    "TICKER_INTERVAL_SECONDS": "0.2",
    "BATCH_SIZE_FOR_INSERTION": "200",
    "PARALLEL_JOBS": "4",
    "JOB_IN_QUEUE_SIZE": "20",
    "SHUTDOWN_GRACE_SECONDS": "5",
    "LOG_LEVEL": "INFO",
}
HELD_OR_WAITING = ("open", "in_queue", "processing", "failed", "retry_in_queued", "retrying")
CONTACT_HEADER = ("uuid", "first_name", "last_name", "email", "country")


@dataclass
class Runner:
    """One runner slot: its role, its current process, and every log file it ever wrote."""

    role: str
    proc: asyncio.subprocess.Process | None = None
    logs: list[Path] = field(default_factory=list)


class Fleet:
    """The runner processes; a killed slot is restarted with fresh log files."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.runners = [Runner(role) for role in ROLES]
        self.starts = 0

    async def start(self, index: int) -> None:
        runner = self.runners[index]
        self.starts += 1
        stem = f"runner{index}-{runner.role}-{len(runner.logs)}"
        log_path, out_path = self.folder / f"{stem}.log", self.folder / f"{stem}.out"
        with log_path.open("wb") as log_file, out_path.open("wb") as out_file:
            runner.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "connectra", "jobs", runner.role,
                env=self.env, cwd=self.folder, stdout=out_file, stderr=log_file,
            )  # fmt: skip
        runner.logs.append(log_path)

    async def kill(self, index: int) -> None:
        proc = self.runners[index].proc
        assert proc is not None
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def ensure_all_running(self) -> None:
        for index, runner in enumerate(self.runners):
            if runner.proc is None or runner.proc.returncode is not None:
                await self.start(index)

    async def stop(self, within: float) -> list[int | None]:
        """SIGTERM every live runner; their exit codes (None: did not exit in time)."""
        procs = [r.proc for r in self.runners if r.proc is not None]
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), within)
            codes.append(proc.returncode)
        return codes

    async def kill_leftovers(self) -> None:
        for runner in self.runners:
            if runner.proc is not None and runner.proc.returncode is None:
                runner.proc.kill()
                await runner.proc.wait()

    def log_paths(self) -> list[Path]:
        return [path for runner in self.runners for path in runner.logs]


@pytest.fixture
async def fleet(
    database_url: str, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> AsyncIterator[Fleet]:
    """Unstarted runner slots on the test database and moto S3; leftovers SIGKILLed after."""
    env = {k: v for k, v in os.environ.items() if k != "ELASTICSEARCH_URL"}
    env.update(
        RUNNER_SETTINGS,
        **moto_process_env(s3_endpoint, s3_bucket),
        DATABASE_URL=database_url,
        METRICS_PORT="0",  # several runners on one machine: no listener each
    )
    fleet = Fleet(env, tmp_path)
    try:
        yield fleet
    finally:
        await fleet.kill_leftovers()


@dataclass(frozen=True)
class SourceFile:
    """A generated contacts CSV: its key and the uuids and emails of its rows."""

    key: str
    rows: list[tuple[str, str]]

    def body(self) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CONTACT_HEADER)
        for n, (row_uuid, email) in enumerate(self.rows):
            writer.writerow((row_uuid, f"First{n}", f"Last{n}", email, ("US", "DE", "FR")[n % 3]))
        return out.getvalue().encode()


def make_sources(rng: random.Random) -> list[SourceFile]:
    """IMPORT_JOBS files whose uuids are distinct across all of them."""
    seen: set[str] = set()
    sources = []
    for index in range(IMPORT_JOBS):
        rows: list[tuple[str, str]] = []
        wanted = rng.randint(*IMPORT_ROWS)
        while len(rows) < wanted:
            row_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            if row_uuid not in seen:
                seen.add(row_uuid)
                rows.append((row_uuid, f"c{len(seen)}@example.com"))
        sources.append(SourceFile(f"soak/contacts-{index:02d}.csv", rows))
    return sources


def checksum(rows: list[tuple[str, str]]) -> str:
    """md5 of `uuid:email` lines in uuid order, as `CHECKSUM_SQL` computes it."""
    text = ",".join(f"{u}:{e}" for u, e in sorted(rows))
    return hashlib.md5(text.encode()).hexdigest()


CHECKSUM_SQL = "SELECT md5(string_agg(uuid::text || ':' || email, ',' ORDER BY uuid)) FROM contacts"


async def produce(
    pool: asyncpg.Pool, rng: random.Random, sources: list[SourceFile], bucket: str, within: float
) -> None:
    """Insert every job in waves spread over `within` seconds, in a seeded random order."""
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("sleep", {"seconds": round(rng.uniform(0, 0.05), 4)}) for _ in range(SLEEP_JOBS)
    ]
    jobs += [
        ("insert_csv_file", {"s3_key": s.key, "s3_bucket": bucket, "service": "contact"})
        for s in sources
    ]
    rng.shuffle(jobs)
    waves = max(1, int(within / ARRIVAL_WAVE_SECONDS))
    per_wave = -(-len(jobs) // waves)
    started = time.monotonic()
    for wave in range(waves):
        batch = jobs[wave * per_wave : (wave + 1) * per_wave]
        if batch:
            await pool.executemany(
                "INSERT INTO jobs (job_type, data, retry_count, retry_interval) "
                "VALUES ($1, $2, $3, 0)",
                [(job_type, data, RETRY_COUNT) for job_type, data in batch],
            )
        await asyncio.sleep(
            max(0.0, started + (wave + 1) * ARRIVAL_WAVE_SECONDS - time.monotonic())
        )


async def importing_slots(fleet: Fleet, pool: asyncpg.Pool) -> list[int]:
    """The fleet slots whose runner is in the middle of an import right now."""
    rows = await pool.fetch(
        "SELECT runner_id FROM jobs WHERE job_type = 'insert_csv_file' "
        "AND status IN ('processing', 'retrying') AND runner_id IS NOT NULL ORDER BY id"
    )
    pids = {int(row["runner_id"].split(":")[-2]) for row in rows}  # kind:host:pid:nonce
    return [
        i
        for i, runner in enumerate(fleet.runners)
        if runner.proc is not None and runner.proc.pid in pids
    ]


async def next_victim(
    fleet: Fleet, pool: asyncpg.Pool, rng: random.Random, pause: float, hit_import: bool
) -> tuple[int, bool]:
    """After `pause`, a runner to kill, and whether it was importing.

    Until an import has been hit, the pause is spent watching for a running import, and the
    first one seen is killed at once (imports are short on a fast machine). After that, half
    the kills go to an importing runner when there is one, the rest to any runner.
    """
    deadline = time.monotonic() + pause
    while not hit_import and time.monotonic() < deadline:
        if slots := await importing_slots(fleet, pool):
            return rng.choice(slots), True
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    if rng.random() < TARGET_IMPORTS and (slots := await importing_slots(fleet, pool)):
        return rng.choice(slots), True
    return rng.randrange(len(fleet.runners)), False


async def chaos(fleet: Fleet, pool: asyncpg.Pool, rng: random.Random, until: float) -> int:
    """SIGKILL a runner every few seconds and restart it at once; the number of kills."""
    kills = 0
    hit_import = False
    while True:
        pause = rng.uniform(*KILL_EVERY)
        if time.monotonic() + pause >= until:
            return kills
        victim, importing = await next_victim(fleet, pool, rng, pause, hit_import)
        hit_import = hit_import or importing
        await fleet.kill(victim)
        kills += 1
        await fleet.start(victim)


async def status_counts(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status ORDER BY 1")
    return {row["status"]: row["n"] for row in rows}


async def unfinished(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT uuid, job_type, status, runner_id, heartbeat_at, run_after, attempts, "
            "rescue_count, job_response FROM jobs WHERE status = ANY($1::text[]) ORDER BY id",
            list(HELD_OR_WAITING),
        )
    )


async def drain(pool: asyncpg.Pool, within: float) -> float:
    """Wait until no job is waiting or held; the seconds it took, or fail with the stragglers."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if not await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE status = ANY($1::text[])", list(HELD_OR_WAITING)
        ):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    stuck = await unfinished(pool)
    sample = "\n".join(
        f"  {r['uuid']} {r['job_type']} {r['status']} runner={r['runner_id']} "
        f"heartbeat={r['heartbeat_at']} run_after={r['run_after']} attempts={r['attempts']} "
        f"rescues={r['rescue_count']} response={r['job_response']}"
        for r in stuck[:20]
    )
    pytest.fail(
        f"{len(stuck)} jobs not finished {within:g}s after the chaos; "
        f"states {await status_counts(pool)}:\n{sample}"
    )


async def snapshot(pool: asyncpg.Pool) -> dict[str, tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT uuid, status, attempts, completed_at, updated_at, runner_id FROM jobs"
    )
    return {str(r["uuid"]): tuple(r.values())[1:] for r in rows}


def read_events(paths: list[Path]) -> list[dict[str, Any]]:
    """Every JSON log event; a line cut short by SIGKILL is skipped."""
    events = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
    return events


async def test_runners_survive_random_sigkills_without_losing_or_repeating_work(
    fleet: Fleet,
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    rng = random.Random(SEED)
    sources = make_sources(rng)
    for source in sources:
        await object_store.client.put_object(Bucket=s3_bucket, Key=source.key, Body=source.body())
    total_jobs = SLEEP_JOBS + IMPORT_JOBS

    began = time.monotonic()
    for index in range(len(fleet.runners)):
        await fleet.start(index)
    until = began + SOAK_SECONDS
    _, kills = await asyncio.gather(
        produce(pool, rng, sources, s3_bucket, SOAK_SECONDS * ARRIVAL_SHARE),
        chaos(fleet, pool, rng, until),
    )
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    chaos_seconds = time.monotonic() - began
    at_chaos_end = await status_counts(pool)
    await fleet.ensure_all_running()  # a slot may have died on its own; the drain needs all
    drain_seconds = await drain(pool, DRAIN_SECONDS)

    # Nothing moves once finished: no rescue, retry or late write after a lease has passed.
    before = await snapshot(pool)
    await asyncio.sleep(2 * LEASE_SECONDS + 0.5)
    after = await snapshot(pool)
    moved = [u for u in before if before[u] != after[u]]
    assert not moved, f"{len(moved)} finished jobs changed afterwards, e.g. {moved[:5]}"
    exit_codes = await fleet.stop(within=30)

    counts = await status_counts(pool)
    stats = await pool.fetchrow(
        "SELECT count(*) AS jobs, sum(rescue_count) AS rescues, "
        "count(*) FILTER (WHERE rescue_count > 0) AS rescued_jobs, "
        "count(*) FILTER (WHERE rescue_count > 0 AND job_type = 'insert_csv_file') "
        "  AS rescued_imports, "
        "count(*) FILTER (WHERE attempts > 1) AS retried_jobs, max(attempts) AS max_attempts, "
        "count(*) FILTER (WHERE completed_at IS NULL) AS without_completed_at, "
        "count(*) FILTER (WHERE runner_id IS NOT NULL OR heartbeat_at IS NOT NULL) AS still_held "
        "FROM jobs"
    )
    events = read_events(fleet.log_paths())
    starts = Counter(
        (e["job_uuid"], e.get("attempt")) for e in events if e.get("action") == "job_start"
    )
    completes = Counter(e["job_uuid"] for e in events if e.get("action") == "job_complete")
    print(
        f"\nsoak: seed {SEED}, {stats['jobs']} jobs ({SLEEP_JOBS} sleep, {IMPORT_JOBS} imports "
        f"of {sum(len(s.rows) for s in sources)} rows), chaos {chaos_seconds:.1f}s, "
        f"drain {drain_seconds:.1f}s\n"
        f"soak: {kills} kills, {fleet.starts} process starts, {stats['rescues']} rescues "
        f"({stats['rescued_jobs']} jobs, {stats['rescued_imports']} imports), "
        f"{stats['retried_jobs']} jobs run more than once, max attempts {stats['max_attempts']}, "
        f"{sum(starts.values())} job starts logged\n"
        f"soak: states at chaos end {at_chaos_end}; final {counts}; exit codes {exit_codes}"
    )

    # Every job finished, completed, and released by its runner.
    assert stats["jobs"] == total_jobs
    assert counts == {"completed": total_jobs}, (
        f"final states {counts}; failed_final/aborted: "
        + str(
            await pool.fetch(
                "SELECT uuid, job_type, status, attempts, rescue_count, job_response FROM jobs "
                "WHERE status <> 'completed' LIMIT 10"
            )
        )
    )
    assert stats["without_completed_at"] == 0
    assert stats["still_held"] == 0

    # Exactly once: no attempt started twice, no job completed twice, nothing ran after the
    # attempt that completed it. (A SIGKILL may cut a log line, never add one.)
    twice_started = [key for key, n in starts.items() if n > 1]
    assert not twice_started, f"attempts started more than once: {twice_started[:10]}"
    twice_completed = [u for u, n in completes.items() if n > 1]
    assert not twice_completed, f"jobs completed more than once: {twice_completed[:10]}"
    final_attempts = {
        str(r["uuid"]): r["attempts"] for r in await pool.fetch("SELECT uuid, attempts FROM jobs")
    }
    late = [
        (u, attempt, final_attempts.get(u))
        for (u, attempt), _ in starts.items()
        if isinstance(attempt, int) and attempt > final_attempts.get(u, 0)
    ]
    assert not late, f"attempts started after the recorded final one: {late[:10]}"
    for e in events:
        if e.get("action") == "job_complete" and isinstance(e.get("attempt"), int):
            assert e["attempt"] == final_attempts[e["job_uuid"]], e

    # The imports: every row of every file, once, with its content.
    responses = {
        r["key"]: r["job_response"]
        for r in await pool.fetch(
            "SELECT data->>'s3_key' AS key, job_response FROM jobs "
            "WHERE job_type = 'insert_csv_file'"
        )
    }
    for source in sources:
        response = responses[source.key]
        assert response["number_records_processed"] == len(source.rows), (source.key, response)
        assert response["number_records_failed"] == 0, (source.key, response)
    all_rows = [row for source in sources for row in source.rows]
    assert await pool.fetchval("SELECT count(*) FROM contacts") == len(all_rows)
    assert await pool.fetchval(CHECKSUM_SQL) == checksum(all_rows)

    # The test proved something: runners died, and their jobs were rescued.
    assert kills >= 5
    assert (stats["rescues"] or 0) >= 1
    assert stats["rescued_imports"] >= 1, "no import was killed half-way"
    assert exit_codes == [0] * len(ROLES), f"a runner did not stop cleanly: {exit_codes}"
