"""What the dashboard shows, from jobs and counts: filters, counts, a job's progress and
actions. Pure; the handlers in `dashboard.py` fetch and render."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from connectra.api.payloads import whole_number
from connectra.errors import InvalidQueueError
from connectra.job_table import Progress, byte_size
from connectra.jobs import (
    EXPORT_JOB_TYPE,
    FINISHED_STATUSES,
    REOPENABLE_STATUSES,
    Job,
    JobStatus,
    check_queue,
    export_file,
    results_deleted,
)

S = JobStatus
UI = "/ui"
EXPORT_TYPE, IMPORT_TYPE = EXPORT_JOB_TYPE, "insert_csv_file"
BAR_TYPES = frozenset({EXPORT_TYPE, IMPORT_TYPE})  # other jobs get a bar once they report rows
RUNNING_STATUSES = frozenset({S.PROCESSING, S.RETRYING})
# A colour family per state, for the badges and the count tiles.
TONES: dict[JobStatus, str] = {
    S.SCHEDULED: "waiting",
    S.OPEN: "waiting",
    S.IN_QUEUE: "waiting",
    S.RETRY_IN_QUEUED: "waiting",
    S.PROCESSING: "running",
    S.RETRYING: "running",
    S.COMPLETED: "done",
    S.FAILED: "failed",
    S.FAILED_FINAL: "final",
    S.ABORTED: "aborted",
}


@dataclass(frozen=True, slots=True)
class Filters:
    """The list's filters and page, from the query string; `problems` names refused values."""

    status: JobStatus | None = None
    job_type: str | None = None
    queue: str | None = None
    uuid: UUID | None = None
    after: int | None = None
    problems: tuple[str, ...] = ()

    def link(self, after: int | None = None, live: bool = False) -> str:
        """The list's URL (or its live fragment's) with these filters, at page `after`."""
        params = {
            "status": self.status,
            "type": self.job_type,
            "queue": self.queue,
            "uuid": self.uuid,
            "after": after,
        }
        query = urlencode({name: str(value) for name, value in params.items() if value})
        path = f"{UI}/live" if live else UI
        return f"{path}?{query}" if query else path

    def matches(self, job: Job) -> bool:
        """Whether a job found by uuid also passes the other filters."""
        return (
            (self.status is None or job.status is self.status)
            and (self.job_type is None or job.job_type == self.job_type)
            and (self.queue is None or job.queue == self.queue)
        )


def parse_filters(query: Mapping[str, str]) -> Filters:
    """The filters of `/ui?status=&type=&queue=&uuid=&after=`; empty values mean any."""
    problems: list[str] = []
    return Filters(
        status=_status(query.get("status", "").strip(), problems),
        job_type=query.get("type", "").strip()[:200] or None,
        queue=_queue(query.get("queue", "").strip(), problems),
        uuid=_uuid(query.get("uuid", "").strip(), problems),
        after=_after(query.get("after", "").strip(), problems),
        problems=tuple(problems),
    )


def _status(raw: str, problems: list[str]) -> JobStatus | None:
    """A state name, or None."""
    if not raw:
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        problems.append(f"{raw[:50]!r} is not a job state")
        return None


def _queue(raw: str, problems: list[str]) -> str | None:
    """A queue name, or None."""
    if not raw:
        return None
    try:
        return check_queue(raw)
    except InvalidQueueError as exc:
        problems.append(exc.message)
        return None


def _uuid(raw: str, problems: list[str]) -> UUID | None:
    """A job uuid, or None."""
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        problems.append(f"{raw[:50]!r} is not a UUID")
        return None


def _after(raw: str, problems: list[str]) -> int | None:
    """The keyset cursor: the id the previous page ended at."""
    if not raw:
        return None
    after = whole_number(raw, 1, 2**63 - 1)
    if after is None:
        problems.append("the page cursor is not a positive integer")
    return after


@dataclass(frozen=True, slots=True)
class Counts:
    """Jobs per (status, queue): exact for waiting and running states, and up to `cap` for
    each finished one, whose total beyond that is PostgreSQL's estimate (`estimates`)."""

    cells: Mapping[tuple[JobStatus, str], int]
    cap: int
    estimates: Mapping[JobStatus, int] = field(default_factory=dict)

    def total(self, status: JobStatus) -> int:
        """The jobs counted in a state."""
        return sum(n for (s, _), n in self.cells.items() if s == status)

    def capped(self, status: JobStatus) -> bool:
        """Whether a finished state holds `cap` jobs or more, so that its count is a floor."""
        return status in FINISHED_STATUSES and self.total(status) >= self.cap

    def estimate(self, status: JobStatus) -> int | None:
        """A capped state's estimated total, when the statistics know better than the cap."""
        estimate = self.estimates.get(JobStatus(status))
        if not self.capped(status) or estimate is None or estimate <= self.cap:
            return None
        return estimate

    def queues(self) -> list[str]:
        """The queues with any job counted, by name."""
        return sorted({queue for _, queue in self.cells})

    def statuses(self) -> list[JobStatus]:
        """The states with any job counted, in the state machine's order."""
        present = {status for status, _ in self.cells}
        return [status for status in JobStatus if status in present]

    def cell(self, queue: str, status: JobStatus) -> int:
        """The jobs of one queue in one state."""
        return self.cells.get((status, queue), 0)

    def queue_total(self, queue: str) -> int:
        """The jobs of one queue in any state."""
        return sum(n for (_, q), n in self.cells.items() if q == queue)


def counts_of(
    unfinished: Mapping[tuple[str, str], int],
    finished: Mapping[tuple[JobStatus, str], int],
    estimates: Mapping[str, int],
    cap: int,
) -> Counts:
    """The counts of the page, from the exact counts of waiting and running jobs (those of
    /metrics), the bounded counts of finished ones and the estimates of finished states."""
    cells = {(JobStatus(status), queue): n for (status, queue), n in unfinished.items()}
    cells.update(finished)
    return Counts(cells, cap, {JobStatus(status): n for status, n in estimates.items()})


@dataclass(frozen=True, slots=True)
class Bar:
    """A job's progress bar: `fraction` None draws a moving bar (running, no total known)."""

    fraction: float | None
    label: str
    short: str
    tone: str

    @property
    def percent(self) -> int:
        """The fraction as a whole percentage, for the bar's text."""
        return round((self.fraction or 0) * 100)


@dataclass(frozen=True, slots=True)
class Actions:
    """Which buttons a job's page offers."""

    cancel: bool
    retry: bool
    download: bool


@dataclass(frozen=True, slots=True)
class JobView:
    """Everything the job page shows of one job."""

    job: Job
    bar: Bar | None
    actions: Actions
    finished: bool
    fields: list[tuple[str, str]]
    runtime_errors: list[str]
    error: dict[str, str] | None
    data_json: str
    response_json: str
    notes: list[str] = field(default_factory=list)


def job_view(job: Job) -> JobView:
    """The job page's content for a job as it stands."""
    return JobView(
        job=job,
        bar=progress_bar(job),
        actions=Actions(
            cancel=job.status not in FINISHED_STATUSES,
            retry=job.status in REOPENABLE_STATUSES,
            download=is_downloadable(job),
        ),
        finished=job.status in FINISHED_STATUSES,
        fields=job_fields(job),
        runtime_errors=_strings(job.job_response.get("runtime_errors")),
        error=_error(job.job_response.get("error")),
        data_json=pretty_json(job.data),
        response_json=pretty_json(job.job_response),
        notes=_notes(job),
    )


def progress_bar(job: Job) -> Bar | None:
    """The bar of an import or export, or of any job that reports rows; None for a job that
    reports nothing, or finished without reporting anything."""
    progress = Progress.of(job)
    reported = progress.processed is not None or progress.failed is not None
    if not reported and (job.status in FINISHED_STATUSES or job.job_type not in BAR_TYPES):
        return None
    fraction = progress.fraction()
    if job.status is S.COMPLETED:
        fraction = 1.0
    elif fraction is None and job.status not in RUNNING_STATUSES:
        fraction = 0.0
    label = _progress_label(job, progress)
    return Bar(fraction, label, _short_label(job, progress, fraction), TONES[job.status])


def _progress_label(job: Job, progress: Progress) -> str:
    """`1,200 rows processed · 3 failed · 1.2 MiB of 4.0 MiB read`, or what is known of it."""
    if progress.processed is None and progress.failed is None:
        return _not_yet(job)
    verb = "written" if job.job_type == EXPORT_TYPE else "processed"
    parts = [f"{progress.processed or 0:,} rows {verb}"]
    if progress.failed is not None:
        parts.append(f"{progress.failed:,} failed")
    if progress.bytes_done is not None and progress.bytes_total:
        parts.append(f"{byte_size(progress.bytes_done)} of {byte_size(progress.bytes_total)} read")
    return " · ".join(parts)


def _not_yet(job: Job) -> str:
    """The label of a bar before the first rows are reported."""
    return "starting" if job.status in RUNNING_STATUSES else "waiting to run"


def _short_label(job: Job, progress: Progress, fraction: float | None) -> str:
    """`40% · 1,200 rows · 3 failed`, for the list."""
    if progress.processed is None and progress.failed is None:
        return _not_yet(job)
    parts = [f"{round(fraction * 100)}%"] if fraction is not None and fraction < 1 else []
    parts.append(f"{progress.processed or 0:,} rows")
    if progress.failed:
        parts.append(f"{progress.failed:,} failed")
    return " · ".join(parts)


def is_downloadable(job: Job) -> bool:
    """Whether the job is a completed export with a file retention has not deleted."""
    return export_file(job) is not None and not results_deleted(job.job_response)


def job_fields(job: Job) -> list[tuple[str, str]]:
    """The job's columns as (label, text) rows."""
    return [
        ("id", str(job.id)),
        ("type", job.job_type),
        ("queue", job.queue),
        ("priority", str(job.priority)),
        ("attempts", f"{job.attempts} of {job.retry_count + 1}"),
        ("retry interval", f"{job.retry_interval} s"),
        ("created", when(job.created_at)),
        ("run at", when(job.run_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.completed_at)),
        ("next retry", when(job.run_after) if job.status is S.FAILED else "—"),
        ("updated", when(job.updated_at)),
        ("runner", job.runner_id or "—"),
        ("cancel requested", when(job.cancel_requested_at)),
        ("rescued", f"{job.rescue_count} times"),
        ("schedule", job.schedule_name or "—"),
    ]


def _notes(job: Job) -> list[str]:
    """Short explanations of a state the fields alone do not make plain."""
    notes = []
    if job.cancel_requested_at is not None and job.status in RUNNING_STATUSES:
        notes.append("Cancel requested: the runner stops the job at its next step.")
    if job.status is S.FAILED and job.run_after is not None:
        notes.append(f"Failed; the retry runner tries again after {when(job.run_after)}.")
    return notes


def when(moment: datetime | None) -> str:
    """A time in UTC to the second, or a dash."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def about(count: int) -> str:
    """A big count in a few characters: `12,345`, `345k`, `1.2M`."""
    if count < 100_000:
        return f"{count:,}"
    if count < 1_000_000:
        return f"{count // 1000}k"
    return f"{count / 1_000_000:.1f}M"


def pretty_json(value: object) -> str:
    """JSON indented for reading; the template escapes it."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _strings(value: object) -> list[str]:
    """A list of strings from job_response, or an empty list."""
    if not isinstance(value, list):
        return []
    return [item if isinstance(item, str) else json.dumps(item) for item in value]


def _error(value: object) -> dict[str, str] | None:
    """The structured error of a failed attempt: its code and message."""
    if not isinstance(value, dict):
        return None
    return {"code": str(value.get("code", "")), "message": str(value.get("message", ""))}


def status_options() -> list[str]:
    """Every state, for the status filter."""
    return [str(status) for status in JobStatus]


def type_options(registered: Collection[str], current: str | None) -> list[str]:
    """The registered job types and the filtered one (a type may outlive its code)."""
    names = set(registered) | ({current} if current else set())
    return sorted(names)


def template_globals() -> dict[str, Any]:
    """Names every template may use."""
    return {"ui": UI, "static": f"{UI}/static", "tones": TONES, "when": when, "about": about}
