"""How jobs read to a person: the `connectra jobs list` table and a job's progress in words.

Pure formatting: jobs in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectra.jobs import Job, JobStatus
from connectra.processors.importing.checkpoint import Checkpoint

COLUMNS = ("UUID", "TYPE", "QUEUE", "STATUS", "PROGRESS", "ATTEMPTS", "AGE")
# Widest a column may grow; longer values are cut with an ellipsis. The uuid is never cut.
MAX_WIDTHS = {"TYPE": 24, "QUEUE": 16}
GAP = "  "
BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


@dataclass(frozen=True, slots=True)
class Progress:
    """What a person sees of a job: its state, attempts and the counts it reported."""

    status: JobStatus
    attempts: int
    runs: int
    processed: int | None
    failed: int | None
    bytes_done: int | None
    bytes_total: int | None

    @classmethod
    def of(cls, job: Job) -> Progress:
        """The progress of this job as it stands."""
        response = job.job_response
        checkpoint = Checkpoint.from_json(job.checkpoint)
        return cls(
            status=job.status,
            attempts=job.attempts,
            runs=job.retry_count + 1,
            processed=_count(response, "number_records_processed"),
            failed=_count(response, "number_records_failed"),
            bytes_done=None if checkpoint is None else checkpoint.offset,
            bytes_total=None if checkpoint is None else checkpoint.size,
        )

    def counts(self) -> str:
        """`1,200 ok / 3 failed`, `8,000 ok`, or empty when the job reports no rows."""
        if self.processed is None and self.failed is None:
            return ""
        parts = [f"{self.processed or 0:,} ok"]
        if self.failed is not None:
            parts.append(f"{self.failed:,} failed")
        return " / ".join(parts)

    def fraction(self) -> float | None:
        """How much of the input is done (0 to 1), when the job says where it is in a file."""
        if self.bytes_done is None or not self.bytes_total:
            return None
        return min(1.0, self.bytes_done / self.bytes_total)

    def attempts_text(self) -> str:
        """Runs made out of runs allowed, e.g. `1/3`."""
        return f"{self.attempts}/{self.runs}"


def _count(response: dict[str, Any], field: str) -> int | None:
    """A non-negative integer field of the job_response, or None."""
    value = response.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def age(seconds: float) -> str:
    """A short age in its largest whole unit: `5s`, `3m`, `2h`, `4d`."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def byte_size(count: float) -> str:
    """A byte count for people: `512 B`, `1.5 KiB`, `2.0 MiB`, `3.1 GiB`."""
    power = 0
    while count >= 1024 and power < len(BYTE_UNITS) - 1:
        count /= 1024
        power += 1
    return f"{count:.1f} {BYTE_UNITS[power]}" if power else f"{int(count)} B"


def job_row(job: Job, now: datetime) -> tuple[str, ...]:
    """The table's cells for one job."""
    progress = Progress.of(job)
    return (
        str(job.uuid),
        job.job_type,
        job.queue,
        str(job.status),
        progress.counts() or "-",
        progress.attempts_text(),
        age((now - job.created_at).total_seconds()),
    )


def render_table(jobs: Sequence[Job], now: datetime) -> str:
    """The jobs as an aligned table with a header row."""
    rows = [COLUMNS, *(job_row(job, now) for job in jobs)]
    widths = [_width(column, [row[i] for row in rows]) for i, column in enumerate(COLUMNS)]
    return "\n".join(_line(row, widths) for row in rows)


def _width(column: str, cells: list[str]) -> int:
    """The width of a column: its widest cell, within the column's maximum."""
    widest = max(len(cell) for cell in cells)
    return min(widest, MAX_WIDTHS.get(column, widest))


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One row, each cell fitted to its column."""
    return GAP.join(
        fit(cell, width).ljust(width) for cell, width in zip(cells, widths, strict=True)
    ).rstrip()


def fit(text: str, width: int) -> str:
    """The text, cut to `width` characters with an ellipsis when longer."""
    return text if len(text) <= width else text[: width - 1] + "…"
