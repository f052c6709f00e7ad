"""One runner: a ticker that claims jobs into a bounded queue, and consumers that run them.

The ticker never claims more jobs than the queue has room for, so every claimed job is
either in the queue or in a consumer's hands. On stop, the ticker stops claiming, idle
consumers leave, busy ones get a grace period, and everything still held goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from connectra.db.pool import DATABASE_DOWN
from connectra.db.store import JobStore
from connectra.errors import ConnectraError
from connectra.jobs import Job, RunnerKind
from connectra.logs import BoundLogger
from connectra.processors.base import JobContext, JobTypeRegistry, Services
from connectra.retry import RetryPolicy
from connectra.settings import Settings

log = logging.getLogger(__name__)

# A status write that fails for these leaves the job to the rescuer instead of crashing.
STATUS_WRITE_ERRORS: tuple[type[Exception], ...] = (ConnectraError, *DATABASE_DOWN)
# How long final writes (hand-back, last status) may take once we are stopping.
FINAL_WRITE_TIMEOUT = 5.0
MAX_RUNTIME_ERRORS = 20
# Wake a little after a retry falls due, so the claim's `run_after <= now()` holds.
DUE_SLACK = 0.01


def new_runner_id(kind: RunnerKind) -> str:
    """A name unique to this runner: host, process and a random suffix."""
    return f"{kind.name}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """How one runner behaves; built from the settings."""

    kind: RunnerKind
    concurrency: int
    queue_size: int
    tick_interval: timedelta
    shutdown_grace: timedelta
    retry_policy: RetryPolicy

    @classmethod
    def from_settings(cls, settings: Settings, kind: RunnerKind, concurrency: int) -> RunnerConfig:
        """The seed's knobs: `JOB_IN_QUEUE_SIZE`, the ticker interval, the retry policy."""
        return cls(
            kind=kind,
            concurrency=concurrency,
            queue_size=settings.job_in_queue_size,
            tick_interval=settings.ticker_interval,
            shutdown_grace=settings.shutdown_grace,
            retry_policy=settings.retry_policy(),
        )


@dataclass(slots=True)
class Stopping:
    """The two stop levels: `soft` stops claiming, `hard` abandons the grace period."""

    soft: asyncio.Event = field(default_factory=asyncio.Event)
    hard: asyncio.Event = field(default_factory=asyncio.Event)

    def request(self) -> None:
        """The first request is soft, any further one hard."""
        if self.soft.is_set():
            self.hard.set()
        self.soft.set()


class Runner:
    """Claims jobs of one runner kind and runs them with a fixed number of consumers."""

    def __init__(
        self,
        store: JobStore,
        registry: JobTypeRegistry,
        settings: Settings,
        config: RunnerConfig,
        runner_id: str | None = None,
        services: Services | None = None,
    ) -> None:
        self.store = store
        self.services = services or Services(pool=store.pool)
        self.registry = registry
        self.settings = settings
        self.config = config
        self.kind = config.kind
        self.runner_id = runner_id or new_runner_id(config.kind)
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=config.queue_size)
        self._wake = asyncio.Event()
        self._idle: set[asyncio.Task[None]] = set()
        self._backlog = False
        self._log = BoundLogger(log, {"runner_id": self.runner_id})

    def wake(self) -> None:
        """Claim now instead of at the next tick (a job was just created)."""
        self._wake.set()

    async def run(self, stopping: Stopping) -> None:
        """Run until asked to stop, then hand back everything not finished."""
        self._log.info("runner started", extra={"action": "runner_start"})
        try:
            async with asyncio.TaskGroup() as tg:
                consumers = [
                    tg.create_task(self._consume(stopping)) for _ in range(self.config.concurrency)
                ]
                tg.create_task(self._tick(stopping))
                tg.create_task(self._stop_when_asked(stopping, consumers))
        finally:
            await _final(self._hand_back_queue())
            self._log.info("runner stopped", extra={"action": "runner_stop"})

    # -- the ticker ------------------------------------------------------------------------

    async def _tick(self, stopping: Stopping) -> None:
        """Claim as many jobs as the queue has room for, every tick or when woken."""
        while not stopping.soft.is_set():
            self._wake.clear()
            free = self.queue.maxsize - self.queue.qsize()
            if free == 0:
                await self._wake.wait()  # back-pressure: a consumer taking a job wakes us
                continue
            self._backlog = await self._claim(free)
            if not self._backlog:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), await self._idle_wait())

    async def _idle_wait(self) -> float:
        """Until the next tick, or sooner when a failed job falls due before it."""
        tick = self.config.tick_interval.total_seconds()
        try:
            due = await self.store.seconds_until_due(self.kind)
        except DATABASE_DOWN:
            return tick
        return tick if due is None else min(tick, max(due, 0.0) + DUE_SLACK)

    async def _claim(self, free: int) -> bool:
        """One claim of up to `free` jobs; True when it filled them all (more may wait)."""
        try:
            jobs = await self.store.claim(self.kind, self.runner_id, free)
        except DATABASE_DOWN as exc:
            self._log.warning("claim failed: %s", exc, extra={"action": "claim_failed"})
            return False
        for job in jobs:
            self.queue.put_nowait(job)  # never blocks: we asked for at most `free` jobs
        if jobs:
            self._log.debug("claimed %d jobs", len(jobs), extra={"action": "claim"})
        return len(jobs) == free

    # -- consumers -------------------------------------------------------------------------

    async def _consume(self, stopping: Stopping) -> None:
        """Take jobs off the queue and run them until told to stop."""
        me = asyncio.current_task()
        assert me is not None
        while not stopping.soft.is_set():
            self._idle.add(me)
            try:
                job = await self.queue.get()
            finally:
                self._idle.discard(me)
            if self._backlog:
                self._wake.set()  # room in the queue and more jobs waiting: claim now
            await self._execute(job)

    async def _execute(self, job: Job) -> None:
        """Run one job from queued to completed or failed."""
        try:
            await self._start_and_run(job)
        except asyncio.CancelledError:
            self._log.warning(
                "job %s interrupted; handing it back", job.uuid, extra={"action": "job_hand_back"}
            )
            await _final(self.store.hand_back([job], self.kind, self.runner_id))
            raise

    async def _start_and_run(self, job: Job) -> None:
        """Mark the job running, run its handler, record the outcome."""
        try:
            attempt = await self.store.start(job, self.kind, self.runner_id)
        except STATUS_WRITE_ERRORS as exc:
            self._log.error("could not start job %s: %s", job.uuid, exc)
            return
        ctx = self._context(job, attempt)
        ctx.log.info("job started", extra={"action": "job_start"})
        try:
            result = await self.registry.get(job.job_type).run(ctx)
        except Exception as exc:
            await self._record_failure(ctx, exc)
        else:
            await self._record_success(ctx, result)

    def _context(self, job: Job, attempt: int) -> JobContext:
        """The context one attempt of a job runs with."""
        fields = {"runner_id": self.runner_id, "job_uuid": str(job.uuid), "attempt": attempt}

        async def report_progress(progress: dict[str, Any]) -> None:
            await self.store.report_progress(job, self.kind, self.runner_id, progress)

        return JobContext(
            job=job,
            attempt=attempt,
            settings=self.settings,
            log=BoundLogger(log, fields),
            services=self.services,
            report_progress=report_progress,
        )

    async def _record_success(self, ctx: JobContext, result: dict[str, Any] | None) -> None:
        """Mark the job completed with what the handler returned."""
        response: dict[str, Any] = {"runtime_errors": [], "messages": "job completed"}
        response.update(result or {})
        try:
            await self.store.complete(ctx.job, self.kind, self.runner_id, response)
        except STATUS_WRITE_ERRORS as exc:
            ctx.log.error("could not record completion: %s", exc)
            return
        ctx.log.info("job completed", extra={"action": "job_complete"})

    async def _record_failure(self, ctx: JobContext, exc: Exception) -> None:
        """Mark the job failed, with when (if ever) it runs again."""
        job = ctx.job
        retry_in = self.config.retry_policy.delay(
            attempts=ctx.attempt, retry_count=job.retry_count, retry_interval=job.retry_interval
        )
        response = failure_response(job, exc, retry_in)
        try:
            await self.store.fail(job, self.kind, self.runner_id, response, retry_in)
        except STATUS_WRITE_ERRORS as write_exc:
            ctx.log.error("could not record failure: %s", write_exc)
            return
        ctx.log.warning(
            "job failed: %s", exc, extra={"action": "job_fail", "error_code": error_code(exc)}
        )

    # -- stopping --------------------------------------------------------------------------

    async def _stop_when_asked(
        self, stopping: Stopping, consumers: list[asyncio.Task[None]]
    ) -> None:
        """On stop: wake the ticker, dismiss idle consumers, give busy ones their grace."""
        await stopping.soft.wait()
        self._log.info("stopping", extra={"action": "runner_stopping"})
        self._wake.set()
        for task in list(self._idle):
            task.cancel()  # an idle consumer holds no job; a queued item stays in the queue
        await _wait_for_grace(consumers, stopping.hard, self.config.shutdown_grace)
        for task in consumers:
            task.cancel()

    async def _hand_back_queue(self) -> None:
        """Jobs still waiting in memory go back, attempts untouched."""
        jobs = []
        while not self.queue.empty():
            jobs.append(self.queue.get_nowait())
        if jobs:
            count = await self.store.hand_back(jobs, self.kind, self.runner_id)
            self._log.info(
                "handed back %d queued jobs", count, extra={"action": "hand_back_queued"}
            )


async def _wait_for_grace(
    tasks: list[asyncio.Task[None]], hard: asyncio.Event, grace: timedelta
) -> None:
    """Wait until the tasks end, the grace period runs out, or a hard stop comes."""
    pending: set[asyncio.Future[Any]] = {task for task in tasks if not task.done()}
    if not pending:
        return
    hard_stop = asyncio.ensure_future(hard.wait())
    deadline = asyncio.get_running_loop().time() + grace.total_seconds()
    try:
        while pending and not hard.is_set():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            _, pending = await asyncio.wait(
                {*pending, hard_stop}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(hard_stop)
    finally:
        hard_stop.cancel()


def error_code(exc: BaseException) -> str:
    """The `ERR_...` code of an exception; unexpected ones are internal errors."""
    return exc.code if isinstance(exc, ConnectraError) else "ERR_INTERNAL"


def failure_response(job: Job, exc: Exception, retry_in: timedelta | None) -> dict[str, Any]:
    """The `job_response` of a failed attempt: the seed's fields plus a structured error."""
    message = str(exc) or type(exc).__name__
    runtime_errors = list(job.job_response.get("runtime_errors", []))[-MAX_RUNTIME_ERRORS + 1 :]
    runtime_errors.append(f"{error_code(exc)}: {message}")
    outcome = "will retry" if retry_in is not None else "no retries left"
    return {
        "runtime_errors": runtime_errors,
        "messages": f"job failed ({outcome})",
        "error": {
            "code": error_code(exc),
            "message": message,
            "details": {"type": type(exc).__name__, "traceback": _short_traceback(exc)},
        },
    }


def _short_traceback(exc: BaseException) -> list[str]:
    """The last few frames, enough to find the failing line."""
    return traceback.format_exception(exc, limit=-3)[-4:]


async def _final(write: Any) -> None:
    """A last write that must happen even while this task is being cancelled."""
    try:
        await asyncio.wait_for(asyncio.shield(write), FINAL_WRITE_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("final write failed: %s", exc, extra={"action": "final_write_failed"})
