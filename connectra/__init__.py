"""Connectra Jobs: an asyncio job runner on PostgreSQL, for bulk CSV jobs and your own.

The public API is `__all__`, imported on first use; everything else is internal.

    from connectra import JobContext, JobTypeRegistry

    registry = JobTypeRegistry()

    @registry.job(queue="webhooks", retry_count=5)
    async def send_webhook(ctx: JobContext, data: Webhook) -> dict[str, object]: ...

Run it with `connectra jobs first_time --app mymodule:registry`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectra.errors import ConnectraError, JobFailedError, PermanentJobError
    from connectra.jobs import Job, JobStatus, NewJob
    from connectra.processors.base import JobContext, JobType, JobTypeRegistry, Services
    from connectra.schedules import Schedule
    from connectra.settings import Settings, TimeLimits

    __version__: str

_EXPORTS = {
    "ConnectraError": "connectra.errors",
    "Job": "connectra.jobs",
    "JobContext": "connectra.processors.base",
    "JobFailedError": "connectra.errors",
    "JobStatus": "connectra.jobs",
    "JobType": "connectra.processors.base",
    "JobTypeRegistry": "connectra.processors.base",
    "NewJob": "connectra.jobs",
    "PermanentJobError": "connectra.errors",
    "Schedule": "connectra.schedules",
    "Services": "connectra.processors.base",
    "Settings": "connectra.settings",
    "TimeLimits": "connectra.settings",
}

__all__ = [
    "ConnectraError",
    "Job",
    "JobContext",
    "JobFailedError",
    "JobStatus",
    "JobType",
    "JobTypeRegistry",
    "NewJob",
    "PermanentJobError",
    "Schedule",
    "Services",
    "Settings",
    "TimeLimits",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module, or read the version, on first use (PEP 562)."""
    if name == "__version__":
        from connectra._version import package_version

        globals()[name] = version = package_version()
        return version
    if name not in _EXPORTS:
        raise AttributeError(f"module 'connectra' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
