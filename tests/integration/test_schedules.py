"""Cron schedules on real PostgreSQL: exactly one job per tick however many schedulers race,
the missed-tick rule, pause and resume, schedules declared in code, the CLI, the API, and three
real runner processes."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel

from connectra.db.pool import create_pool
from connectra.db.schedule_store import ScheduleStore
from connectra.db.store import JobStore
from connectra.errors import ScheduleExistsError, ScheduleNotFoundError, UnknownJobTypeError
from connectra.processors.base import JobContext, JobTypeRegistry, tick_job
from connectra.processors.registry import default_registry
from connectra.runners.scheduler import Scheduler
from connectra.schedules import Schedule
from tests.api_client import Client, started
from tests.polling import eventually
from tests.processes import Spawn, spawn

__all__ = ["spawn"]  # the fixture, requested by name

KEY = {"X-API-Key": "k1"}
build = partial(tick_job, default_registry())


def at(text: str) -> datetime:
    """A UTC moment from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def schedules(pool: asyncpg.Pool) -> ScheduleStore:
    return ScheduleStore(pool)


async def add(
    schedules: ScheduleStore,
    schedule: Schedule,
    created_at: datetime,
    last_tick_at: datetime | None = None,
) -> None:
    """Add a schedule as if it had been added at `created_at` and last fired at `last_tick_at`."""
    await schedules.add(schedule)
    await schedules.pool.execute(
        "UPDATE schedules SET created_at = $2, last_tick_at = $3 WHERE name = $1",
        schedule.name,
        created_at,
        last_tick_at,
    )


async def schedule_jobs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT schedule_name, schedule_tick_at, job_type, data, queue, priority, status "
        "FROM jobs WHERE schedule_name IS NOT NULL ORDER BY schedule_tick_at"
    )


# -- firing --------------------------------------------------------------------------------------


async def test_three_schedulers_on_three_pools_create_exactly_one_job_per_tick(
    database_url: str, schedules: ScheduleStore
) -> None:
    await add(schedules, Schedule("race", "*/5 * * * *", "noop"), at("2030-01-01 09:58"))
    await add(schedules, Schedule("hourly", "0 * * * *", "noop"), at("2030-01-01 09:58"))
    pools = [await create_pool(database_url, max_size=4) for _ in range(3)]
    try:
        racers = [ScheduleStore(pool) for pool in pools]
        for minute in range(0, 65, 5):
            now = at("2030-01-01 10:00") + timedelta(minutes=minute, seconds=1)
            rounds = await asyncio.gather(
                *(racer.fire_due(now, build) for racer in racers for _ in range(3))
            )
            fired = [f.stored.name for result in rounds for f in result.fired]
            assert sorted(fired) == (["hourly", "race"] if minute in (0, 60) else ["race"])
    finally:
        for pool in pools:
            await pool.close()
    ticks = Counter(
        (row["schedule_name"], row["schedule_tick_at"])
        for row in await schedule_jobs(schedules.pool)
    )
    assert set(ticks.values()) == {1}
    assert sum(1 for name, _ in ticks if name == "race") == 13
    assert sorted(tick for name, tick in ticks if name == "hourly") == [
        at("2030-01-01 10:00"),
        at("2030-01-01 11:00"),
    ]


async def test_a_tick_is_created_as_an_open_job_of_the_schedules_type(
    schedules: ScheduleStore, store: JobStore
) -> None:
    await add(
        schedules,
        Schedule("nap", "*/5 * * * *", "sleep", {"seconds": 2}, queue="naps", priority=7),
        at("2030-01-01 09:58"),
    )
    result = await schedules.fire_due(at("2030-01-01 10:00:01"), build)
    [(stored, tick, job)] = result.fired
    assert (stored.name, tick) == ("nap", at("2030-01-01 10:00"))
    assert (job.status, job.job_type, job.queue, job.priority) == ("open", "sleep", "naps", 7)
    assert job.data == {"seconds": 2.0, "fail_attempts": 0}  # validated and normalised
    assert job.schedule_name == "nap"
    assert (await store.get(job.uuid)).schedule_name == "nap"
    assert result.next_tick_at == at("2030-01-01 10:05")
    assert (await schedules.get("nap")).last_tick_at == at("2030-01-01 10:00")


async def test_a_new_schedule_does_not_fire_the_tick_before_it_was_added(
    schedules: ScheduleStore,
) -> None:
    await add(schedules, Schedule("new", "*/5 * * * *", "noop"), at("2030-01-01 10:02:30"))
    assert (await schedules.fire_due(at("2030-01-01 10:04:59"), build)).fired == []
    [fired] = (await schedules.fire_due(at("2030-01-01 10:05:00.5"), build)).fired
    assert fired.tick == at("2030-01-01 10:05")


async def test_a_scheduler_back_after_missing_three_ticks_fires_only_the_latest_once(
    schedules: ScheduleStore,
) -> None:
    await add(
        schedules,
        Schedule("catch-up", "*/5 * * * *", "noop"),
        created_at=at("2030-01-01 09:00"),
        last_tick_at=at("2030-01-01 10:00"),
    )
    now = at("2030-01-01 10:17")  # 10:05, 10:10 and 10:15 were missed
    [fired] = (await schedules.fire_due(now, build)).fired
    assert fired.tick == at("2030-01-01 10:15")
    assert (await schedules.fire_due(now, build)).fired == []
    assert [row["schedule_tick_at"] for row in await schedule_jobs(schedules.pool)] == [
        at("2030-01-01 10:15")
    ]


async def test_last_tick_not_the_jobs_table_stops_a_stale_reader_from_firing_twice(
    schedules: ScheduleStore,
) -> None:
    await add(schedules, Schedule("monthly", "0 0 1 * *", "noop"), at("2029-12-31 12:00"))
    stale = await schedules.get("monthly")  # read by a slow scheduler before the tick fired
    tick = at("2030-01-01 00:00")
    assert len((await schedules.fire_due(tick + timedelta(seconds=1), build)).fired) == 1
    await schedules.pool.execute("DELETE FROM jobs")  # retention removed the job
    assert await schedules.fire(stale, tick, build(stale.schedule)) is None
    assert await schedule_jobs(schedules.pool) == []


async def test_a_stale_reader_fires_nothing_once_the_schedule_is_paused_or_removed(
    schedules: ScheduleStore,
) -> None:
    await add(schedules, Schedule("gone", "*/5 * * * *", "noop"), at("2030-01-01 09:58"))
    stale = await schedules.get("gone")
    tick = at("2030-01-01 10:00")
    await schedules.pause("gone")
    assert await schedules.fire(stale, tick, build(stale.schedule)) is None
    await schedules.remove("gone")
    assert await schedules.fire(stale, tick, build(stale.schedule)) is None
    assert await schedule_jobs(schedules.pool) == []


async def test_paused_schedules_do_not_fire_and_resuming_skips_what_was_missed(
    schedules: ScheduleStore,
) -> None:
    now = await schedules.now()
    every_minute = Schedule("paused", "* * * * *", "noop")
    latest = every_minute.latest_tick(now)
    await add(schedules, every_minute, now - timedelta(hours=1), latest - timedelta(minutes=3))
    paused = await schedules.pause("paused")
    assert paused.schedule.paused
    assert (await schedules.fire_due(now, build)).fired == []
    assert (await schedules.fire_due(now + timedelta(minutes=5), build)).fired == []

    resumed = await schedules.resume("paused")
    assert not resumed.schedule.paused
    assert resumed.last_tick_at is not None
    assert resumed.last_tick_at >= latest
    assert (await schedules.fire_due(now, build)).fired == []
    later = resumed.last_tick_at + timedelta(minutes=1, seconds=1)
    [fired] = (await schedules.fire_due(later, build)).fired
    assert fired.tick == resumed.last_tick_at + timedelta(minutes=1)
    assert (await schedules.resume("paused")).last_tick_at == fired.tick  # already active


async def test_a_schedule_of_a_job_type_this_process_does_not_know_is_skipped_not_lost(
    schedules: ScheduleStore, caplog: pytest.LogCaptureFixture
) -> None:
    await add(schedules, Schedule("elsewhere", "*/5 * * * *", "reindex"), at("2030-01-01 09:58"))
    now = at("2030-01-01 10:00:01")
    result = await schedules.fire_due(now, build)
    assert result.fired == []
    [(name, error)] = result.skipped
    assert (name, type(error)) == ("elsewhere", UnknownJobTypeError)
    assert (await schedules.get("elsewhere")).last_tick_at is None

    scheduler = Scheduler(schedules, default_registry())
    with caplog.at_level(logging.WARNING, logger="connectra.runners.scheduler"):
        await scheduler.run_once(now)
        await scheduler.run_once(now)
    skipped = [r for r in caplog.records if getattr(r, "action", None) == "schedule_skipped"]
    assert len(skipped) == 1, "a skipped schedule is logged once, not every round"

    knows_it = reindex_registry()
    [fired] = (await schedules.fire_due(now, partial(tick_job, knows_it))).fired
    assert fired.tick == at("2030-01-01 10:00")


class Reindex(BaseModel):
    index: str = "contacts"


def reindex_registry() -> JobTypeRegistry:
    """A process's registry with a `reindex` job type declared every 5 minutes in code."""
    registry = default_registry()

    @registry.periodic("*/5 * * * *", name="reindex-often", data={"index": "companies"})
    @registry.job()
    async def reindex(ctx: JobContext, data: Reindex) -> None: ...

    return registry


# -- schedules declared in code ------------------------------------------------------------------


async def test_code_schedules_are_upserted_keeping_paused_and_last_tick(
    schedules: ScheduleStore,
) -> None:
    first = Schedule("nightly", "0 2 * * *", "noop")
    assert await schedules.declare([first]) == ["nightly"]
    await schedules.pause("nightly")
    await schedules.pool.execute(
        "UPDATE schedules SET last_tick_at = $1 WHERE name = 'nightly'", at("2030-01-01 02:00")
    )
    changed = Schedule("nightly", "0 3 * * *", "sleep", {"seconds": 0}, "Europe/Paris", "slow", 5)
    assert await schedules.declare([changed]) == ["nightly"]
    assert await schedules.declare([changed]) == [], "an unchanged declaration writes nothing"
    stored = await schedules.get("nightly")
    assert stored.schedule == Schedule(
        "nightly", "0 3 * * *", "sleep", {"seconds": 0}, "Europe/Paris", "slow", 5, paused=True
    )
    assert (stored.source, stored.last_tick_at) == ("code", at("2030-01-01 02:00"))


async def test_a_scheduler_declares_its_registrys_schedules_and_runs_until_stopped(
    schedules: ScheduleStore,
) -> None:
    await schedules.add(Schedule("reindex-often", "* * * * *", "noop"))  # taken over by code
    scheduler = Scheduler(schedules, reindex_registry(), max_sleep=0.05)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(scheduler.run(stop))

        async def declared() -> bool:
            return (await schedules.get("reindex-often")).source == "code"

        await eventually(declared, within=5)
        stop.set()
    stored = await schedules.get("reindex-often")
    assert (stored.schedule.job_type, stored.schedule.data) == ("reindex", {"index": "companies"})


async def test_names_are_unique_and_unknown_names_are_not_found(schedules: ScheduleStore) -> None:
    await schedules.add(Schedule("once", "* * * * *", "noop"))
    with pytest.raises(ScheduleExistsError, match="'once' exists already"):
        await schedules.add(Schedule("once", "0 * * * *", "noop"))
    for change in (schedules.remove, schedules.pause, schedules.resume, schedules.get):
        with pytest.raises(ScheduleNotFoundError):
            await change("missing")
    await schedules.remove("once")
    assert await schedules.all() == []


# -- HTTP API ------------------------------------------------------------------------------------


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    async for client in started(store):
        yield client


async def call(
    client: Client, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await client.request(method, path, json=body, headers=KEY)
    return response.status, await response.json()


async def test_api_adds_lists_pauses_resumes_and_removes_schedules(client: Client) -> None:
    body = {
        "name": "nap",
        "cron": "*/10 * * * *",
        "job_type": "sleep",
        "job_data": {"seconds": 1},
        "timezone": "Europe/Paris",
        "priority": 3,
    }
    status, created = await call(client, "POST", "/common/schedules", body)
    assert (status, created["success"], created["message"]) == (
        201,
        True,
        "Schedule created successfully",
    )
    shown = created["data"]
    assert {k: shown[k] for k in ("name", "cron", "timezone", "job_type", "data")} == {
        "name": "nap",
        "cron": "*/10 * * * *",
        "timezone": "Europe/Paris",
        "job_type": "sleep",
        "data": {"seconds": 1},
    }
    assert (shown["queue"], shown["priority"], shown["paused"], shown["source"]) == (
        None,
        3,
        False,
        "api",
    )
    assert shown["last_tick_at"] is None
    assert shown["next_tick_at"].endswith("Z")

    status, listed = await call(client, "GET", "/common/schedules")
    assert (status, [s["name"] for s in listed["data"]]) == (200, ["nap"])

    status, paused = await call(client, "POST", "/common/schedules/nap/pause")
    assert (status, paused["data"]["paused"], paused["data"]["next_tick_at"]) == (200, True, None)
    status, resumed = await call(client, "POST", "/common/schedules/nap/resume")
    assert (status, resumed["data"]["paused"]) == (200, False)

    status, removed = await call(client, "DELETE", "/common/schedules/nap")
    assert (status, removed["data"]["name"]) == (200, "nap")
    status, listed = await call(client, "GET", "/common/schedules")
    assert listed["data"] == []


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"cron": "*/5 * * * * *"}, 400, "ERR_INVALID_SCHEDULE"),
        ({"cron": "61 * * * *"}, 400, "ERR_INVALID_SCHEDULE"),
        ({"cron": None}, 400, "ERR_INVALID_SCHEDULE"),
        ({"name": "has spaces"}, 400, "ERR_INVALID_SCHEDULE"),
        ({"timezone": "Mars/Olympus"}, 400, "ERR_INVALID_SCHEDULE"),
        ({"job_type": "reindex"}, 400, "ERR_UNKNOWN_JOB_TYPE"),
        ({"job_type": None}, 400, "ERR_MISSING_JOB_TYPE"),
        ({"job_type": 3}, 400, "ERR_INVALID_JOB_TYPE"),
        ({"job_data": {"seconds": -1}}, 400, "ERR_INVALID_JOB_DATA"),
        ({"job_data": [1]}, 400, "ERR_INVALID_JOB_DATA"),
        ({"queue": "no spaces"}, 400, "ERR_INVALID_QUEUE"),
        ({"priority": 1000}, 400, "ERR_INVALID_PRIORITY"),
        ({"name": "taken"}, 409, "ERR_SCHEDULE_EXISTS"),
    ],
)
async def test_api_refuses_a_bad_schedule_with_its_code(
    client: Client, change: dict[str, Any], status: int, code: str
) -> None:
    taken = {"name": "taken", "cron": "* * * * *", "job_type": "noop"}
    assert (await call(client, "POST", "/common/schedules", taken))[0] == 201
    body = {"name": "new", "cron": "*/5 * * * *", "job_type": "sleep", "job_data": {}} | change
    answer = await call(client, "POST", "/common/schedules", body)
    assert (answer[0], answer[1]["success"]) == (status, False)
    assert answer[1]["error"].startswith(f"{code}: ")


async def test_api_unknown_schedule_names_are_404_and_a_key_is_required(client: Client) -> None:
    for method, path in [
        ("DELETE", "/common/schedules/missing"),
        ("POST", "/common/schedules/missing/pause"),
        ("POST", "/common/schedules/missing/resume"),
    ]:
        status, body = await call(client, method, path)
        assert status == 404
        assert body["error"].startswith("ERR_SCHEDULE_NOT_FOUND: ")
    response = await client.get("/common/schedules")
    assert response.status == 401


# -- command line ----------------------------------------------------------------------------------


async def run_cli(spawn: Spawn, *args: str) -> tuple[int, str, str]:
    """Run `connectra ARGS`; return the exit code, stdout and stderr."""
    process = await spawn(*args, LOG_LEVEL="ERROR")
    code = await process.wait(60)
    return code, process.output(), process.log_path.read_text()


async def test_cli_adds_lists_pauses_resumes_and_removes_schedules(spawn: Spawn) -> None:
    code, out, _ = await run_cli(
        spawn, "schedules", "add", "nap", "--cron", "*/10 * * * *", "--job-type", "sleep",
        "--data", '{"seconds": 1}', "--timezone", "Europe/Paris", "--queue", "naps",
    )  # fmt: skip
    assert code == 0
    added = json.loads(out)
    assert (added["name"], added["source"], added["queue"], added["data"]) == (
        "nap",
        "api",
        "naps",
        {"seconds": 1},
    )

    code, out, _ = await run_cli(spawn, "schedules", "list")
    header, row = out.splitlines()
    assert header.split() == [
        "NAME", "CRON", "TIMEZONE", "JOB", "TYPE", "QUEUE", "PAUSED", "LAST", "TICK", "NEXT",
        "TICK", "SOURCE",
    ]  # fmt: skip
    assert row.split()[:3] == ["nap", "*/10", "*"]
    assert row.split()[-4:-2] == ["no", "-"]  # not paused, never fired

    code, out, _ = await run_cli(spawn, "schedules", "pause", "nap")
    assert (code, json.loads(out)["paused"]) == (0, True)
    code, out, _ = await run_cli(spawn, "schedules", "list", "--json")
    assert [(s["name"], s["paused"]) for s in json.loads(out)] == [("nap", True)]
    code, out, _ = await run_cli(spawn, "schedules", "resume", "nap")
    assert (code, json.loads(out)["paused"]) == (0, False)
    code, out, _ = await run_cli(spawn, "schedules", "remove", "nap")
    assert (code, json.loads(out)["name"]) == (0, "nap")
    code, out, _ = await run_cli(spawn, "schedules", "list")
    assert (code, out.strip()) == (0, "no schedules")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--cron", "61 * * * *", "--job-type", "noop"], "ERR_INVALID_SCHEDULE: "),
        (["--cron", "* * * * * *", "--job-type", "noop"], "ERR_INVALID_SCHEDULE: "),
        (["--cron", "* * * * *", "--job-type", "reindex"], "ERR_UNKNOWN_JOB_TYPE: "),
        (
            ["--cron", "* * * * *", "--job-type", "sleep", "--data", '{"seconds": -1}'],
            "ERR_INVALID_JOB_DATA: ",
        ),
        (["--cron", "* * * * *", "--job-type", "noop", "--data", "[1]"], "ERR_INVALID_JOB_DATA: "),
        (
            ["--cron", "* * * * *", "--job-type", "noop", "--timezone", "Nowhere"],
            "ERR_INVALID_SCHEDULE: unknown time zone 'Nowhere'",
        ),
    ],
)
async def test_cli_refuses_a_bad_schedule_in_one_line_with_exit_code_1(
    spawn: Spawn, args: list[str], error: str
) -> None:
    code, _, err = await run_cli(spawn, "schedules", "add", "bad", *args)
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith(error)


async def test_cli_duplicate_and_unknown_names_exit_1_with_their_code(spawn: Spawn) -> None:
    args = ["schedules", "add", "once", "--cron", "* * * * *", "--job-type", "noop"]
    assert (await run_cli(spawn, *args))[0] == 0
    code, _, err = await run_cli(spawn, *args)
    assert (code, err.split(":")[0]) == (1, "ERR_SCHEDULE_EXISTS")
    code, _, err = await run_cli(spawn, "schedules", "pause", "missing")
    assert (code, err.split(":")[0]) == (1, "ERR_SCHEDULE_NOT_FOUND")


# -- three real runner processes -----------------------------------------------------------------


async def test_three_runner_processes_create_one_job_for_a_due_tick_and_run_it(
    spawn: Spawn, schedules: ScheduleStore, pool: asyncpg.Pool
) -> None:
    now = await schedules.now()
    every_minute = Schedule("every-minute", "* * * * *", "noop")
    due = every_minute.latest_tick(now)
    await add(schedules, every_minute, now - timedelta(hours=1), due - timedelta(minutes=3))
    runners = [await spawn("jobs", "first_time") for _ in range(3)]

    async def completed() -> bool:
        rows = await schedule_jobs(pool)
        return bool(rows) and rows[0]["status"] == "completed"

    await eventually(completed, within=15)

    async def all_listening() -> bool:
        return all(any(e.get("action") == "listen" for e in r.events()) for r in runners)

    await eventually(all_listening, within=15)
    # Every scheduler has had its round (a round that fires nothing logs nothing, so no
    # event can be waited for); a second job would be created in it.
    await asyncio.sleep(0.5)
    for runner in runners:
        runner.send(signal.SIGTERM)
    assert [await runner.wait(20) for runner in runners] == [0, 0, 0]

    ticks = [row["schedule_tick_at"] for row in await schedule_jobs(pool)]
    # A minute may have turned during the test: then its tick fired too, once; or, if it
    # turned before the first round, only that latest tick fired (missed ticks fire once).
    later = due + timedelta(minutes=1)
    assert ticks in ([due], [due, later], [later])
    fired = Counter(
        str(event["tick"])
        for runner in runners
        for event in runner.events()
        if event.get("action") == "schedule_fired"
    )
    assert sorted(fired) == [tick.isoformat() for tick in ticks]
    assert set(fired.values()) == {1}


USER_MODULE = """
from pydantic import BaseModel
from connectra import JobContext, JobTypeRegistry

registry = JobTypeRegistry()

class Stamp(BaseModel):
    label: str

@registry.periodic("* * * * *", name="stamper", data={"label": "from code"})
@registry.job(queue="stamps")
async def stamp(ctx: JobContext, data: Stamp) -> dict[str, object]:
    return {"label": data.label}
"""


async def test_a_runner_process_upserts_the_apps_schedules_and_fires_them(
    spawn: Spawn, schedules: ScheduleStore, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (tmp_path / "userjobs.py").write_text(USER_MODULE)
    now = await schedules.now()
    placeholder = Schedule("stamper", "0 0 1 1 *", "noop")  # added earlier, at run time
    due = Schedule("stamper", "* * * * *", "noop").latest_tick(now)
    await add(schedules, placeholder, now - timedelta(hours=1), due - timedelta(minutes=1))
    runner = await spawn("jobs", "first_time", "--app", "userjobs:registry")

    async def completed() -> bool:
        rows = await schedule_jobs(pool)
        return bool(rows) and rows[0]["status"] == "completed"

    await eventually(completed, within=15)
    runner.send(signal.SIGTERM)
    assert await runner.wait(20) == 0
    [job] = await schedule_jobs(pool)
    assert (job["job_type"], job["queue"], job["data"]) == (
        "stamp",
        "stamps",
        {"label": "from code"},
    )
    assert job["schedule_tick_at"] in (due, due + timedelta(minutes=1))
    stored = await schedules.get("stamper")
    assert (stored.source, stored.schedule.cron, stored.schedule.job_type) == (
        "code",
        "* * * * *",
        "stamp",
    )
    assert any(e.get("action") == "schedules_declared" for e in runner.events())
