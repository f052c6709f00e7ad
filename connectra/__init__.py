"""Connectra Jobs: an asyncio job runner on PostgreSQL, for bulk CSV jobs and your own.

What a user may import from here is listed in `__all__`; everything else is internal.

    from connectra import JobContext, JobTypeRegistry

    registry = JobTypeRegistry()

    @registry.job(queue="webhooks", retry_count=5)
    async def send_webhook(ctx: JobContext, data: Webhook) -> dict[str, object]: ...

Run it with `connectra jobs first_time --app mymodule:registry`.
"""

from connectra.errors import ConnectraError, JobFailedError, PermanentJobError
from connectra.jobs import Job, JobStatus, NewJob
from connectra.processors.base import JobContext, JobType, JobTypeRegistry, Services
from connectra.schedules import Schedule
from connectra.settings import Settings, TimeLimits

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
