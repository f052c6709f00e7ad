"""Running one attempt of one job: start it, run its handler within its time limits, and
record exactly one outcome (completed, failed, failed_final or aborted).

The handler runs in a task of its own so that one job can be stopped (cancelled by a user,
lease lost, time limit) without stopping the consumer that awaits it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from connectra.db.driver_errors import DATABASE_DOWN, database_error
from connectra.db.store import JobStore
from connectra.errors import ConnectraError, InvalidJobResultError, JobLostError, JobTimeoutError
from connectra.failure_policy import completed_errors, error_code, failure_response, is_transient
from connectra.jobs import Job, JobStatus, RunnerKind
from connectra.logs import REQUEST_ID, BoundLogger
from connectra.processors.base import JobContext, JobTypeRegistry, Services
from connectra.retry import RetryPolicy
from connectra.runners.instruments import NO_INSTRUMENTS, JobInstruments
from connectra.runners.status_writer import StatusWriter
from connectra.search import search_error
from connectra.settings import Settings
from connectra.storable_json import UnstorableJsonError, check_storable

log = logging.getLogger(__name__)
T = TypeVar("T")

# Backoff of a status write while the database is unreachable.
WRITE_RETRY_FIRST = 0.2
WRITE_RETRY_MAX = 5.0


class StopReason(StrEnum):
    """Why a running job was stopped from outside its handler."""

    ABORTED = "aborted"  # a user cancelled it
    LOST = "lost"  # the runner no longer holds it (rescued elsewhere, or lease expired)


@dataclass(slots=True)
class Execution:
    """An attempt in progress."""

    ctx: JobContext
    task: asyncio.Task[dict[str, Any] | None]
    stop_reason: StopReason | None = None
    began: float = field(default_factory=time.perf_counter)

    def stop(self, reason: StopReason) -> None:
        """Cancel the handler; the consumer records the outcome that fits the reason."""
        if not self.task.done() and self.stop_reason is None:
            self.stop_reason = reason
            self.task.cancel()


@dataclass(slots=True)
class Executor:
    """Runs jobs for one runner and keeps track of those running."""

    store: JobStore
    registry: JobTypeRegistry
    settings: Settings
    services: Services
    kind: RunnerKind
    runner_id: str
    retry_policy: RetryPolicy
    writer: StatusWriter
    is_fenced: Callable[[], bool] = lambda: False
    instruments: JobInstruments = NO_INSTRUMENTS
    running: dict[int, Execution] = field(default_factory=dict)
    starting: set[int] = field(default_factory=set)

    async def execute(self, job: Job, handler_done: Callable[[], None] = lambda: None) -> None:
        """Start the job and run it to one recorded outcome.

        `handler_done` is called once the handler has ended, before the outcome is written:
        the caller may then let another job run. Every line logged meanwhile, the handler's
        included, carries the job's `request_id`.
        """
        token = REQUEST_ID.set(job.request_id)
        try:
            await self._execute(job, handler_done)
        finally:
            REQUEST_ID.reset(token)

    async def _execute(self, job: Job, handler_done: Callable[[], None]) -> None:
        """`execute`, with the job's request id set."""
        self.starting.add(job.id)
        try:
            attempt = await self._start(job)
        finally:
            self.starting.discard(job.id)
        if attempt is None:
            return
        ctx = self._context(job, attempt)
        ctx.log.info("job started", extra={"action": "job_start"})
        self.instruments.started(job, self.kind)
        execution = Execution(ctx, asyncio.create_task(self._run_handler(ctx)))
        self.running[job.id] = execution
        try:
            await self._await_outcome(execution, handler_done)
        finally:
            del self.running[job.id]

    async def _start(self, job: Job) -> int | None:
        """Mark the job running and return its attempt number; None if it cannot start.

        While the database is unreachable the start is retried, as outcome writes are, so a
        short outage delays a job by the outage alone and not by a whole lease. The start is
        guarded (queued and held by this runner), so a retry can never start a job twice. A
        retry that finds the job already running for this runner means an earlier try was
        committed and only its answer lost (no one else writes this runner's id): the job
        goes on with that attempt.
        """

        async def committed() -> int | None:
            state = await self.store.state(job)
            if state and (state.status, state.runner_id) == (self.kind.running, self.runner_id):
                return state.attempts
            return None

        try:
            return await self._retry_while_database_down(lambda: self.writer.start(job), committed)
        except JobLostError:
            log.info("job %s left the queue before it started (cancelled or rescued)", job.uuid)
        except DATABASE_DOWN as exc:
            log.warning("could not start job %s: %s", job.uuid, exc)
        return None

    async def _retry_while_database_down(
        self,
        call: Callable[[], Awaitable[T]],
        committed: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """`call()`, again with backoff while the database is unreachable, until the lease may
        have run out (fenced): then the last such error is raised.

        A guarded write retried after its answer was lost fails its guard if the lost try was
        committed. So after such a retry fails with `JobLostError`, `committed()` is asked
        for the committed try's result (None: it was not committed, and the error stands).
        """
        delay = WRITE_RETRY_FIRST
        retried = False
        while True:
            try:
                return await call()
            except DATABASE_DOWN:
                if self.is_fenced():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, WRITE_RETRY_MAX)
                retried = True
            except JobLostError:
                if retried and committed is not None:
                    result = await committed()
                    if result is not None:
                        return result
                raise

    async def _await_outcome(self, execution: Execution, handler_done: Callable[[], None]) -> None:
        """Wait for the handler and record what came of it."""
        ctx = execution.ctx
        try:
            result = await execution.task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if execution.stop_reason is None or (me is not None and me.cancelling()):
                raise  # the runner itself is stopping: the caller hands the job back
            record = self._record_stop(ctx, execution.stop_reason, _since(execution.began))
        except Exception as exc:
            record = self._record_failure(ctx, exc, _since(execution.began))
        else:
            record = self._record_success(ctx, result, _since(execution.began))
        handler_done()
        await record

    async def _run_handler(self, ctx: JobContext) -> dict[str, Any] | None:
        """The job type's handler, within its soft and hard time limits."""
        job_type = self.registry.get(ctx.job.job_type)
        limits = self.settings.time_limits_for(job_type.name, job_type.time_limits)
        loop = asyncio.get_running_loop()
        warn = None
        if limits.soft is not None:
            warn = loop.call_later(limits.soft, _warn_soft_limit, ctx, limits.soft)
        deadline = asyncio.timeout(limits.hard)
        try:
            async with deadline:
                return await job_type.run(ctx)
        except TimeoutError as exc:
            if deadline.expired():
                raise JobTimeoutError(
                    f"the job ran past its hard time limit of {limits.hard:g}s"
                ) from exc
            raise
        finally:
            if warn is not None:
                warn.cancel()

    def _context(self, job: Job, attempt: int) -> JobContext:
        """The context one attempt of a job runs with."""
        fields = {"runner_id": self.runner_id, "job_uuid": str(job.uuid), "attempt": attempt}

        async def report_progress(progress: dict[str, Any]) -> None:
            await self.store.report_progress(job, self.kind, self.runner_id, progress)

        async def save_checkpoint(checkpoint: dict[str, Any]) -> None:
            await self.store.save_checkpoint(job, self.kind, self.runner_id, checkpoint)

        return JobContext(
            job=job,
            attempt=attempt,
            settings=self.settings,
            log=BoundLogger(log, fields),
            services=self.services,
            report_progress=report_progress,
            save_checkpoint=save_checkpoint,
        )

    async def _record_success(self, ctx: JobContext, result: object, seconds: float) -> None:
        """Mark the job completed with what the handler returned, after the error lines of
        earlier attempts; a result that cannot be stored fails the job instead (permanently:
        the handler would return it again)."""
        try:
            extra = _storable_result(result)
        except InvalidJobResultError as exc:
            await self._record_failure(ctx, exc, seconds)
            return
        response: dict[str, Any] = {"messages": "job completed", **extra}
        response["runtime_errors"] = completed_errors(ctx.job.job_response, extra)
        if await self._persist(ctx, self.writer.complete, response, JobStatus.COMPLETED):
            ctx.log.info("job completed", extra={"action": "job_complete"})
            self.instruments.completed(ctx.job.job_type, seconds)

    async def _record_failure(self, ctx: JobContext, exc: Exception, seconds: float) -> None:
        """Mark the job failed (to be retried) or failed_final (no retry can help or is left)."""
        job = ctx.job
        error = _counted_as(exc)
        retry_in = None
        if is_transient(error):
            retry_in = self.retry_policy.delay(
                attempts=ctx.attempt, retry_count=job.retry_count, retry_interval=job.retry_interval
            )
        response = failure_response(job.job_response, error, retry_in, raised=exc)

        async def fail(job: Job, kind: RunnerKind, runner_id: str, body: dict[str, Any]) -> None:
            await self.store.fail(job, kind, runner_id, body, retry_in)

        if await self._persist(ctx, fail, response):
            ctx.log.warning(
                "job failed: %s",
                exc,
                extra={
                    "action": "job_fail",
                    "error_code": error_code(error),
                    "retry": bool(retry_in),
                },
            )
            self.instruments.failed(job.job_type, seconds, error_code(error), bool(retry_in))

    async def _record_stop(self, ctx: JobContext, reason: StopReason, seconds: float) -> None:
        """A job stopped from outside: aborted by a user, or no longer ours."""
        if reason is StopReason.LOST:
            ctx.log.warning("job lost its lease; stopped it", extra={"action": "job_lost"})
            self.instruments.lost(ctx.job.job_type, seconds)
            return
        response = {"messages": "job cancelled while running"}
        if await self._persist(ctx, self.store.abort_running, response):
            ctx.log.info("job aborted", extra={"action": "job_abort"})
            self.instruments.aborted(ctx.job.job_type, seconds)

    async def _persist(
        self,
        ctx: JobContext,
        write: Callable[[Job, RunnerKind, str, dict[str, Any]], Awaitable[None]],
        response: dict[str, Any],
        outcome: JobStatus | None = None,
    ) -> bool:
        """Write an outcome, retrying while the database is down and the lease is still ours.

        `outcome`, when only this attempt can have written it (`completed`: no rescue does),
        lets a retry whose first try was committed with its answer lost count as recorded.
        """

        async def call() -> bool:
            await write(ctx.job, self.kind, self.runner_id, response)
            return True

        async def committed() -> bool | None:
            state = await self.store.state(ctx.job)
            if state and (state.status, state.attempts) == (outcome, ctx.attempt):
                return True
            return None

        try:
            await self._retry_while_database_down(call, committed if outcome else None)
        except ConnectraError as exc:
            ctx.log.error("could not record the outcome: %s", exc.render())
            return False
        except DATABASE_DOWN as exc:
            ctx.log.error("outcome not recorded; the lease ran out: %s", exc)
            return False
        return True

    async def hand_back(self, jobs: list[Job]) -> int:
        """Give held jobs back (shutdown)."""
        return await self.store.hand_back(jobs, self.kind, self.runner_id)


def _since(began: float) -> float:
    """Seconds from `began` (a `time.perf_counter()` reading) to now."""
    return time.perf_counter() - began


def _counted_as(exc: Exception) -> BaseException:
    """The project error a driver's exception counts as, as its adapter classifies it; any
    other exception as it is."""
    return database_error(exc) or search_error(exc) or exc


def _storable_result(result: object) -> dict[str, Any]:
    """A handler's result as `job_response` fields: None or an object jsonb can store."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise InvalidJobResultError(
            f"the handler returned a {type(result).__name__}; it must return a dict or None"
        )
    try:
        check_storable(result)
    except UnstorableJsonError as exc:
        raise InvalidJobResultError(f"the handler's result cannot be stored: {exc}") from None
    return result


def _warn_soft_limit(ctx: JobContext, limit: float) -> None:
    """Past the soft limit a job goes on, but operators hear about it."""
    ctx.log.warning(
        "job passed its soft time limit of %gs", limit, extra={"action": "job_soft_limit"}
    )
