"""The job types this build ships."""

from __future__ import annotations

from connectra.processors.base import JobTypeRegistry
from connectra.processors.demo import NOOP, SLEEP
from connectra.processors.exporting.job_type import EXPORT_CSV_FILE
from connectra.processors.importing.job_type import INSERT_CSV_FILE


def default_registry() -> JobTypeRegistry:
    """Every built-in job type."""
    return JobTypeRegistry([INSERT_CSV_FILE, EXPORT_CSV_FILE, NOOP, SLEEP])
