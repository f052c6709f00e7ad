"""The job model: states, allowed transitions and the two runner kinds. Pure; no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from connectra.errors import (
    InvalidDelayError,
    InvalidPriorityError,
    InvalidQueueError,
    InvalidRunAtError,
    InvalidTransitionError,
)


class JobStatus(StrEnum):
    """Where a job is in its life (the seed's states, and `scheduled` for delayed jobs)."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    IN_QUEUE = "in_queue"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRY_IN_QUEUED = "retry_in_queued"
    RETRYING = "retrying"
    FAILED_FINAL = "failed_final"
    ABORTED = "aborted"


S = JobStatus

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # A delayed job becomes open when it falls due (or is cancelled before).
    S.SCHEDULED: frozenset({S.OPEN, S.ABORTED}),
    S.OPEN: frozenset({S.IN_QUEUE, S.ABORTED}),
    # A queued job is started, handed back (shutdown, rescue) or cancelled.
    S.IN_QUEUE: frozenset({S.PROCESSING, S.OPEN, S.ABORTED}),
    # A run cut short by a shutdown goes back to open without burning an attempt; a run whose
    # runner died is rescued to failed or failed_final like any failure.
    S.PROCESSING: frozenset({S.COMPLETED, S.FAILED, S.FAILED_FINAL, S.OPEN, S.ABORTED}),
    # `open` here is the manual retry (a fresh attempt budget).
    S.FAILED: frozenset({S.RETRY_IN_QUEUED, S.OPEN, S.ABORTED}),
    S.RETRY_IN_QUEUED: frozenset({S.RETRYING, S.FAILED, S.ABORTED}),
    S.RETRYING: frozenset({S.COMPLETED, S.FAILED, S.FAILED_FINAL, S.ABORTED}),
    S.FAILED_FINAL: frozenset({S.OPEN}),
    S.COMPLETED: frozenset(),
    S.ABORTED: frozenset(),
}

# No runner will touch a job in these states again (a manual retry may reopen failed_final).
FINISHED_STATUSES = frozenset({S.COMPLETED, S.FAILED_FINAL, S.ABORTED})
# States in which a runner holds the job (in its queue or running it).
HELD_STATUSES = frozenset({S.IN_QUEUE, S.PROCESSING, S.RETRY_IN_QUEUED, S.RETRYING})
# States a manual retry may reopen.
REOPENABLE_STATUSES = frozenset({S.FAILED, S.FAILED_FINAL})


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise unless the state machine allows moving from `current` to `target`."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransitionError(f"a job cannot go from {current} to {target}")


@dataclass(frozen=True, slots=True)
class RunnerKind:
    """The three states one runner moves jobs through, and where it hands jobs back."""

    name: str
    claims: JobStatus
    queued: JobStatus
    running: JobStatus
    handed_back: JobStatus

    def __post_init__(self) -> None:
        """A runner kind must describe a path the state machine allows."""
        check_transition(self.claims, self.queued)
        check_transition(self.queued, self.running)
        check_transition(self.queued, self.handed_back)
        for outcome in (S.COMPLETED, S.FAILED, S.FAILED_FINAL, S.ABORTED):
            check_transition(self.running, outcome)


FIRST_TIME = RunnerKind("first_time", S.OPEN, S.IN_QUEUE, S.PROCESSING, S.OPEN)
RETRY = RunnerKind("retry", S.FAILED, S.RETRY_IN_QUEUED, S.RETRYING, S.FAILED)
RUNNER_KINDS = {kind.name: kind for kind in (FIRST_TIME, RETRY)}


# The job type whose result is a file to download (the export processor registers it).
EXPORT_JOB_TYPE = "export_csv_file"

DEFAULT_QUEUE = "default"
MIN_PRIORITY, MAX_PRIORITY = -100, 100
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


def check_queue(name: object) -> str:
    """A queue name: 1 to 63 letters, digits, `_`, `.`, `:` or `-`, starting with a letter or
    digit (the database checks the same)."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        shown = repr(name)[:50]
        raise InvalidQueueError(
            f"invalid queue name {shown}: 1 to 63 characters of letters, digits, '_', '.', ':' "
            "or '-', starting with a letter or a digit"
        )
    return name


def check_priority(value: object) -> int:
    """A priority: an integer from MIN_PRIORITY to MAX_PRIORITY; higher runs first."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPriorityError()
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidPriorityError()
    return value


MAX_DELAY_SECONDS = 365 * 24 * 3600
# Due times outside these cannot be stored and shown faithfully (asyncpg writes year 1 as
# -infinity, and a year-9999 time with an offset has no UTC value); none is a real due time.
EARLIEST_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RUN_AT = datetime(9999, 12, 31, tzinfo=UTC)


def parse_run_at(text: object) -> datetime:
    """An ISO 8601 date and time (`2026-12-03T18:00:00Z`, `...+01:00`); without an offset it
    is UTC."""
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        raise InvalidRunAtError()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRunAtError(f"{InvalidRunAtError().message}; got {text[:40]!r}") from None
    return check_run_at(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def check_run_at(moment: datetime) -> datetime:
    """An aware due time from EARLIEST_RUN_AT to LATEST_RUN_AT."""
    if moment.tzinfo is None:
        raise InvalidRunAtError("'run_at' must say its time zone (e.g. end with 'Z')")
    try:
        in_range = EARLIEST_RUN_AT <= moment.astimezone(UTC) <= LATEST_RUN_AT
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidRunAtError("'run_at' must be from 1970-01-01 to 9999-12-31 (UTC)")
    return moment


def check_delay(value: object) -> float:
    """A delay in seconds: a number from 0 to MAX_DELAY_SECONDS."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDelayError()
    if not 0 <= value <= MAX_DELAY_SECONDS:
        raise InvalidDelayError()
    return float(value)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create: what to run, where to queue it and when it is due.

    `run_at` (an aware datetime) or `delay_seconds` delays the job; a due time in the past
    means now. The job type's data is expected to be validated already.
    """

    job_type: str
    data: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    retry_count: int = 0
    retry_interval: int = 30
    run_at: datetime | None = None
    delay_seconds: float | None = None
    request_id: str | None = None  # the X-Request-ID of the API request that created it
    created_by: str | None = None  # the name of the API key that created it

    def __post_init__(self) -> None:
        """Queue, priority and due time are checked here, whoever creates the job."""
        check_queue(self.queue)
        check_priority(self.priority)
        if self.delay_seconds is not None:
            check_delay(self.delay_seconds)
            if self.run_at is not None:
                raise InvalidDelayError("give either 'run_at' or 'delay_seconds', not both")
        if self.run_at is not None:
            check_run_at(self.run_at)


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the jobs table, as the runners and the API see it."""

    id: int
    uuid: UUID
    job_type: str
    data: dict[str, Any]
    queue: str
    priority: int
    status: JobStatus
    job_response: dict[str, Any]
    retry_count: int
    retry_interval: int
    run_after: datetime | None
    run_at: datetime | None
    request_id: str | None
    attempts: int
    runner_id: str | None
    heartbeat_at: datetime | None
    cancel_requested_at: datetime | None
    checkpoint: dict[str, Any] | None
    rescue_count: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    # The cron schedule that created the job, if one did.
    schedule_name: str | None = None
    # The name of the API key that created the job; None when made by the CLI, Python or a
    # schedule.
    created_by: str | None = None

    @property
    def retries_left(self) -> int:
        """How many more runs the retry runner may make (attempts count every run)."""
        return max(0, self.retry_count + 1 - self.attempts)


def job_to_json(job: Job) -> dict[str, Any]:
    """The public shape of a job (the seed's fields, then the runner's), JSON-ready."""
    return {
        "id": job.id,
        "uuid": str(job.uuid),
        "job_type": job.job_type,
        "data": job.data,
        "queue": job.queue,
        "priority": job.priority,
        "status": str(job.status),
        "job_response": job.job_response,
        "retry_count": job.retry_count,
        "retry_interval": job.retry_interval,
        "run_after": iso_utc(job.run_after),
        "run_at": iso_utc(job.run_at),
        "request_id": job.request_id,
        "created_at": iso_utc(job.created_at),
        "updated_at": iso_utc(job.updated_at),
        "attempts": job.attempts,
        "started_at": iso_utc(job.started_at),
        "completed_at": iso_utc(job.completed_at),
        "runner_id": job.runner_id,
        "cancel_requested_at": iso_utc(job.cancel_requested_at),
        "rescue_count": job.rescue_count,
        "schedule_name": job.schedule_name,
        "created_by": job.created_by,
    }


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as the seed shows timestamps (and every JSON answer)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def results_deleted(response: Mapping[str, Any]) -> bool:
    """Whether retention deleted the files of the job with this `job_response` (it marks
    `results_deleted_at` when it does, so this is known without asking the object store)."""
    return "results_deleted_at" in response


def _files_bucket(data: Mapping[str, Any], response: Mapping[str, Any]) -> str | None:
    """The bucket a job's files are in (None: the default bucket)."""
    return response.get("s3_bucket") or data.get("s3_bucket")


def export_file(job: Job) -> tuple[str | None, str] | None:
    """The (bucket, key) of a completed export's CSV, whether or not retention has deleted
    it since (see `results_deleted`); None for any other job."""
    key = job.job_response.get("s3_key")
    if job.job_type != EXPORT_JOB_TYPE or job.status is not S.COMPLETED or not key:
        return None
    return _files_bucket(job.data, job.job_response), str(key)


def result_files(
    job_type: str, data: dict[str, Any], response: dict[str, Any]
) -> list[tuple[str | None, str]]:
    """The (bucket, key) of files a job produced: an export's CSV, an import's failed rows.

    An import's own `s3_key` is the user's source file and is never listed. Nothing is listed
    once `results_deleted_at` is set.
    """
    if results_deleted(response):
        return []
    bucket = _files_bucket(data, response)
    keys = [response.get("failed_rows_s3_key")]
    if job_type == EXPORT_JOB_TYPE:
        keys.append(response.get("s3_key"))
    return [(bucket, str(key)) for key in keys if key]
