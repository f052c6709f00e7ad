"""Declaring job types and schedules in the user's own module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from connectra import JobContext, JobType, JobTypeRegistry, NewJob, Schedule, TimeLimits
from connectra.errors import (
    InvalidDelayError,
    InvalidJobDataError,
    InvalidPriorityError,
    InvalidQueueError,
    InvalidRunAtError,
    InvalidScheduleError,
    UnknownJobTypeError,
)
from connectra.jobs import parse_run_at


class Webhook(BaseModel):
    url: str
    attempts_wanted: int = 1


def make_registry() -> tuple[JobTypeRegistry, JobType[Webhook]]:
    registry = JobTypeRegistry()

    @registry.job(queue="webhooks", priority=5, retry_count=3, time_limits=TimeLimits(hard=10))
    async def send_webhook(ctx: JobContext, data: Webhook) -> dict[str, Any]:
        """Call a webhook."""
        return {"url": data.url}

    return registry, send_webhook


def test_the_decorator_registers_a_job_type_with_its_model_and_defaults() -> None:
    registry, send_webhook = make_registry()
    assert isinstance(send_webhook, JobType)
    assert registry.get("send_webhook") is send_webhook
    assert send_webhook.data_model is Webhook
    assert send_webhook.description == "Call a webhook."
    assert (send_webhook.queue, send_webhook.priority, send_webhook.retry_count) == (
        "webhooks",
        5,
        3,
    )
    assert send_webhook.time_limits.hard == 10


def test_a_new_job_takes_the_types_defaults_unless_told_otherwise() -> None:
    registry, _ = make_registry()
    default = registry.new_job("send_webhook", {"url": "http://x"})
    assert default == NewJob(
        "send_webhook",
        {"url": "http://x", "attempts_wanted": 1},
        queue="webhooks",
        priority=5,
        retry_count=3,
        retry_interval=30,
    )
    other = registry.new_job("send_webhook", {"url": "http://x"}, queue="slow", priority=-1)
    assert (other.queue, other.priority, other.retry_count) == ("slow", -1, 3)


def test_a_new_job_validates_data_queue_priority_and_due_time() -> None:
    registry, _ = make_registry()
    with pytest.raises(InvalidJobDataError, match=r"job_data\.url"):
        registry.new_job("send_webhook", {})
    with pytest.raises(UnknownJobTypeError):
        registry.new_job("nope", {})
    with pytest.raises(InvalidQueueError):
        registry.new_job("send_webhook", {"url": "x"}, queue="has space")
    with pytest.raises(InvalidPriorityError):
        registry.new_job("send_webhook", {"url": "x"}, priority=101)
    with pytest.raises(InvalidDelayError):
        registry.new_job("send_webhook", {"url": "x"}, delay_seconds=-1)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidDelayError, match="not both"):
        registry.new_job("send_webhook", {"url": "x"}, run_at=when, delay_seconds=1)
    with pytest.raises(InvalidRunAtError):
        registry.new_job("send_webhook", {"url": "x"}, run_at=datetime(2030, 1, 1))


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01T00:00:00Z", "", "1" * 50, "12:00"])
def test_an_unparseable_run_at_is_refused(text: str) -> None:
    with pytest.raises(InvalidRunAtError):
        parse_run_at(text)


def test_a_run_at_without_an_offset_is_utc() -> None:
    assert parse_run_at("2026-12-03T18:00:00") == datetime(2026, 12, 3, 18, tzinfo=UTC)


def test_a_handler_without_a_pydantic_model_is_refused_when_declared() -> None:
    registry = JobTypeRegistry()
    with pytest.raises(TypeError, match="pydantic model"):

        @registry.job()
        async def untyped(ctx: JobContext, data: dict[str, Any]) -> None: ...  # type: ignore[type-var]


def test_job_type_names_are_unique() -> None:
    registry, _ = make_registry()
    with pytest.raises(ValueError, match="already registered"):

        @registry.job("send_webhook")
        async def again(ctx: JobContext, data: Webhook) -> None: ...


def test_bad_defaults_are_refused_when_declared() -> None:
    registry = JobTypeRegistry()
    with pytest.raises(InvalidPriorityError):

        @registry.job(priority=1000)
        async def urgent(ctx: JobContext, data: Webhook) -> None: ...


def test_periodic_declares_a_schedule_of_the_job_type() -> None:
    registry = JobTypeRegistry()

    @registry.periodic("*/5 * * * *", timezone="Europe/Paris", data={"url": "http://x"})
    @registry.job()
    async def ping(ctx: JobContext, data: Webhook) -> None: ...

    assert registry.schedules == [
        Schedule("ping", "*/5 * * * *", "ping", {"url": "http://x"}, "Europe/Paris")
    ]


@pytest.mark.parametrize(
    ("cron", "timezone", "data"),
    [
        ("*/5 * * * * *", "UTC", {"url": "x"}),  # six fields
        ("every minute", "UTC", {"url": "x"}),
        ("61 * * * *", "UTC", {"url": "x"}),
        ("* * * * *", "Mars/Olympus", {"url": "x"}),
        ("* * * * *", "UTC", {}),  # data the job type refuses
    ],
)
def test_an_invalid_schedule_is_an_error_when_declared(
    cron: str, timezone: str, data: dict[str, Any]
) -> None:
    registry = JobTypeRegistry()

    @registry.job()
    async def ping(ctx: JobContext, data: Webhook) -> None: ...

    with pytest.raises((InvalidScheduleError, InvalidJobDataError)):
        registry.periodic(cron, timezone=timezone, data=data)(ping)


def test_including_a_registry_keeps_names_unique() -> None:
    first, _ = make_registry()
    second, _ = make_registry()
    combined = JobTypeRegistry()
    combined.include(first)
    with pytest.raises(ValueError, match="already registered"):
        combined.include(second)


def test_the_public_api_lists_what_it_exports() -> None:
    import connectra

    for name in connectra.__all__:
        assert getattr(connectra, name) is not None
    with pytest.raises(AttributeError):
        _ = connectra.not_public  # type: ignore[attr-defined]
