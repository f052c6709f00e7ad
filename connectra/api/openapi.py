"""The OpenAPI 3.1 document of the HTTP API, built from the rules the handlers apply:
patterns, bounds, error codes and `job_data` schemas come from the code that checks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.errors import PydanticUserError
from pydantic.json_schema import models_json_schema

from connectra._version import package_version
from connectra.api.access import required_scope
from connectra.api.files import SAFE_FILENAME
from connectra.api.payloads import DEFAULT_LIMIT, IDEMPOTENCY_KEY, MAX_LIMIT, PG_INTEGER_MAX
from connectra.api.server_limits import MAX_LINE_BYTES
from connectra.api_keys import Scope
from connectra.errors import (
    BodyTooLargeError,
    BucketNotAllowedError,
    BucketNotConfiguredError,
    ConnectraError,
    DatabaseUnavailableError,
    ExportNotReadyError,
    FileExpiredError,
    IdempotencyKeyReusedError,
    InvalidCursorError,
    InvalidDelayError,
    InvalidExpiryError,
    InvalidFilenameError,
    InvalidIdempotencyKeyError,
    InvalidJobDataError,
    InvalidJobTypeError,
    InvalidJsonError,
    InvalidLimitError,
    InvalidPriorityError,
    InvalidQueueError,
    InvalidRetryCountError,
    InvalidRetryIntervalError,
    InvalidRunAtError,
    InvalidScheduleError,
    InvalidStatusFilterError,
    InvalidUuidError,
    InvalidVqlError,
    JobFinishedError,
    JobNotFoundError,
    JobNotRetryableError,
    KeyNotAllowedError,
    MissingJobDataError,
    MissingJobTypeError,
    MissingSelectColumnsError,
    ObjectStoreNotConfiguredError,
    RequestTimeoutError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    ScopeRequiredError,
    UnauthorizedError,
    UnknownBodyFieldError,
    UnknownFieldError,
    UnknownJobTypeError,
    UnknownServiceError,
)
from connectra.jobs import MAX_DELAY_SECONDS, MAX_PRIORITY, MIN_PRIORITY, QUEUE_NAME, JobStatus
from connectra.processors.base import JobTypeRegistry
from connectra.schedules import SCHEDULE_NAME
from connectra.settings import Settings

OPENAPI_VERSION = "3.1.0"
API_KEY_HEADER = "X-API-Key"
JSON = "application/json"
ERROR_CODE_PATTERN = r"^ERR_[A-Z0-9_]+: "
Errors = tuple[type[ConnectraError], ...]

# What the built-in job types' data checks raise besides ERR_INVALID_JOB_DATA.
JOB_DATA_ERRORS: Errors = (
    InvalidJobDataError,
    MissingSelectColumnsError,
    InvalidVqlError,
    UnknownFieldError,
    UnknownServiceError,
    BucketNotAllowedError,
    KeyNotAllowedError,
)
CREATE_ERRORS: Errors = (
    InvalidIdempotencyKeyError,
    MissingJobTypeError,
    InvalidJobTypeError,
    UnknownJobTypeError,
    MissingJobDataError,
    *JOB_DATA_ERRORS,
    InvalidRetryCountError,
    InvalidRetryIntervalError,
    InvalidQueueError,
    InvalidPriorityError,
    InvalidRunAtError,
    InvalidDelayError,
    IdempotencyKeyReusedError,
)
LIST_ERRORS: Errors = (
    InvalidJobTypeError,
    InvalidStatusFilterError,
    InvalidQueueError,
    InvalidLimitError,
    InvalidCursorError,
    UnknownBodyFieldError,
)
SCHEDULE_ERRORS: Errors = (
    InvalidScheduleError,
    MissingJobTypeError,
    InvalidJobTypeError,
    UnknownJobTypeError,
    *JOB_DATA_ERRORS,
    InvalidQueueError,
    InvalidPriorityError,
    ScheduleExistsError,
)
OBJECT_STORE_ERRORS: Errors = (BucketNotConfiguredError, ObjectStoreNotConfiguredError)
REPLAYED_HEADER = {
    "description": "`true` when an earlier request with this Idempotency-Key created the job.",
    "schema": {"type": "string", "const": "true"},
}


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null (null counts as absent in every request body)."""
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True, slots=True)
class Operation:
    """One route as the document describes it: what it takes, answers and may refuse."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    answers: dict[int, tuple[str, dict[str, Any]]]
    errors: Errors = ()
    parameters: tuple[dict[str, Any], ...] = ()
    body: str | None = None
    body_required: bool = False
    database: bool = True
    description: str = ""
    headers: dict[int, dict[str, Any]] = field(default_factory=dict)
    example: dict[str, Any] | None = None

    @property
    def protected(self) -> bool:
        """Whether the route needs an API key (everything under /common)."""
        return self.path.startswith("/common/")


def _path_uuid() -> dict[str, Any]:
    """The `{uuid}` path parameter."""
    return {
        "name": "uuid",
        "in": "path",
        "required": True,
        "description": "The job's uuid (other forms Python's `UUID` reads are accepted too).",
        "schema": {"type": "string", "format": "uuid"},
    }


def _path_name() -> dict[str, Any]:
    """The `{name}` path parameter of a schedule."""
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The schedule's name; a name no schedule can have is not found (404).",
        "schema": {"type": "string", "pattern": SCHEDULE_NAME.pattern},
    }


def _expires_in(settings: Settings) -> dict[str, Any]:
    """The `expires_in` query parameter of the presigned URL routes."""
    maximum = settings.presigned_url_expiry_seconds
    return {
        "name": "expires_in",
        "in": "query",
        "required": False,
        "description": f"Seconds the URL stays valid, in ASCII digits (default {maximum}).",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum},
    }


def _job_answer(description: str) -> tuple[str, dict[str, Any]]:
    """An answer holding one job."""
    return description, ref("JobAnswer")


def _operations(settings: Settings) -> list[Operation]:
    """Every route of the API, in the order of docs/http-api.md."""
    return [*_job_operations(settings), *_schedule_operations(), *_probe_operations()]


def _job_operations(settings: Settings) -> list[Operation]:
    """Creating, listing, reading and controlling jobs, and the presigned URLs."""
    uuid_errors: Errors = (InvalidUuidError, JobNotFoundError)
    return [
        Operation(
            "post",
            "/common/jobs/create",
            "createJob",
            "Create a job",
            "jobs",
            {
                201: (
                    "The job, created now or, with a repeated Idempotency-Key, before.",
                    ref("JobCreated"),
                )
            },
            CREATE_ERRORS,
            parameters=(_idempotency_key(),),
            body="CreateJobRequest",
            body_required=True,
            description="`job_data` is checked by the job type's model and stored normalised; "
            "options left out or null take the job type's defaults.",
            headers={201: {"Idempotent-Replayed": REPLAYED_HEADER}},
            example={"job_type": "sleep", "job_data": {"seconds": 2}, "retry_count": 3},
        ),
        Operation(
            "post",
            "/common/jobs",
            "listJobs",
            "List jobs, newest first",
            "jobs",
            {200: ("A page of jobs; `next_after` is set when the page is full.", ref("JobPage"))},
            LIST_ERRORS,
            body="ListJobsRequest",
            example={"status": ["open", "processing"], "limit": 10},
        ),
        Operation(
            "get",
            "/common/jobs/{uuid}",
            "getJob",
            "Get a job",
            "jobs",
            {200: _job_answer("The job.")},
            uuid_errors,
            parameters=(_path_uuid(),),
        ),
        Operation(
            "patch",
            "/common/jobs/{uuid}",
            "patchJob",
            "Cancel a job (the seed's form)",
            "jobs",
            {
                200: _job_answer("The job, aborted now."),
                202: _job_answer("The running job, asked to stop."),
            },
            (*uuid_errors, InvalidStatusFilterError, JobFinishedError),
            parameters=(_path_uuid(),),
            body="PatchJobRequest",
            body_required=True,
        ),
        Operation(
            "post",
            "/common/jobs/{uuid}/cancel",
            "cancelJob",
            "Cancel a job",
            "jobs",
            {
                200: _job_answer("The job, aborted now."),
                202: _job_answer("The running job, asked to stop."),
            },
            (*uuid_errors, JobFinishedError),
            parameters=(_path_uuid(),),
        ),
        Operation(
            "post",
            "/common/jobs/{uuid}/retry",
            "retryJob",
            "Retry a failed job now",
            "jobs",
            {200: _job_answer("The job, reopened as `open` with a fresh attempt budget.")},
            (*uuid_errors, JobNotRetryableError),
            parameters=(_path_uuid(),),
        ),
        Operation(
            "get",
            "/common/jobs/{uuid}/download-url",
            "getDownloadUrl",
            "A presigned GET for a completed export's CSV",
            "files",
            {200: ("Where to download the file.", ref("DownloadUrl"))},
            (
                *uuid_errors,
                InvalidExpiryError,
                ExportNotReadyError,
                FileExpiredError,
                BucketNotAllowedError,
                KeyNotAllowedError,
                *OBJECT_STORE_ERRORS,
            ),
            parameters=(_path_uuid(), _expires_in(settings)),
        ),
        Operation(
            "get",
            "/common/upload-url",
            "getUploadUrl",
            "A presigned PUT for a new CSV to import",
            "files",
            {
                200: (
                    "Where to upload the file (send `Content-Type: text/csv`), and its key.",
                    ref("UploadUrl"),
                )
            },
            (InvalidFilenameError, InvalidExpiryError, KeyNotAllowedError, *OBJECT_STORE_ERRORS),
            parameters=(_filename(), _expires_in(settings)),
            database=False,
        ),
    ]


def _idempotency_key() -> dict[str, Any]:
    """The optional `Idempotency-Key` header of a create."""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "The same key with the same request answers the job it created; with "
        "another request, 409.",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY.pattern},
    }


def _filename() -> dict[str, Any]:
    """The `filename` query parameter of the upload URL."""
    return {
        "name": "filename",
        "in": "query",
        "required": True,
        "description": "A plain file name; the object goes to `{prefix}/{random uuid}/NAME`.",
        "schema": {"type": "string", "pattern": SAFE_FILENAME.pattern},
    }


def _schedule_operations() -> list[Operation]:
    """Cron schedules."""
    answer = ("The schedule.", ref("ScheduleAnswer"))
    return [
        Operation(
            "get",
            "/common/schedules",
            "listSchedules",
            "List schedules, by name",
            "schedules",
            {200: ("Every schedule.", ref("ScheduleList"))},
        ),
        Operation(
            "post",
            "/common/schedules",
            "addSchedule",
            "Add a cron schedule",
            "schedules",
            {201: ("The schedule.", ref("ScheduleCreated"))},
            SCHEDULE_ERRORS,
            body="ScheduleRequest",
            body_required=True,
            example={"name": "nightly", "cron": "0 2 * * *", "job_type": "noop", "timezone": "UTC"},
        ),
        Operation(
            "delete",
            "/common/schedules/{name}",
            "removeSchedule",
            "Delete a schedule (its jobs stay)",
            "schedules",
            {200: answer},
            (ScheduleNotFoundError,),
            parameters=(_path_name(),),
        ),
        Operation(
            "post",
            "/common/schedules/{name}/pause",
            "pauseSchedule",
            "Pause a schedule",
            "schedules",
            {200: answer},
            (ScheduleNotFoundError,),
            parameters=(_path_name(),),
        ),
        Operation(
            "post",
            "/common/schedules/{name}/resume",
            "resumeSchedule",
            "Resume a schedule",
            "schedules",
            {200: answer},
            (ScheduleNotFoundError,),
            parameters=(_path_name(),),
        ),
    ]


def _probe_operations() -> list[Operation]:
    """The two probes, which need no key."""
    return [
        Operation(
            "get",
            "/healthz",
            "healthz",
            "Liveness: the process answers",
            "probes",
            {200: ("The process answers.", ref("Health"))},
            database=False,
        ),
        Operation(
            "get",
            "/readyz",
            "readyz",
            "Readiness: the database (and runners) answer",
            "probes",
            {
                200: ("Every check passes.", ref("Readiness")),
                503: (
                    "A check fails (the database does not answer...); `problems` says which.",
                    ref("Readiness"),
                ),
            },
            database=False,
        ),
    ]


def _errors_of(operation: Operation) -> dict[int, list[type[ConnectraError]]]:
    """The errors an operation may answer, by HTTP status: its own, then the shared ones."""
    shared: list[type[ConnectraError]] = []
    if operation.body is not None:
        shared += [InvalidJsonError, BodyTooLargeError, RequestTimeoutError]
    if operation.protected:
        shared += [UnauthorizedError, ScopeRequiredError]
    if operation.database:
        shared.append(DatabaseUnavailableError)
    shared.append(ConnectraError)  # ERR_INTERNAL: a bug
    by_status: dict[int, list[type[ConnectraError]]] = {}
    for error in (*operation.errors, *shared):
        listed = by_status.setdefault(error.http_status, [])
        if error not in listed:
            listed.append(error)
    return by_status


def _error_response(errors: list[type[ConnectraError]]) -> dict[str, Any]:
    """An error answer: the error body, and which codes it may carry and why."""
    lines = [f"- `{error.code}`: {_default_message(error)}" for error in errors]
    return {
        "description": "\n".join(lines),
        "content": {JSON: {"schema": ref("Error")}},
        "x-error-codes": [error.code for error in errors],
    }


def _default_message(error: type[ConnectraError]) -> str:
    """An error's default message (its docstring)."""
    return (error.__doc__ or error.code).strip()


_SCOPE_NOTES = {
    Scope.READ: "Needs an API key with the `read` scope or above; a key without `admin` "
    "sees only the jobs it created (any other is not found).",
    Scope.WRITE: "Needs an API key with the `write` scope or above; a key without `admin` "
    "acts only on the jobs it created (any other is not found).",
    Scope.ADMIN: "Needs an API key with the `admin` scope.",
}


def _operation_object(operation: Operation) -> dict[str, Any]:
    """The OpenAPI operation object of one route."""
    responses: dict[str, Any] = {}
    for status, (description, schema) in sorted(operation.answers.items()):
        answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
        if status in operation.headers:
            answer["headers"] = operation.headers[status]
        responses[str(status)] = answer
    for status, errors in sorted(_errors_of(operation).items()):
        responses.setdefault(str(status), _error_response(errors))
    body: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "parameters": list(operation.parameters),
        "responses": responses,
        "security": [{"ApiKey": []}] if operation.protected else [],
    }
    description = operation.description
    if operation.protected:
        scope = required_scope(operation.method, operation.path)
        body["x-required-scope"] = str(scope)
        description = " ".join(filter(None, [_SCOPE_NOTES[scope], description]))
    if description:
        body["description"] = description
    if operation.body is not None:
        media: dict[str, Any] = {"schema": ref(operation.body)}
        if operation.example is not None:
            media["example"] = operation.example
        body["requestBody"] = {"required": operation.body_required, "content": {JSON: media}}
    return body


def _paths(settings: Settings) -> dict[str, Any]:
    """The `paths` object: every operation under its path."""
    paths: dict[str, Any] = {}
    for operation in _operations(settings):
        paths.setdefault(operation.path, {})[operation.method] = _operation_object(operation)
    return paths


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation a document lists."""
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }


def build_document(registry: JobTypeRegistry, settings: Settings) -> dict[str, Any]:
    """The whole document for an API serving these job types with these settings."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Connectra Jobs",
            "version": package_version(),
            "description": _API_DESCRIPTION.format(
                max_body=settings.api_max_body_bytes,
                body_timeout=settings.api_body_timeout_seconds,
                header_timeout=settings.api_header_timeout_seconds,
                max_line=MAX_LINE_BYTES,
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "jobs", "description": "Create, list, read, cancel and retry jobs."},
            {"name": "files", "description": "Presigned S3 URLs for imports and exports."},
            {"name": "schedules", "description": "Cron schedules that create jobs."},
            {"name": "probes", "description": "Liveness and readiness; no key needed."},
        ],
        "paths": _paths(settings),
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
            },
            "schemas": {**_schemas(registry.names), **_create_schemas(registry)},
        },
    }


_API_DESCRIPTION = """\
The HTTP API of Connectra Jobs. Every `/common/*` request needs an `X-API-Key` header whose
scope covers the operation (`x-required-scope`: `read`, `write` or `admin`, each including the
ones before it; otherwise 403 `ERR_SCOPE_REQUIRED`). A key without `admin` sees and acts on
only the jobs it created.

Request bodies are JSON objects (an empty body is `{{}}`); an optional field that is null
counts as absent, and unknown fields are ignored, except by the listing (`POST /common/jobs`),
which refuses them as `ERR_UNKNOWN_BODY_FIELD`. Integers must be JSON integers (`true`,
`3.0` and `"3"` are refused). JSON PostgreSQL cannot store is refused as `ERR_INVALID_JSON`:
strings holding NUL or an unpaired surrogate, numbers out of range, nesting too deep. A body
over {max_body} bytes is `ERR_BODY_TOO_LARGE` (413), a body still arriving
{body_timeout:g} seconds after the headers `ERR_REQUEST_TIMEOUT` (408). The server itself
answers a request line or header field over {max_line} bytes with 431 `ERR_HEADER_TOO_LARGE`,
a request that is not HTTP/1.1 with 400 `ERR_MALFORMED_REQUEST`, and a request line and
headers not all there {header_timeout:g} seconds after they began with 408
`ERR_REQUEST_TIMEOUT`, in the same error shape.

Every error has the same body, `{{"error": "ERR_CODE: message", "success": false}}`; each
answer lists the codes it may carry. Any path answers 405 `ERR_METHOD_NOT_ALLOWED` (with an
`Allow` header) to a method it does not list, and an unknown path 404 `ERR_NOT_FOUND` (401
first under `/common`).
"""


def _schemas(job_types: list[str]) -> dict[str, Any]:
    """Every component schema but the per-job-type ones."""
    return {
        "Error": _error_schema(),
        "JobStatus": {"type": "string", "enum": [str(status) for status in JobStatus]},
        "Job": _job_schema(),
        "JobAnswer": _envelope({"data": ref("Job")}),
        "JobCreated": _envelope(
            {
                "message": {"type": "string"},
                "uuid": {"type": "string", "format": "uuid"},
                "job": ref("Job"),
            }
        ),
        "JobPage": _envelope(
            {
                "data": {"type": "array", "items": ref("Job")},
                "next_after": {"type": ["integer", "null"], "minimum": 1},
            }
        ),
        "CreateJobRequest": _create_request(job_types),
        "ListJobsRequest": _list_request(),
        "PatchJobRequest": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": str(JobStatus.ABORTED)}},
        },
        "UploadUrl": _presigned("upload_url"),
        "DownloadUrl": _presigned("download_url"),
        "Schedule": _schedule_schema(),
        "ScheduleRequest": _schedule_request(job_types),
        "ScheduleAnswer": _envelope({"data": ref("Schedule")}),
        "ScheduleCreated": _envelope({"message": {"type": "string"}, "data": ref("Schedule")}),
        "ScheduleList": _envelope({"data": {"type": "array", "items": ref("Schedule")}}),
        "Health": _closed({"status": {"const": "ok"}}),
        "Readiness": {
            "type": "object",
            "description": "One entry per check (the database, and in a runner process its "
            "listener and heartbeats); `problems` says what is wrong.",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["ready", "unavailable"]},
                "database": {"type": "string"},
                "problems": {"type": "array", "items": {"type": "string"}},
            },
        },
    }


def _closed(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An answer object with exactly these properties (all required but `optional`)."""
    return {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


def _envelope(properties: dict[str, Any]) -> dict[str, Any]:
    """A successful answer: these properties and `"success": true`."""
    return _closed({**properties, "success": {"const": True}})


def _error_schema() -> dict[str, Any]:
    """The one error body."""
    schema = _closed(
        {
            "error": {
                "type": "string",
                "pattern": ERROR_CODE_PATTERN,
                "description": "`ERR_CODE: message`; the code is stable, the message is for "
                "people.",
            },
            "success": {"const": False},
        }
    )
    schema["examples"] = [{"error": "ERR_JOB_NOT_FOUND: no job has this uuid", "success": False}]
    return schema


def _time(nullable_: bool = True) -> dict[str, Any]:
    """A time as the API writes it: ISO 8601 UTC with a `Z`."""
    kind: Any = ["string", "null"] if nullable_ else "string"
    return {"type": kind, "format": "date-time"}


def _job_schema() -> dict[str, Any]:
    """A job as `job_to_json` writes it."""
    count = {"type": "integer", "minimum": 0}
    return _closed(
        {
            "id": {"type": "integer", "minimum": 1, "description": "The next page's `after`."},
            "uuid": {"type": "string", "format": "uuid"},
            "job_type": {"type": "string"},
            "data": {"type": "object", "description": "`job_data`, normalised."},
            "queue": {"type": "string", "pattern": QUEUE_NAME.pattern},
            "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
            "status": ref("JobStatus"),
            "job_response": {"type": "object", "description": "What the runs reported."},
            "retry_count": count,
            "retry_interval": count,
            "run_after": _time(),
            "run_at": _time(),
            "request_id": {"type": ["string", "null"]},
            "created_at": _time(nullable_=False),
            "updated_at": _time(nullable_=False),
            "attempts": count,
            "started_at": _time(),
            "completed_at": _time(),
            "runner_id": {"type": ["string", "null"]},
            "cancel_requested_at": _time(),
            "rescue_count": count,
            "schedule_name": {"type": ["string", "null"]},
            "created_by": {
                "type": ["string", "null"],
                "description": "The name of the API key that created the job (`env-1`, ... for "
                "the keys of API_KEYS); null when the CLI, Python code or a schedule did.",
            },
        },
        optional=("request_id",),
    )


def _create_request(job_types: list[str]) -> dict[str, Any]:
    """A `POST /common/jobs/create` body, as `parse_create` reads it."""
    retries = {"type": "integer", "minimum": 0, "maximum": PG_INTEGER_MAX}
    return {
        "type": "object",
        "required": ["job_type", "job_data"],
        "properties": {
            "job_type": _job_type(job_types),
            "job_data": {
                "type": "object",
                "description": "Checked by the job type's pydantic model, in its lax mode "
                '(`"2"` is read as 2 for an integer field).',
            },
            "retry_count": nullable(retries | {"description": "Retries after the first run."}),
            "retry_interval": nullable(retries | {"description": "Seconds between retries."}),
            "queue": nullable(_queue()),
            "priority": nullable(_priority()),
            "run_at": nullable(
                {
                    "type": "string",
                    "format": "date-time",
                    "minLength": 10,
                    "maxLength": 40,
                    "description": "When the job is due (ISO 8601; no offset means UTC), from "
                    "1970 to 9999; the past means now. Not with `delay_seconds`.",
                }
            ),
            "delay_seconds": nullable(
                {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_DELAY_SECONDS,
                    "description": "Seconds from now until the job is due. Not with `run_at`.",
                }
            ),
        },
        # ERR_INVALID_DELAY: a due time and a delay, both given (null is not given).
        "not": {
            "required": ["run_at", "delay_seconds"],
            "properties": {"run_at": {"type": "string"}, "delay_seconds": {"type": "number"}},
        },
    }


def _job_type(job_types: list[str]) -> dict[str, Any]:
    """A job type's name: one of those this API knows (others are ERR_UNKNOWN_JOB_TYPE)."""
    if not job_types:
        return {"type": "string", "minLength": 1}
    return {"type": "string", "enum": job_types, "description": "A job type's name."}


def _queue() -> dict[str, Any]:
    """A queue name."""
    return {"type": "string", "pattern": QUEUE_NAME.pattern, "description": "A queue name."}


def _priority() -> dict[str, Any]:
    """A priority; higher runs first."""
    return {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY}


def _list_request() -> dict[str, Any]:
    """A `POST /common/jobs` body, as `parse_list` reads it."""
    return {
        "type": "object",
        "properties": {
            "job_type": {"type": ["string", "null"], "description": "Only this job type."},
            "status": {
                "description": "Only these states (one, or a list; none or [] is every one).",
                "anyOf": [
                    ref("JobStatus"),
                    {"type": "array", "items": ref("JobStatus")},
                    {"type": "null"},
                ],
            },
            "queue": {
                "description": "Only these queues (one, or a list).",
                "anyOf": [_queue(), {"type": "array", "items": _queue()}, {"type": "null"}],
            },
            "limit": nullable(
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
            ),
            "after": nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 2**63 - 1,
                    "description": "The previous page's `next_after`.",
                }
            ),
        },
        "additionalProperties": False,  # ERR_UNKNOWN_BODY_FIELD: `offset` would be ignored
    }


def _presigned(url_field: str) -> dict[str, Any]:
    """An upload or download URL answer."""
    return _envelope(
        {
            url_field: {"type": "string", "format": "uri"},
            "s3_key": {"type": "string"},
            "s3_bucket": {"type": "string"},
            "expires_in": {"type": "integer", "minimum": 1},
        }
    )


def _schedule_schema() -> dict[str, Any]:
    """A schedule as `schedule_to_json` writes it."""
    return _closed(
        {
            "name": {"type": "string", "pattern": SCHEDULE_NAME.pattern},
            "cron": {"type": "string"},
            "timezone": {"type": "string"},
            "job_type": {"type": "string"},
            "data": {"type": "object"},
            "queue": {"type": ["string", "null"]},
            "priority": {"type": ["integer", "null"]},
            "paused": {"type": "boolean"},
            "source": {"enum": ["api", "code"]},
            "last_tick_at": _time(),
            "next_tick_at": _time(),
            "created_at": _time(nullable_=False),
            "updated_at": _time(nullable_=False),
        }
    )


def _schedule_request(job_types: list[str]) -> dict[str, Any]:
    """A `POST /common/schedules` body, as `parse_schedule` reads it."""
    return {
        "type": "object",
        "required": ["name", "cron", "job_type"],
        "properties": {
            "name": {"type": "string", "pattern": SCHEDULE_NAME.pattern},
            "cron": {
                "type": "string",
                "minLength": 1,
                "description": "5 fields (minute hour day-of-month month day-of-week) that "
                "fire at least once, e.g. `*/5 * * * *`.",
            },
            "job_type": _job_type(job_types),
            "job_data": {"type": ["object", "null"], "description": "Default `{}`."},
            "timezone": {"type": ["string", "null"], "description": "IANA; default `UTC`."},
            "queue": nullable(_queue()),
            "priority": nullable(_priority()),
        },
    }


def _create_schemas(registry: JobTypeRegistry) -> dict[str, Any]:
    """Each job type's `job_data` model, and a create body per job type that the create body
    is one of (discriminated by `job_type`)."""
    names = registry.names
    described = _job_data_schemas([registry.get(name).data_model for name in names])
    if described is None:
        return {}
    data_refs, schemas = described
    variants: dict[str, str] = {}
    for name in names:
        data_ref = data_refs[registry.get(name).data_model]
        variant = _unique(f"CreateJobRequest.{_component_name(name)}", schemas)
        schemas[variant] = {
            "type": "object",
            "description": registry.get(name).description or f"A `{name}` job.",
            "properties": {"job_type": {"const": name}, "job_data": data_ref},
        }
        variants[name] = f"#/components/schemas/{variant}"
    schemas["CreateJobRequest"] = _create_request(names) | {
        "oneOf": [{"$ref": target} for target in variants.values()],
        "discriminator": {"propertyName": "job_type", "mapping": variants},
    }
    return schemas


def _job_data_schemas(
    models: list[type[BaseModel]],
) -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]] | None:
    """A reference into the `JobData.*` components for each pydantic model, and those
    components; None when a model has no JSON schema (`job_data` is then just an object)."""
    unique = list(dict.fromkeys(models))
    try:
        refs, definitions = models_json_schema(
            [(model, "validation") for model in unique],
            ref_template="#/components/schemas/JobData.{model}",
        )
    except PydanticUserError:
        return None
    schemas = {f"JobData.{name}": schema for name, schema in definitions.get("$defs", {}).items()}
    return {model: dict(refs[(model, "validation")]) for model in unique}, schemas


def _component_name(name: str) -> str:
    """A job type's name as a component name (letters, digits, `.`, `-`, `_`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def _unique(name: str, taken: dict[str, Any]) -> str:
    """`name`, or `name_2`, `name_3`... when taken."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate
