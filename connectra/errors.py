"""Every error the product reports, each with its `ERR_...` code and whether it is transient.

Each code is defined here once, and only here; drivers' exceptions become these at adapters.
"""

from __future__ import annotations

from typing import ClassVar, Literal

# Who reports a code: the API answers it, a job records it, or the runners and the CLI use it.
Reporter = Literal["api", "job", "runtime"]


class ConnectraError(Exception):
    """something went wrong"""

    code = "ERR_INTERNAL"
    http_status = 500
    transient = False
    # For the error-code reference only, beside the docstring (the default message, kept short):
    # who reports the code (the first is where it is listed), when it happens, and, for a code
    # whose transience depends on the case, when it is transient. Each class with a code of its
    # own sets them in its own body: the reference reads no inherited value. (A base of other
    # coded classes repeats the annotation, or mypy pins its subclasses to its tuple's length.)
    reported_by: ClassVar[tuple[Reporter, ...]] = ("api", "job")
    when: ClassVar[str] = (
        "an unexpected exception: in the API a bug, with details in the log only; in a job any "
        "exception that is no Connectra error, with its type and traceback in "
        "`job_response.error.details`"
    )
    transient_when: ClassVar[str] = "yes in a job, as any unexpected exception"

    def __init__(self, message: str | None = None, *, transient: bool | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        if transient is not None:  # an error whose kind depends on the case (a driver's)
            self.transient = transient

    @property
    def message(self) -> str:
        """The human part of the error."""
        return str(self)

    def render(self) -> str:
        """The seed's error string: `ERR_CODE: message`."""
        return f"{self.code}: {self.message}"


class InvalidTransitionError(ConnectraError):
    """the state machine does not allow this change of status"""

    code = "ERR_INVALID_TRANSITION"
    http_status = 409
    reported_by = ("runtime",)
    when = "a status change the state machine does not allow"


class JobLostError(ConnectraError):
    """the job is no longer held by this runner in the expected state"""

    code = "ERR_JOB_LOST"
    http_status = 409
    reported_by = ("runtime",)
    when = "a status write found the job moved under its runner (cancelled, rescued)"


class RequestError(ConnectraError):
    """the request is invalid"""

    code = "ERR_INVALID_REQUEST"
    http_status = 400
    reported_by: ClassVar[tuple[Reporter, ...]] = ("api",)
    when = "any other request aiohttp itself refuses (rare)"


class MissingJobTypeError(RequestError):
    """the 'job_type' field is required; specify a valid job type such as 'insert_csv_file' or 'export_csv_file'"""  # noqa: E501

    code = "ERR_MISSING_JOB_TYPE"
    reported_by = ("api",)
    when = "`job_type` missing, null or empty"


class MissingJobDataError(RequestError):
    """the 'job_data' field is required; include the necessary payload for job execution"""

    code = "ERR_MISSING_JOB_DATA"
    reported_by = ("api",)
    when = "`job_data` missing or null"


class InvalidRetryCountError(RequestError):
    """'retry_count' must be a non-negative integer; use 0 for no retries or a positive number for retry attempts"""  # noqa: E501

    code = "ERR_INVALID_RETRY_COUNT"
    reported_by = ("api",)
    when = "`retry_count` not a non-negative integer"


class InvalidRetryIntervalError(RequestError):
    """'retry_interval' must be a non-negative integer number of seconds"""

    code = "ERR_INVALID_RETRY_INTERVAL"
    reported_by = ("api",)
    when = "`retry_interval` not a non-negative integer"


class UnknownJobTypeError(RequestError):
    """the 'job_type' is not a known job type"""

    code = "ERR_UNKNOWN_JOB_TYPE"
    reported_by = ("api",)
    when = "no job type has that name"


class InvalidJobDataError(RequestError):
    """'job_data' does not match what this job type expects"""

    code = "ERR_INVALID_JOB_DATA"
    reported_by = ("api", "job")
    when = (
        "`job_data` is not an object, or does not match the job type's model (checked again "
        "when the job runs)"
    )


class InvalidJsonError(RequestError):
    """the request body must be a JSON object"""

    code = "ERR_INVALID_JSON"
    reported_by = ("api",)
    when = (
        "malformed JSON, a body that is not an object, or JSON PostgreSQL cannot store (NaN, NUL, "
        "too deep)"
    )


class BodyTooLargeError(RequestError):
    """the request body is too large"""

    code = "ERR_BODY_TOO_LARGE"
    http_status = 413
    reported_by = ("api",)
    when = "body over `API_MAX_BODY_BYTES`"


class RequestTimeoutError(RequestError):
    """the request did not arrive in time"""

    code = "ERR_REQUEST_TIMEOUT"
    http_status = 408
    reported_by = ("api",)
    when = (
        "the headers (`API_HEADER_TIMEOUT_SECONDS`) or the body (`API_BODY_TIMEOUT_SECONDS`) came "
        "too slowly"
    )


class HeaderTooLargeError(RequestError):
    """the request line or a header field is too long"""

    code = "ERR_HEADER_TOO_LARGE"
    http_status = 431
    reported_by = ("api",)
    when = "a request line or header field over 8,190 bytes, or over 128 header fields"


class MalformedRequestError(RequestError):
    """the request is not valid HTTP/1.1"""

    code = "ERR_MALFORMED_REQUEST"
    reported_by = ("api",)
    when = "the request is not HTTP/1.1 (answered by the HTTP server itself)"


class UnknownBodyFieldError(RequestError):
    """the request body has a field this endpoint does not take"""

    code = "ERR_UNKNOWN_BODY_FIELD"
    reported_by = ("api",)
    when = (
        "a field the listing (`POST /common/jobs`) does not take, such as `offset`; the message "
        "names it"
    )


class InvalidStatusFilterError(RequestError):
    """'status' must be a list of job states"""

    code = "ERR_INVALID_STATUS"
    reported_by = ("api",)
    when = "a `status` filter that is not a job state"


class InvalidLimitError(RequestError):
    """'limit' must be an integer from 1 to 100"""

    code = "ERR_INVALID_LIMIT"
    reported_by = ("api",)
    when = "`limit` not an integer from 1 to 100"


class InvalidJobTypeError(RequestError):
    """'job_type' must be a string"""

    code = "ERR_INVALID_JOB_TYPE"
    reported_by = ("api",)
    when = "`job_type` is not a string"


class InvalidUuidError(RequestError):
    """the job uuid is not a valid UUID"""

    code = "ERR_INVALID_UUID"
    reported_by = ("api",)
    when = "the `{uuid}` in the path is not a UUID"


class UnauthorizedError(ConnectraError):
    """a valid 'X-API-Key' header is required"""

    code = "ERR_UNAUTHORIZED"
    http_status = 401
    reported_by = ("api",)
    when = "`X-API-Key` missing or not accepted (unknown, revoked, rotated away)"


class ScopeRequiredError(ConnectraError):
    """this API key's scope does not allow this request"""

    code = "ERR_SCOPE_REQUIRED"
    http_status = 403
    reported_by = ("api",)
    when = "the key's scope does not cover the endpoint"


class JobNotFoundError(ConnectraError):
    """no job has this uuid"""

    code = "ERR_JOB_NOT_FOUND"
    http_status = 404
    reported_by = ("api",)
    when = "no job has this uuid (for a key without `admin`: none it created)"


class JobFinishedError(ConnectraError):
    """the job has finished and cannot be cancelled"""

    code = "ERR_JOB_FINISHED"
    http_status = 409
    reported_by = ("api",)
    when = "cancel of a finished job"


class JobNotRetryableError(ConnectraError):
    """only a failed or failed_final job can be retried"""

    code = "ERR_JOB_NOT_RETRYABLE"
    http_status = 409
    reported_by = ("api",)
    when = "manual retry of a job that is not failed"


class IdempotencyKeyReusedError(ConnectraError):
    """this Idempotency-Key was already used with a different request"""

    code = "ERR_IDEMPOTENCY_KEY_REUSED"
    http_status = 409
    reported_by = ("api",)
    when = "the key was used with another request"


class InvalidIdempotencyKeyError(RequestError):
    """the Idempotency-Key header must be 1 to 255 printable ASCII characters"""

    code = "ERR_INVALID_IDEMPOTENCY_KEY"
    reported_by = ("api",)
    when = "malformed `Idempotency-Key` header"


class BucketNotConfiguredError(ConnectraError):
    """no S3 bucket is given and none is configured; set S3_BUCKET or pass s3_bucket"""

    code = "ERR_S3_BUCKET_NOT_CONFIGURED"
    http_status = 503
    reported_by = ("api",)
    when = "no bucket given and no `S3_BUCKET`"


class ServiceNotConfiguredError(ConnectraError):
    """a service this job needs (object store or database) is not configured"""

    code = "ERR_SERVICE_NOT_CONFIGURED"
    http_status = 503
    reported_by = ("job",)
    when = "a service the job needs (object store or database) is not configured"


class RouteNotFoundError(ConnectraError):
    """no such endpoint"""

    code = "ERR_NOT_FOUND"
    http_status = 404
    reported_by = ("api",)
    when = "no such endpoint"


class MethodNotAllowedError(ConnectraError):
    """this endpoint does not accept that HTTP method"""

    code = "ERR_METHOD_NOT_ALLOWED"
    http_status = 405
    reported_by = ("api",)
    when = "wrong HTTP method"


class DatabaseUnavailableError(ConnectraError):
    """the database is unavailable; try again shortly"""

    code = "ERR_DATABASE_UNAVAILABLE"
    http_status = 503
    transient = True
    reported_by = ("api",)
    when = "PostgreSQL unreachable; try again"


class JobFailedError(ConnectraError):
    """the job failed"""

    code = "ERR_JOB_FAILED"
    transient = True
    reported_by: ClassVar[tuple[Reporter, ...]] = ("job",)
    when = (
        "a handler raised `JobFailedError` (the `sleep` demo's deliberate failure) or "
        "`PermanentJobError`"
    )


class InvalidQueueError(RequestError):
    """'queue' must be 1 to 63 letters, digits, '_', '.', ':' or '-', starting with a letter or a digit"""  # noqa: E501

    code = "ERR_INVALID_QUEUE"
    reported_by = ("api",)
    when = (
        "a `queue` (on create or in a filter) that is not a valid queue name; a valid name no job "
        "has lists nothing"
    )


class InvalidPriorityError(RequestError):
    """'priority' must be an integer from -100 to 100 (higher runs first)"""

    code = "ERR_INVALID_PRIORITY"
    reported_by = ("api",)
    when = "`priority` not an integer from -100 to 100"


class InvalidRunAtError(RequestError):
    """'run_at' must be an ISO 8601 date and time, e.g. 2026-12-03T18:00:00Z"""

    code = "ERR_INVALID_RUN_AT"
    reported_by = ("api",)
    when = "`run_at` not an ISO 8601 date and time from 1970 to 9999"


class InvalidDelayError(RequestError):
    """'delay_seconds' must be a number of seconds from 0 to 31536000, and not given with 'run_at'"""  # noqa: E501

    code = "ERR_INVALID_DELAY"
    reported_by = ("api",)
    when = "`delay_seconds` not a number from 0 to 31,536,000, or given with `run_at`"


class InvalidCursorError(RequestError):
    """'after' must be the positive integer id of a job, from the previous page's 'next_after'"""

    code = "ERR_INVALID_CURSOR"
    reported_by = ("api",)
    when = "`after` not a positive integer"


class InvalidJobResultError(ConnectraError):
    """the handler returned a result that cannot be stored as the job's response"""

    code = "ERR_INVALID_JOB_RESULT"
    reported_by = ("job",)
    when = "a handler's result is not a dict, or one JSON cannot hold"


class PermanentJobError(JobFailedError):
    """the job failed and another attempt cannot help"""

    transient = False


class JobTimeoutError(ConnectraError):
    """the job ran past its hard time limit and was stopped"""

    code = "ERR_TIMEOUT"
    transient = True
    reported_by = ("job",)
    when = "the handler ran past its hard time limit (`JOB_TIME_LIMITS`)"


class RescuedError(ConnectraError):
    """the runner holding the job stopped heartbeating; the job was taken back"""

    code = "ERR_RESCUED"
    transient = True
    reported_by = ("job",)
    when = (
        "the job's runner stopped heartbeating and the job was taken back (see Leases and rescue)"
    )


# -- job data: services, fields, VQL, schedules -----------------------------------------------


class UnknownFieldError(RequestError):
    """a field name is not one of the service's fields"""

    code = "ERR_UNKNOWN_FIELD"
    reported_by = ("api",)
    when = "an export's query names a field its service does not have"


class UnknownServiceError(RequestError):
    """'service' must be 'contact' or 'company'"""

    code = "ERR_UNKNOWN_SERVICE"
    reported_by = ("api",)
    when = "a job's `service` is not one Connectra knows"


class MissingSelectColumnsError(RequestError):
    """'select_columns' is required for export operations; specify at least one column to include in the output"""  # noqa: E501

    code = "ERR_MISSING_SELECT_COLUMNS"
    reported_by = ("api",)
    when = "an export's VQL has no `select_columns`"


class InvalidVqlError(RequestError):
    """the 'vql' query is not valid"""

    code = "ERR_INVALID_VQL"
    reported_by = ("api",)
    when = "an export's query is not valid VQL"


class InvalidScheduleError(RequestError):
    """the schedule is invalid: it needs a name, a 5-field cron expression and a known time zone"""

    code = "ERR_INVALID_SCHEDULE"
    reported_by = ("api",)
    when = (
        "a schedule without `name` or `cron`, or with an invalid name, cron expression (5 fields; "
        "one that never fires, such as `0 0 31 2 *`, too) or time zone"
    )


class ScheduleNotFoundError(RequestError):
    """no schedule has this name"""

    code = "ERR_SCHEDULE_NOT_FOUND"
    http_status = 404
    reported_by = ("api",)
    when = "no schedule has this name"


class ScheduleExistsError(RequestError):
    """a schedule with this name exists already; remove it first or choose another name"""

    code = "ERR_SCHEDULE_EXISTS"
    http_status = 409
    reported_by = ("api",)
    when = "a schedule with this name exists already"


# -- files, buckets and keys ------------------------------------------------------------------


class InvalidFilenameError(RequestError):
    """'filename' must be a plain file name: letters, digits, '.', '_' and '-' only"""

    code = "ERR_INVALID_FILENAME"
    reported_by = ("api",)
    when = "bad `filename` of `upload-url`"


class InvalidExpiryError(RequestError):
    """'expires_in' must be a whole number of seconds within the configured maximum"""

    code = "ERR_INVALID_EXPIRES_IN"
    reported_by = ("api",)
    when = "bad `expires_in` of a presigned URL"


class ObjectStoreNotConfiguredError(ConnectraError):
    """object storage is not configured in this process"""

    code = "ERR_S3_NOT_CONFIGURED"
    http_status = 503
    reported_by = ("api",)
    when = "no object store in this process"


class ExportNotReadyError(ConnectraError):
    """the job has no file to download: only a completed export has one"""

    code = "ERR_EXPORT_NOT_READY"
    http_status = 409
    reported_by = ("api",)
    when = "download-url of a job that is not a completed export"


class FileExpiredError(ConnectraError):
    """the export's file was deleted by retention (RESULT_TTL_DAYS); run the export again"""

    code = "ERR_FILE_EXPIRED"
    http_status = 410
    reported_by = ("api",)
    when = "download-url of an export whose file retention deleted (`RESULT_TTL_DAYS`)"


class BucketNotAllowedError(ConnectraError):
    """this bucket is not one jobs may use (S3_BUCKET or one of S3_ALLOWED_BUCKETS)"""

    code = "ERR_BUCKET_NOT_ALLOWED"
    http_status = 403
    reported_by = ("api", "job")
    when = (
        "a job (on create, when it runs, or a download-url) names a bucket other than "
        "`S3_BUCKET` and `S3_ALLOWED_BUCKETS`"
    )


class KeyNotAllowedError(ConnectraError):
    """this object key is not one jobs may use: outside S3_ALLOWED_PREFIXES, or with a '.' or '..' segment"""  # noqa: E501

    code = "ERR_KEY_NOT_ALLOWED"
    http_status = 403
    reported_by = ("api", "job")
    when = (
        "a job's key outside `S3_ALLOWED_PREFIXES`, or with a `.` or `..` segment (on create and "
        "when the job runs)"
    )


# -- the object store (raised by connectra.objectstore) ---------------------------------------


class ObjectStoreError(ConnectraError):
    """the object store request failed"""

    code = "ERR_S3_REQUEST_FAILED"
    reported_by: ClassVar[tuple[Reporter, ...]] = ("job",)
    when = "another refused S3 request"


class ObjectNotFound(ObjectStoreError):
    """the object does not exist"""

    code = "ERR_S3_OBJECT_NOT_FOUND"
    reported_by = ("job",)
    when = "the object does not exist"


class BucketNotFound(ObjectStoreError):
    """the bucket does not exist"""

    code = "ERR_S3_BUCKET_NOT_FOUND"
    reported_by = ("job",)
    when = "the bucket does not exist"


class AccessDenied(ObjectStoreError):
    """the object store refused the credentials or the request"""

    code = "ERR_S3_ACCESS_DENIED"
    reported_by = ("job",)
    when = "the object store refused the credentials or the request"


class ObjectStoreUnavailable(ObjectStoreError):
    """the object store is unreachable, overloaded or failing; try again later"""

    code = "ERR_S3_UNAVAILABLE"
    transient = True
    reported_by = ("job",)
    when = "S3 unreachable, throttling or answering 5xx"


class ObjectChanged(ObjectStoreError):
    """the object was replaced while it was being read; the next attempt reads the new one"""

    code = "ERR_S3_OBJECT_CHANGED"
    transient = True
    reported_by = ("job",)
    when = "the object was replaced while being read; the next attempt reads the new one"


class InvalidRange(ObjectStoreError):
    """the requested start offset lies past the end of the object"""

    code = "ERR_S3_INVALID_RANGE"
    reported_by = ("job",)
    when = "a resumed read starts past the end of the object"


# -- Elasticsearch (raised by connectra.search and the processors that query it) --------------


class SearchError(ConnectraError):
    """the Elasticsearch request failed"""

    code = "ERR_ELASTICSEARCH"
    reported_by: ClassVar[tuple[Reporter, ...]] = ("job",)
    when = "another Elasticsearch error"
    transient_when = "when 429, 5xx or a lost connection"


class SearchBulkError(SearchError):
    """Elasticsearch refused documents of a bulk request"""

    code = "ERR_ELASTICSEARCH_BULK"
    reported_by = ("job",)
    when = "import: Elasticsearch refused documents of a bulk request"


class SearchUnavailableError(SearchError):
    """Elasticsearch is unreachable, overloaded or failing; try again later"""

    code = "ERR_SEARCH_UNAVAILABLE"
    transient = True
    reported_by = ("job",)
    when = "import or export: Elasticsearch unreachable, overloaded (429) or failing (5xx)"


class SearchIndexNotFoundError(SearchError):
    """the service's Elasticsearch index does not exist"""

    code = "ERR_SEARCH_INDEX_NOT_FOUND"
    reported_by = ("job",)
    when = "export: the service's index does not exist"


class SearchRequestError(SearchError):
    """Elasticsearch refused the export query"""

    code = "ERR_SEARCH_REQUEST_FAILED"
    reported_by = ("job",)
    when = "export: Elasticsearch refused the query"


# -- PostgreSQL (raised by connectra.db) ------------------------------------------------------


class DatabaseError(ConnectraError):
    """a database statement failed"""

    code = "ERR_DATABASE"
    reported_by = ("job",)
    when = "another PostgreSQL error (constraint, data, ...)"
    transient_when = "when a lost connection, serialization failure, deadlock or lack of resources"


class MigrationError(ConnectraError):
    """a migration could not be applied"""

    code = "ERR_MIGRATION"
    reported_by = ("runtime",)
    when = "a migration could not be applied (an applied migration file was edited)"


class SchemaOutdatedError(ConnectraError):
    """the database schema is not up to date; run `connectra migrate` first"""

    code = "ERR_SCHEMA_OUTDATED"
    reported_by = ("runtime",)
    when = "the database schema is behind the code: run `connectra migrate`"


# -- CSV imports ------------------------------------------------------------------------------


class EmptyFileError(ConnectraError):
    """the CSV file is empty: it has no header row"""

    code = "ERR_EMPTY_FILE"
    reported_by = ("job",)
    when = "import: the file has no header row"


class HeaderError(ConnectraError):
    """the CSV header row is not usable"""

    code = "ERR_INVALID_HEADER"
    reported_by: ClassVar[tuple[Reporter, ...]] = ("job",)
    when = "import: the header row is unreadable"


class MissingColumnsError(HeaderError):
    """the CSV file lacks a required column"""

    code = "ERR_MISSING_COLUMNS"
    reported_by = ("job",)
    when = "import: the header lacks a required column"


class DuplicateColumnsError(HeaderError):
    """the CSV header names a column more than once"""

    code = "ERR_DUPLICATE_COLUMNS"
    reported_by = ("job",)
    when = "import: the header names a column more than once"


# -- managed API keys -------------------------------------------------------------------------


class InvalidKeyNameError(ConnectraError):
    """a key name is 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or a digit, and not 'env-...' (the names of API_KEYS)"""  # noqa: E501

    code = "ERR_INVALID_KEY_NAME"
    http_status = 400
    reported_by = ("runtime",)
    when = "`connectra keys` was given a bad key name"


class ApiKeyExistsError(ConnectraError):
    """a key with this name exists already (revoked keys keep their names)"""

    code = "ERR_API_KEY_EXISTS"
    http_status = 409
    reported_by = ("runtime",)
    when = "`connectra keys create` with a name in use"


class ApiKeyNotFoundError(ConnectraError):
    """no active key has this name"""

    code = "ERR_API_KEY_NOT_FOUND"
    http_status = 404
    reported_by = ("runtime",)
    when = "`connectra keys` names no active key"


# -- starting a process -----------------------------------------------------------------------


class EmbeddedDatabaseError(ConnectraError):
    """the embedded PostgreSQL could not be started; set DATABASE_URL to use a server"""

    code = "ERR_EMBEDDED_DATABASE"
    reported_by = ("runtime",)
    when = "`connectra run` could not start the embedded PostgreSQL"


class LocalS3Error(ConnectraError):
    """the local S3 server could not be started; install 'connectra-jobs[embedded]' or set S3_ENDPOINT_URL"""  # noqa: E501

    code = "ERR_LOCAL_S3"
    reported_by = ("runtime",)
    when = (
        "`connectra run` could not start the local S3 server (a busy `LOCAL_S3_PORT`, moto not"
        " installed), or it exited while `connectra run` ran"
    )


class ListenError(ConnectraError):
    """the metrics and health listener could not listen"""

    code = "ERR_LISTEN"
    reported_by = ("runtime",)
    when = "the metrics and health listener's port is taken"
