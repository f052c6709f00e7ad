"""The job types this build ships."""

from __future__ import annotations

from connectra.processors.base import JobTypeRegistry
from connectra.processors.demo import NOOP, SLEEP

# Named in the contract; their processors arrive with the bulk CSV work.
PLANNED_JOB_TYPES = ("insert_csv_file", "export_csv_file")


def default_registry() -> JobTypeRegistry:
    """Every built-in job type."""
    return JobTypeRegistry([NOOP, SLEEP], unavailable=PLANNED_JOB_TYPES)
