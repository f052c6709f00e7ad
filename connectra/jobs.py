"""The job model: states, allowed transitions and the two runner kinds. Pure; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from connectra.errors import InvalidTransitionError


class JobStatus(StrEnum):
    """Where a job is in its life (the seed's states)."""

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


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the jobs table, as the runners and the API see it."""

    id: int
    uuid: UUID
    job_type: str
    data: dict[str, Any]
    status: JobStatus
    job_response: dict[str, Any]
    retry_count: int
    retry_interval: int
    run_after: datetime | None
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
        "status": str(job.status),
        "job_response": job.job_response,
        "retry_count": job.retry_count,
        "retry_interval": job.retry_interval,
        "run_after": _iso(job.run_after),
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "attempts": job.attempts,
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
        "runner_id": job.runner_id,
        "cancel_requested_at": _iso(job.cancel_requested_at),
        "rescue_count": job.rescue_count,
    }


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as the seed shows timestamps."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def result_files(
    job_type: str, data: dict[str, Any], response: dict[str, Any]
) -> list[tuple[str | None, str]]:
    """The (bucket, key) of files a job produced: an export's CSV, an import's failed rows.

    An import's own `s3_key` is the user's source file and is never listed. Nothing is listed
    once `results_deleted_at` is set.
    """
    if "results_deleted_at" in response:
        return []
    bucket = response.get("s3_bucket") or data.get("s3_bucket")
    keys = [response.get("failed_rows_s3_key")]
    if job_type == "export_csv_file":
        keys.append(response.get("s3_key"))
    return [(bucket, str(key)) for key in keys if key]
