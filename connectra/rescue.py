"""What happens to a job whose runner stopped heartbeating. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connectra.errors import RescuedError
from connectra.failure_policy import failure_response, with_error_line
from connectra.jobs import Job, JobStatus, check_transition
from connectra.retry import RetryPolicy

S = JobStatus


@dataclass(frozen=True, slots=True)
class Rescue:
    """The new state of a rescued job, when it may run again, and what to record."""

    status: JobStatus
    retry_in: timedelta | None
    response: dict[str, Any]


def decide_rescue(job: Job, policy: RetryPolicy) -> Rescue:
    """Cancelled jobs are aborted; queued ones go back untouched; running ones count as failed."""
    error = RescuedError(
        f"runner {job.runner_id} stopped heartbeating while the job was {job.status}"
    )
    if job.cancel_requested_at is not None:
        rescue = Rescue(S.ABORTED, None, {"messages": "job cancelled (its runner was gone)"})
    elif job.status is S.IN_QUEUE:
        rescue = Rescue(S.OPEN, None, _note(job, error))
    elif job.status is S.RETRY_IN_QUEUED:
        rescue = Rescue(S.FAILED, timedelta(0), _note(job, error))
    else:
        retry_in = policy.delay(
            attempts=job.attempts, retry_count=job.retry_count, retry_interval=job.retry_interval
        )
        status = S.FAILED if retry_in is not None else S.FAILED_FINAL
        rescue = Rescue(status, retry_in, failure_response(job.job_response, error, retry_in))
    check_transition(job.status, rescue.status)
    return rescue


def _note(job: Job, error: RescuedError) -> dict[str, Any]:
    """A runtime error line saying the job was rescued before it started."""
    line = f"{error.code}: {error.message}; it had not started"
    return {"runtime_errors": with_error_line(job.job_response, line)}
