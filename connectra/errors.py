"""Every error the product reports, each with its `ERR_...` code and whether it is transient."""

from __future__ import annotations


class ConnectraError(Exception):
    """something went wrong"""

    code = "ERR_INTERNAL"
    http_status = 500
    transient = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())

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
