"""What a runner records in the metrics: its jobs' counters and histograms, and its status
writer's rounds. `NO_INSTRUMENTS` (METRICS_ENABLED=false) records nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from connectra import metrics as m
from connectra.jobs import RETRY, Job, JobStatus, RunnerKind
from connectra.loop_metrics import CounterCell, HistogramCell

LOST = "lost"  # the outcome of an attempt stopped because its lease was lost (nothing written)


@dataclass(frozen=True, slots=True)
class _PerJobType:
    """The label children of one job type that every job touches."""

    started: CounterCell
    pickup: HistogramCell
    completed: CounterCell
    completed_seconds: HistogramCell


def pickup_due(job: Job, kind: RunnerKind) -> datetime | None:
    """When a job fell due, for its pickup latency; None when it cannot be told.

    A retry is due at its `run_after`. A first run is due at `run_at` (or when it was
    created), unless the job already started once (a manual retry reopens it with its old
    times): then its due time is not known.
    """
    if kind is RETRY:
        return job.run_after
    if job.started_at is not None:
        return None
    return job.run_at or job.created_at


class JobInstruments:
    """Records one runner's jobs and status-writer rounds."""

    def __init__(self, runner: str) -> None:
        self._by_type: dict[str, _PerJobType] = {}
        self._round_size = m.WRITER_ROUND_SIZE.labels(runner)
        self._round_seconds = m.WRITER_ROUND_SECONDS.labels(runner)

    def _children(self, job_type: str) -> _PerJobType:
        """The kept label children of a job type (job types are few)."""
        children = self._by_type.get(job_type)
        if children is None:
            children = self._by_type[job_type] = _PerJobType(
                started=m.JOBS_STARTED.labels(job_type),
                pickup=m.JOB_PICKUP.labels(job_type),
                completed=m.JOBS_COMPLETED.labels(job_type),
                completed_seconds=m.JOB_DURATION.labels(job_type, JobStatus.COMPLETED),
            )
        return children

    def started(self, job: Job, kind: RunnerKind) -> None:
        """An attempt started; its pickup latency when the job's due time is known."""
        children = self._children(job.job_type)
        children.started.inc()
        due = pickup_due(job, kind)
        if due is not None:
            children.pickup.observe(max(time.time() - due.timestamp(), 0.0))

    def completed(self, job_type: str, seconds: float) -> None:
        """A job completed after its handler ran for `seconds`."""
        children = self._children(job_type)
        children.completed.inc()
        children.completed_seconds.observe(seconds)

    def failed(self, job_type: str, seconds: float, error_code: str, retried: bool) -> None:
        """An attempt failed: a retry is due (`retried`), or the job failed for good."""
        if retried:
            m.JOBS_RETRIED.labels(job_type, error_code).inc()
            outcome = JobStatus.FAILED
        else:
            m.JOBS_FAILED.labels(job_type, error_code).inc()
            outcome = JobStatus.FAILED_FINAL
        m.JOB_DURATION.labels(job_type, outcome).observe(seconds)

    def aborted(self, job_type: str, seconds: float) -> None:
        """A running job stopped because a user cancelled it."""
        m.JOBS_ABORTED.labels(job_type).inc()
        m.JOB_DURATION.labels(job_type, JobStatus.ABORTED).observe(seconds)

    def lost(self, job_type: str, seconds: float) -> None:
        """A running job stopped because the runner no longer holds it."""
        m.JOB_DURATION.labels(job_type, LOST).observe(seconds)

    def round(self, writes: int, seconds: float) -> None:
        """One status-writer statement of `writes` starts and completions."""
        self._round_size.observe(writes)
        self._round_seconds.observe(seconds)


class _NoInstruments(JobInstruments):
    """Records nothing (METRICS_ENABLED=false)."""

    def __init__(self) -> None:
        pass

    def started(self, job: Job, kind: RunnerKind) -> None:
        """Nothing."""

    def completed(self, job_type: str, seconds: float) -> None:
        """Nothing."""

    def failed(self, job_type: str, seconds: float, error_code: str, retried: bool) -> None:
        """Nothing."""

    def aborted(self, job_type: str, seconds: float) -> None:
        """Nothing."""

    def lost(self, job_type: str, seconds: float) -> None:
        """Nothing."""

    def round(self, writes: int, seconds: float) -> None:
        """Nothing."""


NO_INSTRUMENTS: JobInstruments = _NoInstruments()


def job_instruments(enabled: bool, runner: str) -> JobInstruments:
    """The instruments of a runner: real ones, or none when metrics are off."""
    return JobInstruments(runner) if enabled else NO_INSTRUMENTS
