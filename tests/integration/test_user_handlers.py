"""User handlers that misbehave end their job with a clear error; the runner lives on."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel

from connectra import JobContext, JobStatus, JobTypeRegistry, NewJob, PermanentJobError
from connectra.db.store import JobStore
from connectra.processors.registry import default_registry
from connectra.settings import TimeLimits
from tests.integration.test_runners import config, running
from tests.polling import eventually

S = JobStatus


class Nothing(BaseModel):
    pass


def user_registry() -> JobTypeRegistry:
    registry = default_registry()
    user = JobTypeRegistry()

    @user.job()
    async def raises(ctx: JobContext, data: Nothing) -> None:
        raise ValueError("the user's code is wrong")

    @user.job()
    async def refuses(ctx: JobContext, data: Nothing) -> None:
        raise PermanentJobError("this input can never work")

    @user.job(time_limits=TimeLimits(hard=0.3))
    async def hangs(ctx: JobContext, data: Nothing) -> None:
        await asyncio.Event().wait()

    @user.job()
    async def returns_nan(ctx: JobContext, data: Nothing) -> dict[str, Any]:
        return {"ratio": float("nan")}

    @user.job()
    async def returns_object(ctx: JobContext, data: Nothing) -> dict[str, Any]:
        return {"when": object()}

    @user.job()
    async def returns_a_list(ctx: JobContext, data: Nothing) -> Any:
        return [1, 2]

    @user.job()
    async def returns_nul(ctx: JobContext, data: Nothing) -> dict[str, Any]:
        return {"text": "a\x00b"}

    registry.include(user)
    return registry


@pytest.mark.parametrize(
    ("job_type", "status", "code", "message"),
    [
        ("raises", S.FAILED, "ERR_INTERNAL", "the user's code is wrong"),
        ("refuses", S.FAILED_FINAL, "ERR_JOB_FAILED", "this input can never work"),
        ("hangs", S.FAILED, "ERR_TIMEOUT", "hard time limit of 0.3s"),
        ("returns_nan", S.FAILED_FINAL, "ERR_INVALID_JOB_RESULT", "the number nan"),
        ("returns_object", S.FAILED_FINAL, "ERR_INVALID_JOB_RESULT", "holds a object"),
        ("returns_a_list", S.FAILED_FINAL, "ERR_INVALID_JOB_RESULT", "returned a list"),
        ("returns_nul", S.FAILED_FINAL, "ERR_INVALID_JOB_RESULT", "NUL character"),
    ],
)
async def test_a_misbehaving_handler_fails_its_job_and_the_runner_goes_on(
    store: JobStore, pool: asyncpg.Pool, job_type: str, status: S, code: str, message: str
) -> None:
    bad = await store.create(NewJob(job_type, {}, retry_count=1, retry_interval=3600))
    good = [await store.create(NewJob("noop", {})) for _ in range(5)]
    async with running(store, config(concurrency=3), user_registry()):
        await eventually(lambda: _finished(store, [bad, *good]), within=15)
    failed = await store.get(bad.uuid)
    assert failed.status is status
    assert failed.job_response["error"]["code"] == code
    assert message in failed.job_response["error"]["message"]
    for job in good:
        assert (await store.get(job.uuid)).status is S.COMPLETED


async def _finished(store: JobStore, jobs: list[Any]) -> bool:
    settled = {S.COMPLETED, S.FAILED, S.FAILED_FINAL}
    statuses = [(await store.get(job.uuid)).status for job in jobs]
    return all(status in settled for status in statuses)
