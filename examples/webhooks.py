"""A user's own job types: webhook deliveries with retries, and a cron schedule.

    connectra run --app examples.webhooks:registry

`send_webhook` POSTs an event to a URL. A 5xx answer, a 429 or a network error fails the
attempt with a transient error, so the job is retried (`retry_count=5`, with the interval
growing under `RETRY_BACKOFF=exponential`); any other 4xx is permanent: retrying cannot help.
Receivers deduplicate with the `Idempotency-Key` header, the job's uuid, since a job may run
more than once (at-least-once delivery). The schedule `uptime-ping` sends a `ping` event every
five minutes to `EXAMPLE_PING_URL`.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from pydantic import BaseModel, Field

from connectra import JobContext, JobFailedError, JobTypeRegistry, PermanentJobError, TimeLimits

registry = JobTypeRegistry()


class Webhook(BaseModel):
    """Where to send which event."""

    url: str = Field(pattern=r"^https?://")
    event: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


@registry.periodic(
    "*/5 * * * *",
    name="uptime-ping",
    data={"url": os.environ.get("EXAMPLE_PING_URL", "http://127.0.0.1:9999/ping"), "event": "ping"},
)
@registry.job(queue="webhooks", retry_count=5, retry_interval=10, time_limits=TimeLimits(hard=30))
async def send_webhook(ctx: JobContext, data: Webhook) -> dict[str, Any]:
    """POST one event to a webhook URL."""
    body = {"event": data.event, "payload": data.payload, "job": str(ctx.job.uuid)}
    headers = {"Idempotency-Key": str(ctx.job.uuid)}
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(data.url, json=body, headers=headers) as response,
        ):
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise JobFailedError(f"could not reach {data.url}: {exc or type(exc).__name__}") from exc
    if status >= 500 or status == 429:
        raise JobFailedError(f"{data.url} answered {status}; will retry")
    if status >= 400:
        raise PermanentJobError(f"{data.url} answered {status}")
    ctx.log.info("webhook delivered", extra={"action": "webhook_delivered"})
    return {"status_code": status, "messages": f"{data.event} delivered"}
