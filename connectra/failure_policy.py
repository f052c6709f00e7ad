"""What a failed attempt means (its `ERR_...` code, whether another attempt can help) and what
it leaves in `job_response`. Pure: it knows project errors only; a driver's exception is
classified by its adapter first (`connectra.db.driver_errors`, `connectra.search`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from connectra.errors import ConnectraError
from connectra.traceback_paths import short_traceback

# Error lines of attempts kept in `runtime_errors`, across retries, rescues and the completion.
MAX_RUNTIME_ERRORS = 20


def error_code(exc: BaseException) -> str:
    """The `ERR_...` code of an exception; unexpected ones are internal errors."""
    return exc.code if isinstance(exc, ConnectraError) else ConnectraError.code


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed; permanent failures skip the remaining retries.

    An exception that is no project error is unexpected (a bug, a dropped connection): it
    may not happen again, so it is retried.
    """
    return exc.transient if isinstance(exc, ConnectraError) else True


def failure_response(
    previous: dict[str, Any],
    exc: BaseException,
    retry_in: timedelta | None,
    raised: BaseException | None = None,
) -> dict[str, Any]:
    """The `job_response` of a failed attempt: the seed's fields plus a structured error.

    `exc` is what the failure counts as. When an adapter classified a driver's exception as
    `exc`, `raised` is that exception: the details show its type and traceback.
    """
    shown = exc if raised is None else raised
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
                "type": type(shown).__name__,
                "transient": is_transient(exc),
                "traceback": short_traceback(shown),
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
