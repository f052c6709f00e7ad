"""Cron schedule endpoints: list, add, remove, pause and resume schedules at run time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from connectra.api.payloads import read_json_object
from connectra.api.state import REGISTRY, SETTINGS, STORE
from connectra.db.schedule_store import ScheduleStore, StoredSchedule, schedule_to_json
from connectra.errors import (
    InvalidJobDataError,
    InvalidJobTypeError,
    InvalidScheduleError,
    MissingJobTypeError,
    ScheduleNotFoundError,
)
from connectra.processors.base import tick_job
from connectra.schedules import SCHEDULE_NAME, Schedule

logger = logging.getLogger(__name__)


async def list_schedules(request: web.Request) -> web.Response:
    """`GET /common/schedules`: every schedule, by name."""
    schedules = await _store(request).all()
    now = datetime.now(UTC)
    body = {"data": [schedule_to_json(s, now) for s in schedules], "success": True}
    return web.json_response(body)


async def add_schedule(request: web.Request) -> web.Response:
    """`POST /common/schedules`: add a schedule, checked against the job types this API
    knows (its cron expression, time zone, job type, data, queue and priority)."""
    schedule = parse_schedule(await read_json_object(request))
    tick_job(request.app[REGISTRY], schedule, request.app[SETTINGS])
    stored = await _store(request).add(schedule)
    logger.info(
        "schedule added",
        extra={"action": "schedule_added", "schedule": stored.name, "cron": schedule.cron},
    )
    body = {"message": "Schedule created successfully", "success": True}
    return web.json_response({**body, "data": _json(stored)}, status=201)


async def remove_schedule(request: web.Request) -> web.Response:
    """`DELETE /common/schedules/{name}`: delete a schedule; the jobs it created stay."""
    stored = await _store(request).remove(_path_name(request))
    return web.json_response({"data": _json(stored), "success": True})


async def pause_schedule(request: web.Request) -> web.Response:
    """`POST /common/schedules/{name}/pause`: stop a schedule from firing."""
    stored = await _store(request).pause(_path_name(request))
    return web.json_response({"data": _json(stored), "success": True})


async def resume_schedule(request: web.Request) -> web.Response:
    """`POST /common/schedules/{name}/resume`: fire again from the next tick on."""
    stored = await _store(request).resume(_path_name(request))
    return web.json_response({"data": _json(stored), "success": True})


def _path_name(request: web.Request) -> str:
    """The schedule named in the path; a name no schedule can have (a NUL, a space) is not
    found, and never reaches the database."""
    name = request.match_info["name"]
    if not SCHEDULE_NAME.fullmatch(name):
        raise ScheduleNotFoundError(f"no schedule is named {name[:70]!r}")
    return name


def parse_schedule(body: dict[str, Any]) -> Schedule:
    """Check an add body: `name`, `cron` and `job_type` are required; `job_data` (an object,
    default `{}`), `timezone` (default UTC), `queue` and `priority` (default: the job type's)
    are optional, and null counts as absent. The job type checks the data afterwards."""
    return Schedule(
        name=_required(body, "name"),
        cron=_required(body, "cron"),
        job_type=_job_type(body.get("job_type")),
        data=_job_data(body.get("job_data")),
        timezone="UTC" if body.get("timezone") is None else body["timezone"],
        queue=body.get("queue"),
        priority=body.get("priority"),
    )


def _required(body: dict[str, Any], field: str) -> Any:
    """A field the schedule cannot do without (its type is checked by `Schedule`)."""
    if body.get(field) in (None, ""):
        raise InvalidScheduleError(f"'{field}' is required")
    return body[field]


def _job_type(value: object) -> str:
    """The job type a schedule creates."""
    if value is None or value == "":
        raise MissingJobTypeError()
    if not isinstance(value, str):
        raise InvalidJobTypeError()
    return value


def _job_data(value: object) -> dict[str, Any]:
    """The data of the schedule's jobs: an object, `{}` when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidJobDataError("'job_data' must be a JSON object")
    return value


def _store(request: web.Request) -> ScheduleStore:
    """The schedule store, on the API's pool."""
    return ScheduleStore(request.app[STORE].pool)


def _json(stored: StoredSchedule) -> dict[str, Any]:
    """A schedule's public shape as of now."""
    return schedule_to_json(stored, datetime.now(UTC))
