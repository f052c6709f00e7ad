"""Request bodies: read them safely and turn them into typed requests.

Rules shared by every endpoint:

- An empty body is `{}`; anything else must be a JSON object (ERR_INVALID_JSON).
- JSON PostgreSQL cannot store is refused up front as ERR_INVALID_JSON rather than failing
  in the database: `NaN`/`Infinity` and numbers out of float range, strings holding NUL or an
  unpaired surrogate, and nesting deeper than `MAX_JSON_DEPTH`.
- An optional field that is `null` counts as absent; unknown fields are ignored.
- Integers must be JSON integers: `true`, `3.0` and `"3"` are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiohttp import web

from connectra.errors import (
    BodyTooLargeError,
    ConnectraError,
    InvalidIdempotencyKeyError,
    InvalidJobDataError,
    InvalidJobTypeError,
    InvalidJsonError,
    InvalidLimitError,
    InvalidRetryCountError,
    InvalidRetryIntervalError,
    InvalidStatusFilterError,
    InvalidUuidError,
    MissingJobDataError,
    MissingJobTypeError,
)
from connectra.jobs import JobStatus

MAX_JSON_DEPTH = 64
PG_INTEGER_MAX = 2**31 - 1
DEFAULT_RETRY_COUNT = 0
DEFAULT_RETRY_INTERVAL = 30
DEFAULT_LIMIT = 25
MAX_LIMIT = 100

_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_KNOWN_STATES = ", ".join(str(status) for status in JobStatus)


@dataclass(frozen=True, slots=True)
class CreateJobRequest:
    """A `POST /common/jobs/create` body; `job_data` is not yet checked by its job type."""

    job_type: str
    job_data: dict[str, Any]
    retry_count: int
    retry_interval: int


@dataclass(frozen=True, slots=True)
class ListJobsRequest:
    """A `POST /common/jobs` body; an empty `statuses` means every state."""

    job_type: str | None
    statuses: tuple[JobStatus, ...]
    limit: int


IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_key(value: str | None) -> str | None:
    """The `Idempotency-Key` header: 1 to 255 printable ASCII characters, or absent."""
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.match(value):
        raise InvalidIdempotencyKeyError()
    return value


def fingerprint(wanted: CreateJobRequest, data: dict[str, Any]) -> str:
    """What makes two create requests the same request, as one hash."""
    canonical = json.dumps(
        {
            "job_type": wanted.job_type,
            "job_data": data,
            "retry_count": wanted.retry_count,
            "retry_interval": wanted.retry_interval,
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
    """Parse a body that must be a JSON object PostgreSQL can store."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise _too_deep() from exc
    except ValueError as exc:
        raise InvalidJsonError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidJsonError(f"the request body must be a JSON object, not {_kind(value)}")
    _check_storable(value, 1)
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


def _too_deep() -> InvalidJsonError:
    """The error for nesting deeper than the limit."""
    return InvalidJsonError(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep")


def _check_storable(value: object, depth: int) -> None:
    """Refuse what PostgreSQL's jsonb cannot hold, before it reaches the database."""
    if depth > MAX_JSON_DEPTH:
        raise _too_deep()
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth + 1)


def _check_text(text: str) -> None:
    """PostgreSQL text holds neither NUL nor unpaired surrogates."""
    if _UNSTORABLE_TEXT.search(text):
        raise InvalidJsonError(
            "the request body contains a NUL character or an unpaired surrogate, "
            "which cannot be stored"
        )


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
    integers from 0 to 2**31-1 (they are PostgreSQL integers); null means the default.
    """
    return CreateJobRequest(
        job_type=_required_job_type(body.get("job_type")),
        job_data=_required_job_data(body.get("job_data")),
        retry_count=_non_negative(
            body.get("retry_count"), DEFAULT_RETRY_COUNT, InvalidRetryCountError
        ),
        retry_interval=_non_negative(
            body.get("retry_interval"), DEFAULT_RETRY_INTERVAL, InvalidRetryIntervalError
        ),
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


def _non_negative(value: object, default: int, error: type[ConnectraError]) -> int:
    """A JSON integer from 0 to the largest PostgreSQL integer; null means the default."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise error()
    if value > PG_INTEGER_MAX:
        raise error(f"{error().message}; at most {PG_INTEGER_MAX}")
    return value


def parse_list(body: dict[str, Any]) -> ListJobsRequest:
    """Check a list body.

    `job_type` is an optional string filter (null or "" means no filter; anything else not a
    string is ERR_INVALID_JOB_TYPE). `status` is a state or a list of states (null or [] means
    every state). `limit` is an integer from 1 to 100, 25 when absent or null.
    """
    return ListJobsRequest(
        job_type=_optional_job_type(body.get("job_type")),
        statuses=_statuses(body.get("status")),
        limit=_limit(body.get("limit")),
    )


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
