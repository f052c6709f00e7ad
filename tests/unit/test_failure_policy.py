"""Error categories: which failures are worth another attempt."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError

from connectra.errors import InvalidJobDataError, JobFailedError
from connectra.failures import (
    MAX_RUNTIME_ERRORS,
    JobTimeoutError,
    RescuedError,
    completed_errors,
    failure_response,
    is_transient,
    with_error_line,
)
from connectra.objectstore import AccessDenied, ObjectNotFound, ObjectStoreUnavailable


def es_error(status: int) -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "localhost", 9200),
    )
    return ApiError("error", meta, {})


@pytest.mark.parametrize(
    "exc",
    [
        ObjectStoreUnavailable("throttled"),
        ConnectionResetError("reset"),
        asyncpg.exceptions.SerializationError("conflict"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        asyncpg.ConnectionDoesNotExistError("gone"),
        es_error(429),
        es_error(503),
        JobTimeoutError(),
        RescuedError(),
        JobFailedError(),
        KeyError("an unexpected bug"),
    ],
)
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ObjectNotFound("no such key"),
        AccessDenied("denied"),
        InvalidJobDataError("bad data"),
        asyncpg.exceptions.UniqueViolationError("duplicate"),
        es_error(400),
    ],
)
def test_permanent_failures_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_failure_response_keeps_the_seeds_fields_and_a_structured_error() -> None:
    previous = {"runtime_errors": ["ERR_S3_UNAVAILABLE: slow down"]}
    response = failure_response(previous, ObjectNotFound("uploads/x.csv"), None)
    assert response["runtime_errors"] == [
        "ERR_S3_UNAVAILABLE: slow down",
        "ERR_S3_OBJECT_NOT_FOUND: uploads/x.csv",
    ]
    assert response["messages"] == "job failed (permanent error, not retried)"
    assert response["error"]["code"] == "ERR_S3_OBJECT_NOT_FOUND"
    assert response["error"]["details"]["transient"] is False
    retried = failure_response({}, ObjectStoreUnavailable("5xx"), timedelta(seconds=30))
    assert retried["messages"] == "job failed (will retry)"


def test_runtime_errors_keep_the_last_attempts_lines_and_the_handlers_own_on_completion() -> None:
    previous = {"runtime_errors": [f"ERR_X: attempt {n}" for n in range(1, 26)]}
    lines = with_error_line(previous, "ERR_Y: attempt 26")
    assert len(lines) == MAX_RUNTIME_ERRORS
    assert (lines[0], lines[-1]) == ("ERR_X: attempt 7", "ERR_Y: attempt 26")
    earlier = {"runtime_errors": ["ERR_RESCUED: runner r stopped heartbeating"]}
    own = {"runtime_errors": ["line 3: bad uuid"]}
    assert completed_errors(earlier, own) == [
        "ERR_RESCUED: runner r stopped heartbeating",
        "line 3: bad uuid",
    ]
    assert completed_errors(earlier, {}) == ["ERR_RESCUED: runner r stopped heartbeating"]
    assert completed_errors({}, {}) == []
