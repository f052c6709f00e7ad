"""The job-type extension point: a name, a pydantic model of `job_data`, an async handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
from elasticsearch import AsyncElasticsearch
from pydantic import BaseModel, ValidationError

from connectra.errors import InvalidJobDataError, UnknownJobTypeError
from connectra.jobs import Job
from connectra.logs import BoundLogger
from connectra.objectstore import ObjectStore
from connectra.settings import Settings, TimeLimits

DataT = TypeVar("DataT", bound=BaseModel)


ProgressReporter = Callable[[dict[str, Any]], Awaitable[None]]


async def _ignore_progress(progress: dict[str, Any]) -> None:
    """Progress goes nowhere (handlers run outside a runner, e.g. in unit tests)."""


async def _ignore_checkpoint(checkpoint: dict[str, Any]) -> None:
    """Checkpoints go nowhere (handlers run outside a runner, e.g. in unit tests)."""


@dataclass(frozen=True, slots=True)
class Services:
    """The outside systems a handler may talk to; each is None when not configured."""

    pool: asyncpg.Pool | None = None
    objects: ObjectStore | None = None
    search: AsyncElasticsearch | None = None


@dataclass(slots=True)
class JobContext:
    """What a handler may use while it runs one attempt of one job."""

    job: Job
    attempt: int
    settings: Settings
    log: BoundLogger
    services: Services = field(default_factory=Services)
    report_progress: ProgressReporter = _ignore_progress
    save_checkpoint: ProgressReporter = _ignore_checkpoint


Handler = Callable[[JobContext, DataT], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class JobType(Generic[DataT]):
    """A kind of job: what its data looks like and how it runs.

    The handler returns extra `job_response` fields (or None); raising fails the attempt.
    """

    name: str
    data_model: type[DataT]
    handler: Handler[DataT]
    description: str = ""
    time_limits: TimeLimits = field(default_factory=TimeLimits)

    def parse(self, data: object) -> DataT:
        """Validate raw `job_data` against this type's model."""
        try:
            return self.data_model.model_validate(data)
        except ValidationError as exc:
            raise InvalidJobDataError(_describe(exc)) from exc

    async def run(self, ctx: JobContext) -> dict[str, Any] | None:
        """Run the handler on the job's stored data."""
        return await self.handler(ctx, self.parse(ctx.job.data))


def _describe(exc: ValidationError) -> str:
    """The first problem of a validation error, with the path to the field."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in first["loc"]) or "job_data"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"job_data.{path}: {first['msg']}{more}".replace("job_data.job_data", "job_data")


class JobTypeRegistry:
    """The job types a process knows, by name."""

    def __init__(self, types: Iterable[JobType[Any]] = ()):
        self._types: dict[str, JobType[Any]] = {}
        for job_type in types:
            self.register(job_type)

    def register(self, job_type: JobType[Any]) -> None:
        """Add a job type; names are unique."""
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is already registered")
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType[Any]:
        """The job type with this name, or a clear error."""
        if name in self._types:
            return self._types[name]
        known = ", ".join(sorted(self._types))
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UnknownJobTypeError(f"unknown job_type {shown!r}; known types: {known}")

    def validate(self, name: str, data: object) -> dict[str, Any]:
        """Check `job_data` for a job type; return it normalised for storage."""
        normalised: dict[str, Any] = self.get(name).parse(data).model_dump(mode="json")
        return normalised

    @property
    def names(self) -> list[str]:
        """Registered job type names."""
        return sorted(self._types)
