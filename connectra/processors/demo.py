"""Two small job types for demos, tests and benchmarks: `noop` and `sleep`."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectra.errors import JobFailedError
from connectra.processors.base import JobContext, JobType


class NoopData(BaseModel):
    """`noop` takes no data; anything given is kept but ignored."""

    model_config = ConfigDict(extra="allow")


async def run_noop(ctx: JobContext, data: NoopData) -> dict[str, Any]:
    """Do nothing, successfully."""
    return {"messages": "noop completed"}


class SleepData(BaseModel):
    """How long to sleep, and on how many first attempts to fail (to exercise retries)."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=1.0, ge=0, le=86_400)
    fail_attempts: int = Field(default=0, ge=0)


async def run_sleep(ctx: JobContext, data: SleepData) -> dict[str, Any]:
    """Sleep, then fail if this attempt is one of the first `fail_attempts`."""
    await asyncio.sleep(data.seconds)
    if ctx.attempt <= data.fail_attempts:
        raise JobFailedError(f"failing attempt {ctx.attempt} of {data.fail_attempts} on purpose")
    return {"messages": f"slept {data.seconds:g}s"}


NOOP = JobType("noop", NoopData, run_noop, "does nothing")
SLEEP = JobType("sleep", SleepData, run_sleep, "sleeps, and can fail its first attempts")
