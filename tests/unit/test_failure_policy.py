"""What a failure counts as: which failures are worth another attempt, what they leave in
`job_response`; driver exceptions as their adapters classify them."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError
from elasticsearch import ConnectionError as EsConnectionError

from connectra.db.driver_errors import database_error
from connectra.errors import (
    AccessDenied,
    InvalidJobDataError,
    JobFailedError,
    JobTimeoutError,
    ObjectNotFound,
    ObjectStoreUnavailable,
    PermanentJobError,
    RescuedError,
)
from connectra.failure_policy import (
    MAX_RUNTIME_ERRORS,
    completed_errors,
    error_code,
    failure_response,
    is_transient,
    with_error_line,
)
from connectra.search import search_error


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
        PermanentJobError(),
    ],
)
def test_permanent_failures_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (asyncpg.exceptions.SerializationError("conflict"), True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), True),
        (asyncpg.ConnectionDoesNotExistError("gone"), True),
        (asyncpg.exceptions.AdminShutdownError("shutting down"), True),
        (asyncpg.InterfaceError("connection is closed"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate"), False),
        (asyncpg.exceptions.InvalidTextRepresentationError("not an integer"), False),
    ],
)
def test_database_errors_count_as_err_database_transient_only_when_another_try_can_pass(
    exc: Exception, transient: bool
) -> None:
    error = database_error(exc)
    assert error is not None
    assert (error_code(error), is_transient(error), error.__cause__) == (
        "ERR_DATABASE",
        transient,
        exc,
    )


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (es_error(429), True),
        (es_error(503), True),
        (EsConnectionError("refused"), True),
        (es_error(400), False),
    ],
)
def test_search_errors_count_as_err_elasticsearch_transient_when_overloaded_or_down(
    exc: Exception, transient: bool
) -> None:
    error = search_error(exc)
    assert error is not None
    assert (error_code(error), is_transient(error)) == ("ERR_ELASTICSEARCH", transient)


def test_other_exceptions_are_no_driver_errors_and_unexpected_ones_are_internal() -> None:
    unexpected = OSError("network unreachable")
    assert database_error(unexpected) is None
    assert search_error(unexpected) is None
    assert (error_code(unexpected), is_transient(unexpected)) == ("ERR_INTERNAL", True)


def test_a_classified_driver_error_shows_the_drivers_exception_in_its_details() -> None:
    raised = asyncpg.exceptions.UniqueViolationError("duplicate key value")
    error = database_error(raised)
    assert error is not None
    response = failure_response({}, error, None, raised=raised)
    assert response["runtime_errors"] == ["ERR_DATABASE: duplicate key value"]
    assert response["messages"] == "job failed (permanent error, not retried)"
    assert response["error"]["details"]["type"] == "UniqueViolationError"


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
