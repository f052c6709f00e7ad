"""The `connectra jobs` commands a person uses, as real processes: list, create --wait, watch,
requeue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import asyncpg
import pytest

from connectra.db.store import JobStore
from connectra.jobs import Job, NewJob
from tests.polling import eventually
from tests.processes import Process, Spawn, spawn

__all__ = ["spawn"]

QUIET = {"LOG_LEVEL": "ERROR"}


class Result(NamedTuple):
    """How a command ended: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str


Run = Callable[..., Awaitable[Result]]


@pytest.fixture
def run(database_url: str) -> Run:
    """Run `python -m connectra ARGS` on the test database to its end (several may run at
    once)."""

    async def command(*args: str) -> Result:
        env = {**os.environ, "DATABASE_URL": database_url, **QUIET}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "connectra", *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    return command


async def finished(process: Process, seconds: float = 20) -> Result:
    """Wait for a spawned command; how it ended."""
    code = await process.wait(seconds)
    return Result(code, process.output(), process.log_path.read_text())


async def fail_for_good(pool: asyncpg.Pool, job: Job) -> None:
    """Put a job in failed_final, as a runner would after its last attempt."""
    await pool.execute(
        "UPDATE jobs SET status = 'failed_final', attempts = 1 WHERE id = $1", job.id
    )


def table_uuids(table: str) -> list[str]:
    """The uuid column of a `jobs list` table, below its header."""
    return [line.split()[0] for line in table.splitlines()[1:]]


async def test_jobs_list_is_a_table_with_the_filters_of_the_api(
    run: Run, store: JobStore, pool: asyncpg.Pool
) -> None:
    noops = [await store.create(NewJob("noop", {})) for _ in range(3)]
    report = await store.create(NewJob("sleep", {"seconds": 0}, queue="reports"))
    await fail_for_good(pool, noops[0])
    newest_first = [str(job.uuid) for job in [report, *reversed(noops)]]

    next_page = str(noops[2].id)  # the id of the last job of the first page
    everything, failed, sleeps, reports, page, rest, empty, as_json = await asyncio.gather(
        run("jobs", "list"),
        run("jobs", "list", "--status", "failed_final", "--status", "aborted"),
        run("jobs", "list", "--type", "sleep"),
        run("jobs", "list", "--queue", "reports", "--queue", "nightly"),
        run("jobs", "list", "--limit", "2"),
        run("jobs", "list", "--limit", "2", "--after", next_page),
        run("jobs", "list", "--after", str(noops[0].id)),
        run("jobs", "list", "--json"),
    )
    code, table, err = everything
    assert (code, err) == (0, "")
    header = table.splitlines()[0]
    assert header.split() == ["UUID", "TYPE", "QUEUE", "STATUS", "PROGRESS", "ATTEMPTS", "AGE"]
    assert table_uuids(table) == newest_first
    assert table.splitlines()[-1].split()[1:6] == ["noop", "default", "failed_final", "-", "1/1"]
    assert table_uuids(failed[1]) == [str(noops[0].uuid)]
    assert table_uuids(sleeps[1]) == table_uuids(reports[1]) == [str(report.uuid)]

    assert table_uuids(page.out) == newest_first[:2]
    assert page.err == f"more jobs may follow: add --after {next_page}\n"
    assert table_uuids(rest.out) == newest_first[2:]
    assert "--after" in rest.err  # the page is full: more may follow (none do)
    assert empty == (0, "", "no jobs\n")

    listed = json.loads(as_json[1])
    assert [job["uuid"] for job in listed] == newest_first
    assert listed[-1]["status"] == "failed_final"


async def test_create_wait_exits_by_how_the_job_ends_and_watches_through_retries(
    spawn: Spawn, run: Run
) -> None:
    await spawn("jobs", "first_time", **QUIET)
    await spawn("jobs", "retry", **QUIET)
    fails = '{"seconds": 0, "fail_attempts": 5}'
    retried = ("--data", '{"seconds": 0, "fail_attempts": 1}', "--retry-count", "1")
    done, failed, recovered = await asyncio.gather(
        run("jobs", "create", "noop", "--wait"),
        run("jobs", "create", "sleep", "--data", fails, "--wait"),
        # The failed attempt waits 3 s for its retry: long enough for a poll (every 0.5 s) to
        # see it even when the machine is busy.
        run("jobs", "create", "sleep", *retried, "--retry-interval", "3", "--wait"),
    )
    code, out, err = done
    assert (code, json.loads(out)["status"]) == (0, "completed")
    job = json.loads(out)
    assert err.splitlines()[0] == f"job {job['uuid']} (noop); Ctrl-C stops watching, not the job"
    assert err.splitlines()[-1].startswith("completed  ")

    code, out, err = failed
    assert (code, json.loads(out)["status"]) == (1, "failed_final")
    assert err.splitlines()[-1].startswith("failed_final  ")

    code, out, err = recovered
    assert (code, json.loads(out)["status"], json.loads(out)["attempts"]) == (0, "completed", 2)
    states = [line.split("  ")[:2] for line in err.splitlines()[1:]]
    assert ["failed", "attempt 1/2"] in states  # a retry is due: still watched
    assert states[-1] == ["completed", "attempt 2/2"]


async def held_import(pool: asyncpg.Pool) -> dict[str, Any]:
    """An import a (pretend) runner is running: the test plays the runner with SQL."""
    row = await pool.fetchrow(
        "INSERT INTO jobs (job_type, data, status, runner_id, attempts, heartbeat_at) "
        "VALUES ('insert_csv_file', '{\"s3_key\": \"a.csv\"}', 'processing', 'test', 1, now()) "
        "RETURNING id, uuid"
    )
    assert row is not None
    return dict(row)


async def report(pool: asyncpg.Pool, job_id: int, ok: int, failed: int, offset: int) -> None:
    """Report progress and save a checkpoint as an import does after each batch."""
    checkpoint = {"offset": offset, "line": ok + failed + 1, "processed": ok, "failed": failed,
                  "errors": [], "header": ["uuid"], "size": 2 * 1024**2, "etag": "e"}  # fmt: skip
    progress = {"number_records_processed": ok, "number_records_failed": failed}
    await pool.execute(
        "UPDATE jobs SET job_response = job_response || $2, checkpoint = $3 WHERE id = $1",
        job_id, progress, checkpoint,
    )  # fmt: skip


async def test_watch_prints_a_line_per_change_of_an_import_when_not_on_a_terminal(
    spawn: Spawn, pool: asyncpg.Pool
) -> None:
    job = await held_import(pool)
    watch = await spawn("jobs", "watch", str(job["uuid"]), **QUIET)

    async def shows(text: str) -> bool:
        return text in watch.log_path.read_text()

    await eventually(lambda: shows("processing"), within=30)  # the process has started
    await report(pool, job["id"], 1200, 3, 1024**2)
    await eventually(lambda: shows("1,200 ok / 3 failed  50% of 2.0 MiB"), within=5)
    await report(pool, job["id"], 2400, 5, 2 * 1024**2)
    await eventually(lambda: shows("2,400 ok / 5 failed  100% of 2.0 MiB"), within=5)
    await pool.execute(
        "UPDATE jobs SET status = 'completed', runner_id = NULL WHERE id = $1", job["id"]
    )
    code, out, err = await finished(watch)
    assert (code, json.loads(out)["status"]) == (0, "completed")
    lines = [line.rsplit("  ", 1)[0] for line in err.splitlines()[1:]]
    assert lines == [
        "processing",
        "processing  1,200 ok / 3 failed  50% of 2.0 MiB",
        "processing  2,400 ok / 5 failed  100% of 2.0 MiB",
        "completed  2,400 ok / 5 failed",
    ]


async def test_watch_stops_at_its_timeout_with_124_and_the_job_as_it_stands(
    run: Run, store: JobStore
) -> None:
    job = await store.create(NewJob("noop", {}))
    watched, misused = await asyncio.gather(
        run("jobs", "watch", str(job.uuid), "--timeout", "0.3"),
        run("jobs", "create", "noop", "--timeout", "1"),
    )
    assert (watched.code, json.loads(watched.out)["status"]) == (124, "open")
    assert watched.err.splitlines()[-1] == f"timed out after 0.3 s; job {job.uuid} is open"
    assert misused.code == 2
    assert "--timeout needs --wait" in misused.err


async def test_ctrl_c_stops_watching_with_130_and_leaves_the_job_alone(
    spawn: Spawn, store: JobStore
) -> None:
    job = await store.create(NewJob("noop", {}))
    watch = await spawn("jobs", "watch", str(job.uuid), **QUIET)

    async def watching() -> bool:
        return any(line.startswith("open  ") for line in watch.log_lines())

    await eventually(watching, within=30)  # the process has started
    watch.send(signal.SIGINT)
    code, out, err = await finished(watch)
    assert (code, out) == (130, "")
    assert err.splitlines()[-1] == f"stopped watching; job {job.uuid} is open and goes on"
    assert await store.get(job.uuid) == job


async def test_requeue_reopens_a_failed_job_and_retry_now_is_its_deprecated_name(
    run: Run, store: JobStore, pool: asyncpg.Pool
) -> None:
    first, second, waiting = [await store.create(NewJob("noop", {})) for _ in range(3)]
    await fail_for_good(pool, first)
    await fail_for_good(pool, second)
    requeued, renamed, refused, help_text = await asyncio.gather(
        run("jobs", "requeue", str(first.uuid)),
        run("jobs", "retry-now", str(second.uuid)),
        run("jobs", "requeue", str(waiting.uuid)),
        run("jobs", "--help"),
    )
    assert requeued[0] == renamed[0] == 0
    assert (json.loads(requeued[1])["status"], requeued[2]) == ("open", "")
    assert json.loads(renamed[1])["status"] == "open"
    assert renamed[2] == "warning: 'jobs retry-now' is deprecated; use 'jobs requeue'\n"
    for job in (first, second):
        reopened = await store.get(job.uuid)
        assert (reopened.status, reopened.attempts) == ("open", 0)
    assert "requeue" in help_text[1]
    assert "retry-now" not in help_text[1]
    assert refused.code == 1
    assert refused.err.startswith("ERR_JOB_NOT_RETRYABLE: ")
