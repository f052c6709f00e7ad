"""Every error the product reports, each with its `ERR_...` code and whether it is transient.

Each code is defined here once, and only here: the README's error-code table lists exactly
these codes (`tests/unit/test_error_codes.py` checks both ways). Pure: a driver's exception
becomes one of these at the adapter that meets it (`connectra.db.driver_errors`,
`connectra.search`, `connectra.objectstore`), with the driver's exception kept in `__cause__`.
"""

from __future__ import annotations


class ConnectraError(Exception):
    """something went wrong"""

    code = "ERR_INTERNAL"
    http_status = 500
    transient = False

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


class JobLostError(ConnectraError):
    """the job is no longer held by this runner in the expected state"""

    code = "ERR_JOB_LOST"
    http_status = 409


class RequestError(ConnectraError):
    """the request is invalid"""

    code = "ERR_INVALID_REQUEST"
    http_status = 400


class MissingJobTypeError(RequestError):
    """the 'job_type' field is required; specify a valid job type such as 'insert_csv_file' or 'export_csv_file'"""  # noqa: E501

    code = "ERR_MISSING_JOB_TYPE"


class MissingJobDataError(RequestError):
    """the 'job_data' field is required; include the necessary payload for job execution"""

    code = "ERR_MISSING_JOB_DATA"


class InvalidRetryCountError(RequestError):
    """'retry_count' must be a non-negative integer; use 0 for no retries or a positive number for retry attempts"""  # noqa: E501

    code = "ERR_INVALID_RETRY_COUNT"


class InvalidRetryIntervalError(RequestError):
    """'retry_interval' must be a non-negative integer number of seconds"""

    code = "ERR_INVALID_RETRY_INTERVAL"


class UnknownJobTypeError(RequestError):
    """the 'job_type' is not a known job type"""

    code = "ERR_UNKNOWN_JOB_TYPE"


class InvalidJobDataError(RequestError):
    """'job_data' does not match what this job type expects"""

    code = "ERR_INVALID_JOB_DATA"


class InvalidJsonError(RequestError):
    """the request body must be a JSON object"""

    code = "ERR_INVALID_JSON"


class BodyTooLargeError(RequestError):
    """the request body is too large"""

    code = "ERR_BODY_TOO_LARGE"
    http_status = 413


class RequestTimeoutError(RequestError):
    """the request did not arrive in time"""

    code = "ERR_REQUEST_TIMEOUT"
    http_status = 408


class HeaderTooLargeError(RequestError):
    """the request line or a header field is too long"""

    code = "ERR_HEADER_TOO_LARGE"
    http_status = 431


class MalformedRequestError(RequestError):
    """the request is not valid HTTP/1.1"""

    code = "ERR_MALFORMED_REQUEST"


class UnknownBodyFieldError(RequestError):
    """the request body has a field this endpoint does not take"""

    code = "ERR_UNKNOWN_BODY_FIELD"


class InvalidStatusFilterError(RequestError):
    """'status' must be a list of job states"""

    code = "ERR_INVALID_STATUS"


class InvalidLimitError(RequestError):
    """'limit' must be an integer from 1 to 100"""

    code = "ERR_INVALID_LIMIT"


class InvalidJobTypeError(RequestError):
    """'job_type' must be a string"""

    code = "ERR_INVALID_JOB_TYPE"


class InvalidUuidError(RequestError):
    """the job uuid is not a valid UUID"""

    code = "ERR_INVALID_UUID"


class UnauthorizedError(ConnectraError):
    """a valid 'X-API-Key' header is required"""

    code = "ERR_UNAUTHORIZED"
    http_status = 401


class ScopeRequiredError(ConnectraError):
    """this API key's scope does not allow this request"""

    code = "ERR_SCOPE_REQUIRED"
    http_status = 403


class JobNotFoundError(ConnectraError):
    """no job has this uuid"""

    code = "ERR_JOB_NOT_FOUND"
    http_status = 404


class JobFinishedError(ConnectraError):
    """the job has finished and cannot be cancelled"""

    code = "ERR_JOB_FINISHED"
    http_status = 409


class JobNotRetryableError(ConnectraError):
    """only a failed or failed_final job can be retried"""

    code = "ERR_JOB_NOT_RETRYABLE"
    http_status = 409


class IdempotencyKeyReusedError(ConnectraError):
    """this Idempotency-Key was already used with a different request"""

    code = "ERR_IDEMPOTENCY_KEY_REUSED"
    http_status = 409


class InvalidIdempotencyKeyError(RequestError):
    """the Idempotency-Key header must be 1 to 255 printable ASCII characters"""

    code = "ERR_INVALID_IDEMPOTENCY_KEY"


class BucketNotConfiguredError(ConnectraError):
    """no S3 bucket is given and none is configured; set S3_BUCKET or pass s3_bucket"""

    code = "ERR_S3_BUCKET_NOT_CONFIGURED"
    http_status = 503


class ServiceNotConfiguredError(ConnectraError):
    """a service this job needs (object store or database) is not configured"""

    code = "ERR_SERVICE_NOT_CONFIGURED"
    http_status = 503


class RouteNotFoundError(ConnectraError):
    """no such endpoint"""

    code = "ERR_NOT_FOUND"
    http_status = 404


class MethodNotAllowedError(ConnectraError):
    """this endpoint does not accept that HTTP method"""

    code = "ERR_METHOD_NOT_ALLOWED"
    http_status = 405


class DatabaseUnavailableError(ConnectraError):
    """the database is unavailable; try again shortly"""

    code = "ERR_DATABASE_UNAVAILABLE"
    http_status = 503
    transient = True


class JobFailedError(ConnectraError):
    """the job failed"""

    code = "ERR_JOB_FAILED"
    transient = True


class InvalidQueueError(RequestError):
    """'queue' must be 1 to 63 letters, digits, '_', '.', ':' or '-', starting with a letter or a digit"""  # noqa: E501

    code = "ERR_INVALID_QUEUE"


class InvalidPriorityError(RequestError):
    """'priority' must be an integer from -100 to 100 (higher runs first)"""

    code = "ERR_INVALID_PRIORITY"


class InvalidRunAtError(RequestError):
    """'run_at' must be an ISO 8601 date and time, e.g. 2026-12-03T18:00:00Z"""

    code = "ERR_INVALID_RUN_AT"


class InvalidDelayError(RequestError):
    """'delay_seconds' must be a number of seconds from 0 to 31536000, and not given with 'run_at'"""  # noqa: E501

    code = "ERR_INVALID_DELAY"


class InvalidCursorError(RequestError):
    """'after' must be the positive integer id of a job, from the previous page's 'next_after'"""

    code = "ERR_INVALID_CURSOR"


class InvalidJobResultError(ConnectraError):
    """the handler returned a result that cannot be stored as the job's response"""

    code = "ERR_INVALID_JOB_RESULT"


class PermanentJobError(JobFailedError):
    """the job failed and another attempt cannot help"""

    transient = False


class JobTimeoutError(ConnectraError):
    """the job ran past its hard time limit and was stopped"""

    code = "ERR_TIMEOUT"
    transient = True


class RescuedError(ConnectraError):
    """the runner holding the job stopped heartbeating; the job was taken back"""

    code = "ERR_RESCUED"
    transient = True


# -- job data: services, fields, VQL, schedules -----------------------------------------------


class UnknownFieldError(RequestError):
    """a field name is not one of the service's fields"""

    code = "ERR_UNKNOWN_FIELD"


class UnknownServiceError(RequestError):
    """'service' must be 'contact' or 'company'"""

    code = "ERR_UNKNOWN_SERVICE"


class MissingSelectColumnsError(RequestError):
    """'select_columns' is required for export operations; specify at least one column to include in the output"""  # noqa: E501

    code = "ERR_MISSING_SELECT_COLUMNS"


class InvalidVqlError(RequestError):
    """the 'vql' query is not valid"""

    code = "ERR_INVALID_VQL"


class InvalidScheduleError(RequestError):
    """the schedule is invalid: it needs a name, a 5-field cron expression and a known time zone"""

    code = "ERR_INVALID_SCHEDULE"


class ScheduleNotFoundError(RequestError):
    """no schedule has this name"""

    code = "ERR_SCHEDULE_NOT_FOUND"
    http_status = 404


class ScheduleExistsError(RequestError):
    """a schedule with this name exists already; remove it first or choose another name"""

    code = "ERR_SCHEDULE_EXISTS"
    http_status = 409


# -- files, buckets and keys ------------------------------------------------------------------


class InvalidFilenameError(RequestError):
    """'filename' must be a plain file name: letters, digits, '.', '_' and '-' only"""

    code = "ERR_INVALID_FILENAME"


class InvalidExpiryError(RequestError):
    """'expires_in' must be a whole number of seconds within the configured maximum"""

    code = "ERR_INVALID_EXPIRES_IN"


class ObjectStoreNotConfiguredError(ConnectraError):
    """object storage is not configured in this process"""

    code = "ERR_S3_NOT_CONFIGURED"
    http_status = 503


class ExportNotReadyError(ConnectraError):
    """the job has no file to download: only a completed export has one"""

    code = "ERR_EXPORT_NOT_READY"
    http_status = 409


class FileExpiredError(ConnectraError):
    """the export's file was deleted by retention (RESULT_TTL_DAYS); run the export again"""

    code = "ERR_FILE_EXPIRED"
    http_status = 410


class BucketNotAllowedError(ConnectraError):
    """this bucket is not one jobs may use (S3_BUCKET or one of S3_ALLOWED_BUCKETS)"""

    code = "ERR_BUCKET_NOT_ALLOWED"
    http_status = 403


class KeyNotAllowedError(ConnectraError):
    """this object key is not one jobs may use: outside S3_ALLOWED_PREFIXES, or with a '.' or '..' segment"""  # noqa: E501

    code = "ERR_KEY_NOT_ALLOWED"
    http_status = 403


# -- the object store (raised by connectra.objectstore) ---------------------------------------


class ObjectStoreError(ConnectraError):
    """the object store request failed"""

    code = "ERR_S3_REQUEST_FAILED"


class ObjectNotFound(ObjectStoreError):
    """the object does not exist"""

    code = "ERR_S3_OBJECT_NOT_FOUND"


class BucketNotFound(ObjectStoreError):
    """the bucket does not exist"""

    code = "ERR_S3_BUCKET_NOT_FOUND"


class AccessDenied(ObjectStoreError):
    """the object store refused the credentials or the request"""

    code = "ERR_S3_ACCESS_DENIED"


class ObjectStoreUnavailable(ObjectStoreError):
    """the object store is unreachable, overloaded or failing; try again later"""

    code = "ERR_S3_UNAVAILABLE"
    transient = True


class ObjectChanged(ObjectStoreError):
    """the object was replaced while it was being read; the next attempt reads the new one"""

    code = "ERR_S3_OBJECT_CHANGED"
    transient = True


class InvalidRange(ObjectStoreError):
    """the requested start offset lies past the end of the object"""

    code = "ERR_S3_INVALID_RANGE"


# -- Elasticsearch (raised by connectra.search and the processors that query it) --------------


class SearchError(ConnectraError):
    """the Elasticsearch request failed"""

    code = "ERR_ELASTICSEARCH"


class SearchBulkError(SearchError):
    """Elasticsearch refused documents of a bulk request"""

    code = "ERR_ELASTICSEARCH_BULK"


class SearchUnavailableError(SearchError):
    """Elasticsearch is unreachable, overloaded or failing; try again later"""

    code = "ERR_SEARCH_UNAVAILABLE"
    transient = True


class SearchIndexNotFoundError(SearchError):
    """the service's Elasticsearch index does not exist"""

    code = "ERR_SEARCH_INDEX_NOT_FOUND"


class SearchRequestError(SearchError):
    """Elasticsearch refused the export query"""

    code = "ERR_SEARCH_REQUEST_FAILED"


# -- PostgreSQL (raised by connectra.db) ------------------------------------------------------


class DatabaseError(ConnectraError):
    """a database statement failed"""

    code = "ERR_DATABASE"


class MigrationError(ConnectraError):
    """a migration could not be applied"""

    code = "ERR_MIGRATION"


class SchemaOutdatedError(ConnectraError):
    """the database schema is not up to date; run `connectra migrate` first"""

    code = "ERR_SCHEMA_OUTDATED"


# -- CSV imports ------------------------------------------------------------------------------


class EmptyFileError(ConnectraError):
    """the CSV file is empty: it has no header row"""

    code = "ERR_EMPTY_FILE"


class HeaderError(ConnectraError):
    """the CSV header row is not usable"""

    code = "ERR_INVALID_HEADER"


class MissingColumnsError(HeaderError):
    """the CSV file lacks a required column"""

    code = "ERR_MISSING_COLUMNS"


class DuplicateColumnsError(HeaderError):
    """the CSV header names a column more than once"""

    code = "ERR_DUPLICATE_COLUMNS"


# -- managed API keys -------------------------------------------------------------------------


class InvalidKeyNameError(ConnectraError):
    """a key name is 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or a digit, and not 'env-...' (the names of API_KEYS)"""  # noqa: E501

    code = "ERR_INVALID_KEY_NAME"
    http_status = 400


class ApiKeyExistsError(ConnectraError):
    """a key with this name exists already (revoked keys keep their names)"""

    code = "ERR_API_KEY_EXISTS"
    http_status = 409


class ApiKeyNotFoundError(ConnectraError):
    """no active key has this name"""

    code = "ERR_API_KEY_NOT_FOUND"
    http_status = 404


# -- starting a process -----------------------------------------------------------------------


class EmbeddedDatabaseError(ConnectraError):
    """the embedded PostgreSQL could not be started; set DATABASE_URL to use a server"""

    code = "ERR_EMBEDDED_DATABASE"


class LocalS3Error(ConnectraError):
    """the local S3 server could not be started; install 'connectra-jobs[embedded]' or set S3_ENDPOINT_URL"""  # noqa: E501

    code = "ERR_LOCAL_S3"


class ListenError(ConnectraError):
    """the metrics and health listener could not listen"""

    code = "ERR_LISTEN"
