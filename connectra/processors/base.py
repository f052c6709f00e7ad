"""The job-type extension point: a name, a pydantic model of `job_data`, an async handler,
the defaults of its jobs (queue, priority, retries, time limits), and the registry that holds
job types and cron schedules and dispatches jobs."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import asyncpg
from elasticsearch import AsyncElasticsearch
from pydantic import BaseModel, ValidationError, ValidationInfo

from connectra.db.store import insert_jobs
from connectra.errors import InvalidJobDataError, InvalidScheduleError, UnknownJobTypeError
from connectra.jobs import DEFAULT_QUEUE, Job, NewJob, check_priority, check_queue
from connectra.logs import REQUEST_ID, BoundLogger
from connectra.objectstore import ObjectStore
from connectra.schedules import Schedule
from connectra.settings import Settings, TimeLimits

DataT = TypeVar("DataT", bound=BaseModel)
SETTINGS_CONTEXT = "settings"


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
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    retry_count: int = 0
    retry_interval: int = 30

    def __post_init__(self) -> None:
        """The defaults are checked when the job type is declared."""
        check_queue(self.queue)
        check_priority(self.priority)
        if self.retry_count < 0 or self.retry_interval < 0:
            raise ValueError(f"job type {self.name!r}: retry_count and retry_interval must be >= 0")

    def new_job(
        self,
        data: object,
        *,
        queue: str | None = None,
        priority: int | None = None,
        retry_count: int | None = None,
        retry_interval: int | None = None,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        request_id: str | None = None,
        settings: Settings | None = None,
    ) -> NewJob:
        """A job of this type: its data validated and normalised, unset options taken from the
        job type's defaults. `request_id` defaults to the one being handled (an API request,
        or the attempt of a job that dispatches another), so a chain of jobs shares it. With
        `settings`, the checks that depend on them run too (see `parse`)."""
        return NewJob(
            job_type=self.name,
            data=self.parse(data, settings).model_dump(mode="json"),
            queue=self.queue if queue is None else queue,
            priority=self.priority if priority is None else priority,
            retry_count=self.retry_count if retry_count is None else retry_count,
            retry_interval=self.retry_interval if retry_interval is None else retry_interval,
            run_at=run_at,
            delay_seconds=delay_seconds,
            request_id=request_id if request_id is not None else REQUEST_ID.get(),
        )

    async def dispatch(
        self, conn: asyncpg.Connection | asyncpg.Pool, data: object, **options: Any
    ) -> Job:
        """Create one job of this type on `conn` (see `JobTypeRegistry.dispatch`)."""
        jobs = await insert_jobs(conn, [self.new_job(data, **options)])
        return jobs[0]

    def parse(self, data: object, settings: Settings | None = None) -> DataT:
        """Validate raw `job_data` against this type's model. With `settings` (when a job is
        created by the API or the CLI, and when it runs), the model's validators get them as
        the validation context (`settings_of`), e.g. to refuse buckets jobs may not use."""
        context = None if settings is None else {SETTINGS_CONTEXT: settings}
        try:
            return self.data_model.model_validate(data, context=context)
        except ValidationError as exc:
            raise InvalidJobDataError(_describe(exc)) from exc

    async def run(self, ctx: JobContext) -> dict[str, Any] | None:
        """Run the handler on the job's stored data, checked again with the runner's settings."""
        return await self.handler(ctx, self.parse(ctx.job.data, ctx.settings))


def settings_of(info: ValidationInfo) -> Settings | None:
    """In a `job_data` model's validator: the settings `JobType.parse` was given, if any."""
    context = info.context
    settings = context.get(SETTINGS_CONTEXT) if isinstance(context, dict) else None
    return settings if isinstance(settings, Settings) else None


def _describe(exc: ValidationError) -> str:
    """The first problem of a validation error, with the path to the field."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in first["loc"]) or "job_data"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"job_data.{path}: {first['msg']}{more}".replace("job_data.job_data", "job_data")


class JobTypeRegistry:
    """The job types and cron schedules a process knows, by name.

    Create one in your own module, declare job types with `@registry.job(...)` and schedules
    with `@registry.periodic(...)` or `registry.schedule(...)`, and load it with
    `connectra ... --app package.module:registry`; the built-in types are added to it.
    """

    def __init__(self, types: Iterable[JobType[Any]] = ()):
        self._types: dict[str, JobType[Any]] = {}
        self._schedules: dict[str, Schedule] = {}
        for job_type in types:
            self.register(job_type)

    def register(self, job_type: JobType[Any]) -> None:
        """Add a job type; names are unique."""
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is already registered")
        self._types[job_type.name] = job_type

    def job(
        self,
        name: str | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        retry_count: int = 0,
        retry_interval: int = 30,
        time_limits: TimeLimits | None = None,
        description: str | None = None,
    ) -> Callable[[Handler[DataT]], JobType[DataT]]:
        """Turn `async def handler(ctx: JobContext, data: SomeModel)` into a registered job
        type named `name` (default: the function's name); its data model is the type of the
        second parameter. The decorated name is the `JobType`, which can `dispatch` jobs."""

        def declare(handler: Handler[DataT]) -> JobType[DataT]:
            job_type = JobType(
                name=name or handler.__name__,
                data_model=typing.cast(type[DataT], _data_model(handler)),
                handler=handler,
                description=description or (inspect.getdoc(handler) or "").split("\n")[0],
                time_limits=time_limits or TimeLimits(),
                queue=queue,
                priority=priority,
                retry_count=retry_count,
                retry_interval=retry_interval,
            )
            self.register(job_type)
            return job_type

        return declare

    def schedule(self, schedule: Schedule) -> Schedule:
        """Declare a cron schedule of a registered job type; names are unique."""
        if schedule.name in self._schedules:
            raise InvalidScheduleError(f"schedule {schedule.name!r} is already declared")
        job_type = self._job_type_of(schedule)
        job_type.parse(schedule.data)
        self._schedules[schedule.name] = schedule
        return schedule

    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        data: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Callable[[JobType[DataT]], JobType[DataT]]:
        """Put above `@registry.job(...)`: create a job of that type with `data` at every tick
        of the 5-field `cron` expression in `timezone`. The schedule's name defaults to the job
        type's."""

        def declare(job_type: JobType[DataT]) -> JobType[DataT]:
            if not isinstance(job_type, JobType):
                raise TypeError("@periodic goes above @registry.job(...), on a job type")
            self.schedule(
                Schedule(
                    name=name or job_type.name,
                    cron=cron,
                    job_type=job_type.name,
                    data=dict(data or {}),
                    timezone=timezone,
                    queue=queue,
                    priority=priority,
                )
            )
            return job_type

        return declare

    def include(self, other: JobTypeRegistry) -> None:
        """Add another registry's job types and schedules (names stay unique)."""
        for job_type in other._types.values():
            self.register(job_type)
        for schedule in other._schedules.values():
            self.schedule(schedule)

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

    def new_job(self, name: str, data: object, **options: Any) -> NewJob:
        """A job of the named type, validated, with the type's defaults for unset options
        (`queue`, `priority`, `retry_count`, `retry_interval`, `run_at`, `delay_seconds`);
        `settings` adds the checks that depend on them (see `JobType.parse`)."""
        return self.get(name).new_job(data, **options)

    async def dispatch(
        self, conn: asyncpg.Connection | asyncpg.Pool, name: str, data: object, **options: Any
    ) -> Job:
        """Create one job on the caller's connection. Inside the caller's transaction the job
        exists, and runners hear of it, only once that transaction commits."""
        jobs = await insert_jobs(conn, [self.new_job(name, data, **options)])
        return jobs[0]

    async def dispatch_many(
        self, conn: asyncpg.Connection | asyncpg.Pool, jobs: Sequence[NewJob]
    ) -> list[Job]:
        """Create many jobs (from `new_job`) in one statement on the caller's connection."""
        for job in jobs:
            self.get(job.job_type)
        return await insert_jobs(conn, jobs)

    @property
    def names(self) -> list[str]:
        """Registered job type names."""
        return sorted(self._types)

    @property
    def schedules(self) -> list[Schedule]:
        """Declared cron schedules, by name."""
        return [self._schedules[name] for name in sorted(self._schedules)]

    def _job_type_of(self, schedule: Schedule) -> JobType[Any]:
        """The job type a schedule creates, which must be registered."""
        try:
            return self.get(schedule.job_type)
        except UnknownJobTypeError as exc:
            raise InvalidScheduleError(f"schedule {schedule.name!r}: {exc.message}") from None


def tick_job(
    registry: JobTypeRegistry, schedule: Schedule, settings: Settings | None = None
) -> NewJob:
    """The job of a schedule's tick: its data checked by its job type, whose defaults fill in
    the queue and priority the schedule leaves out. Also how a new schedule is validated (with
    `settings`, which add the checks that depend on them, such as the allowed buckets)."""
    return registry.new_job(
        schedule.job_type,
        schedule.data,
        queue=schedule.queue,
        priority=schedule.priority,
        settings=settings,
    )


def _data_model(handler: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic model a handler takes as its second parameter."""
    params = list(inspect.signature(handler).parameters)
    hints = typing.get_type_hints(handler)
    model = hints.get(params[1]) if len(params) >= 2 else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(
            f"job handler {getattr(handler, '__name__', handler)!r} must be "
            "`async def handler(ctx: JobContext, data: SomeModel)` with SomeModel a pydantic model"
        )
    return model
