"""What a failure means: its `ERR_...` code, whether retrying can help, what to record. Pure."""

from __future__ import annotations

import traceback
from datetime import timedelta
from typing import Any

import asyncpg
from elasticsearch import ApiError
from elasticsearch import ConnectionError as EsConnectionError

from connectra.db.pool import DATABASE_DOWN
from connectra.errors import ConnectraError

# Error lines of attempts kept in `runtime_errors`, across retries, rescues and the completion.
MAX_RUNTIME_ERRORS = 20

# PostgreSQL errors that mean "try again", not "the data or the code is wrong".
_TRANSIENT_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    *DATABASE_DOWN,
    TimeoutError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.InsufficientResourcesError,
)


class JobTimeoutError(ConnectraError):
    """the job ran past its hard time limit and was stopped"""

    code = "ERR_TIMEOUT"
    transient = True


class RescuedError(ConnectraError):
    """the runner holding the job stopped heartbeating; the job was taken back"""

    code = "ERR_RESCUED"
    transient = True


def error_code(exc: BaseException) -> str:
    """The `ERR_...` code of an exception; unexpected ones are internal errors."""
    if isinstance(exc, ConnectraError):
        return exc.code
    if isinstance(exc, EsConnectionError | ApiError):
        return "ERR_ELASTICSEARCH"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return "ERR_DATABASE"
    return "ERR_INTERNAL"


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed; permanent failures skip the remaining retries."""
    if isinstance(exc, ConnectraError):
        return exc.transient
    if isinstance(exc, EsConnectionError):
        return True
    if isinstance(exc, ApiError):
        status = int(exc.status_code)
        return status == 429 or status >= 500
    if isinstance(exc, _TRANSIENT_DATABASE_ERRORS):
        return True
    # Other database errors (constraint, syntax, types) will fail the same way again.
    return not isinstance(exc, asyncpg.PostgresError)


def failure_response(
    previous: dict[str, Any], exc: BaseException, retry_in: timedelta | None
) -> dict[str, Any]:
    """The `job_response` of a failed attempt: the seed's fields plus a structured error."""
    message = str(exc) or type(exc).__name__
    runtime_errors = with_error_line(previous, f"{error_code(exc)}: {message}")
    if retry_in is not None:
        outcome = "will retry"
    elif is_transient(exc):
        outcome = "no retries left"
    else:
        outcome = "permanent error, not retried"
    return {
        "runtime_errors": runtime_errors,
        "messages": f"job failed ({outcome})",
        "error": {
            "code": error_code(exc),
            "message": message,
            "details": {
                "type": type(exc).__name__,
                "transient": is_transient(exc),
                "traceback": traceback.format_exception(exc, limit=-3)[-4:],
            },
        },
    }


def earlier_errors(previous: dict[str, Any]) -> list[Any]:
    """The error lines earlier attempts left in `runtime_errors`, the last MAX_RUNTIME_ERRORS."""
    lines = previous.get("runtime_errors")
    return list(lines)[-MAX_RUNTIME_ERRORS:] if isinstance(lines, list) else []


def with_error_line(previous: dict[str, Any], line: str) -> list[Any]:
    """`runtime_errors` with one more attempt's line, still at most MAX_RUNTIME_ERRORS."""
    return [*earlier_errors(previous), line][-MAX_RUNTIME_ERRORS:]


def completed_errors(previous: dict[str, Any], result: dict[str, Any]) -> Any:
    """The `runtime_errors` of a completed job: earlier attempts' lines, then the handler's.

    A handler's own value that is not a list is kept as it is.
    """
    own = result.get("runtime_errors", [])
    return [*earlier_errors(previous), *own] if isinstance(own, list) else own
