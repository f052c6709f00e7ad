"""Request bodies: read them safely and turn them into typed requests.

JSON PostgreSQL cannot store and integers that are not JSON integers are refused up front
(`decode_json_object`, `parse_create`, `parse_list`); `whole_number` is the one reader of
integers in query strings and cookies.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from connectra.errors import (
    BodyTooLargeError,
    ConnectraError,
    InvalidCursorError,
    InvalidIdempotencyKeyError,
    InvalidJobDataError,
    InvalidJobTypeError,
    InvalidJsonError,
    InvalidLimitError,
    InvalidQueueError,
    InvalidRetryCountError,
    InvalidRetryIntervalError,
    InvalidStatusFilterError,
    InvalidUuidError,
    MissingJobDataError,
    MissingJobTypeError,
    UnknownBodyFieldError,
)
from connectra.jobs import JobStatus, NewJob, check_delay, check_priority, check_queue, parse_run_at
from connectra.storable_json import MAX_JSON_DEPTH, UnstorableJsonError, check_storable

PG_INTEGER_MAX = 2**31 - 1
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
# ASCII digits only: `str.isdigit` also takes '²' (which `int` refuses) and '٣' (which it reads).
WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")

_KNOWN_STATES = ", ".join(str(status) for status in JobStatus)


@dataclass(frozen=True, slots=True)
class CreateJobRequest:
    """A `POST /common/jobs/create` body; `job_data` is not yet checked by its job type, and
    options left out (None) take the job type's defaults."""

    job_type: str
    job_data: dict[str, Any]
    retry_count: int | None
    retry_interval: int | None
    queue: str | None
    priority: int | None
    run_at: datetime | None
    delay_seconds: float | None

    def options(self) -> dict[str, Any]:
        """The job options given, for `JobType.new_job`."""
        return {
            "queue": self.queue,
            "priority": self.priority,
            "retry_count": self.retry_count,
            "retry_interval": self.retry_interval,
            "run_at": self.run_at,
            "delay_seconds": self.delay_seconds,
        }


@dataclass(frozen=True, slots=True)
class ListJobsRequest:
    """A `POST /common/jobs` body; an empty `statuses` or `queues` means every one."""

    job_type: str | None
    statuses: tuple[JobStatus, ...]
    queues: tuple[str, ...]
    limit: int
    after: int | None


LIST_FIELDS = ("job_type", "status", "queue", "limit", "after")
# Fields other APIs page with; the listing pages by `after` alone.
_PAGING_FIELDS = frozenset({"offset", "page", "skip", "cursor", "page_size", "per_page"})


def whole_number(text: str, lowest: int, highest: int) -> int | None:
    """An integer written as 1 to 19 ASCII digits (no sign, space or newline) from `lowest`
    to `highest`; None for anything else."""
    if not WHOLE_NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if lowest <= value <= highest else None


IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_key(value: str | None) -> str | None:
    """The `Idempotency-Key` header: 1 to 255 printable ASCII characters, or absent."""
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidIdempotencyKeyError()
    return value


def fingerprint(new: NewJob) -> str:
    """What makes two create requests the same request, as one hash: the job they create,
    with the job type's defaults filled in (leaving out an option or giving its default is
    the same request)."""
    canonical = json.dumps(
        {
            "job_type": new.job_type,
            "job_data": new.data,
            "queue": new.queue,
            "priority": new.priority,
            "retry_count": new.retry_count,
            "retry_interval": new.retry_interval,
            "run_at": None if new.run_at is None else new.run_at.isoformat(),
            "delay_seconds": new.delay_seconds,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def body_too_large(limit: int) -> BodyTooLargeError:
    """The error for a body over `limit` bytes."""
    return BodyTooLargeError(f"the request body must be at most {limit} bytes")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is `{}`."""
    declared = request.content_length
    if declared is not None and declared > request.client_max_size:
        raise body_too_large(request.client_max_size)
    return decode_json_object(await request.read())


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a body that must be a JSON object PostgreSQL can store; only an empty body is
    `{}` (whitespace alone is not JSON)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise InvalidJsonError(
            f"the request body is nested more than {MAX_JSON_DEPTH} levels deep"
        ) from exc
    except ValueError as exc:
        raise InvalidJsonError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidJsonError(f"the request body must be a JSON object, not {_kind(value)}")
    try:
        check_storable(value)
    except UnstorableJsonError as exc:
        raise InvalidJsonError(f"the request body cannot be stored: {exc}") from None
    return value


def _refuse_constant(name: str) -> float:
    """`NaN` and `Infinity` are not JSON and PostgreSQL refuses them."""
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    """A JSON number that fits a float (`1e400` would become infinity)."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def parse_create(body: dict[str, Any]) -> CreateJobRequest:
    """Check a create body field by field, in the order the fields are documented.

    A missing, null or empty `job_type` is ERR_MISSING_JOB_TYPE; a `job_type` that is not a
    string is ERR_INVALID_JOB_TYPE. A missing or null `job_data` is ERR_MISSING_JOB_DATA; one
    that is not an object is ERR_INVALID_JOB_DATA. `retry_count` and `retry_interval` must be
    integers from 0 to 2**31-1 (they are PostgreSQL integers). `queue` is a queue name,
    `priority` an integer from -100 to 100, `run_at` an ISO 8601 time and `delay_seconds` a
    number of seconds (not both). Null, like absent, means the job type's default.
    """
    run_at, delay = body.get("run_at"), body.get("delay_seconds")
    return CreateJobRequest(
        job_type=_required_job_type(body.get("job_type")),
        job_data=_required_job_data(body.get("job_data")),
        retry_count=_non_negative(body.get("retry_count"), InvalidRetryCountError),
        retry_interval=_non_negative(body.get("retry_interval"), InvalidRetryIntervalError),
        queue=None if body.get("queue") is None else check_queue(body["queue"]),
        priority=None if body.get("priority") is None else check_priority(body["priority"]),
        run_at=None if run_at is None else parse_run_at(run_at),
        delay_seconds=None if delay is None else check_delay(delay),
    )


def _required_job_type(value: object) -> str:
    """The job type named by a create body."""
    if value is None or value == "":
        raise MissingJobTypeError()
    if not isinstance(value, str):
        raise InvalidJobTypeError(f"'job_type' must be a string, not {_kind(value)}")
    return value


def _required_job_data(value: object) -> dict[str, Any]:
    """The job data of a create body, which must be an object."""
    if value is None:
        raise MissingJobDataError()
    if not isinstance(value, dict):
        raise InvalidJobDataError(f"'job_data' must be a JSON object, not {_kind(value)}")
    return value


def _non_negative(value: object, error: type[ConnectraError]) -> int | None:
    """A JSON integer from 0 to the largest PostgreSQL integer; null means the default."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise error()
    if value > PG_INTEGER_MAX:
        raise error(f"{error().message}; at most {PG_INTEGER_MAX}")
    return value


def parse_list(body: dict[str, Any]) -> ListJobsRequest:
    """Check a list body.

    `job_type` is an optional string filter (null or "" means no filter; anything else not a
    string is ERR_INVALID_JOB_TYPE). `status` is a state or a list of states (null or [] means
    every state), `queue` a queue name or a list of them. `limit` is an integer from 1 to 100,
    25 when absent or null. `after` is the previous page's `next_after`: the page goes on from
    there. Any other field is ERR_UNKNOWN_BODY_FIELD (paging is by `after` alone).
    """
    _refuse_unknown_fields(body, LIST_FIELDS)
    return ListJobsRequest(
        job_type=_optional_job_type(body.get("job_type")),
        statuses=_statuses(body.get("status")),
        queues=_queues(body.get("queue")),
        limit=_limit(body.get("limit")),
        after=_cursor(body.get("after")),
    )


def _refuse_unknown_fields(body: dict[str, Any], known: tuple[str, ...]) -> None:
    """Name the first field of `body` not in `known`."""
    name = next((field for field in body if field not in known), None)
    if name is None:
        return
    hint = "; pages go on with 'after' (the previous page's 'next_after')"
    raise UnknownBodyFieldError(
        f"unknown field {name[:40]!r}; this body takes {', '.join(known)}"
        + (hint if name.lower() in _PAGING_FIELDS else "")
    )


def _queues(value: object) -> tuple[str, ...]:
    """The queues a list body asks for; one string is a list of one."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (check_queue(value),)
    if not isinstance(value, list):
        raise InvalidQueueError(
            f"'queue' must be a queue name or a list of them, not {_kind(value)}"
        )
    return tuple(check_queue(item) for item in value)


def _cursor(value: object) -> int | None:
    """A keyset cursor: the id of the last job of the previous page."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**63 - 1:
        raise InvalidCursorError()
    return value


def _optional_job_type(value: object) -> str | None:
    """The job type filter of a list body."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidJobTypeError(f"'job_type' must be a string, not {_kind(value)}")
    return value


def _statuses(value: object) -> tuple[JobStatus, ...]:
    """The states a list body asks for; one string is a list of one."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidStatusFilterError(
            f"'status' must be a job state or a list of them, not {_kind(value)}"
        )
    return tuple(_status(item) for item in items)


def _status(value: object) -> JobStatus:
    """One known job state."""
    if not isinstance(value, str):
        raise InvalidStatusFilterError(f"each 'status' must be a string, not {_kind(value)}")
    try:
        return JobStatus(value)
    except ValueError:
        raise InvalidStatusFilterError(
            f"unknown job state {value[:40]!r}; known states: {_KNOWN_STATES}"
        ) from None


def _limit(value: object) -> int:
    """How many jobs a list body asks for."""
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidLimitError()
    return value


def parse_uuid(text: str) -> UUID:
    """The job uuid in a path."""
    try:
        return UUID(text)
    except ValueError:
        raise InvalidUuidError() from None
