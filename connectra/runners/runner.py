"""One runner: a ticker claiming jobs into a bounded queue, consumers running them, a lease keeper.

The ticker claims no more than the queue has room for; at most `concurrency` handlers run at
once, with three consumers per slot; on stop, what is still held goes back.
Why three per slot: while some write outcomes, others already run the next jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from connectra.db.driver_errors import DATABASE_DOWN
from connectra.db.monitor_store import MonitorStore, RunnerPresence
from connectra.db.store import JobStore
from connectra.errors import JobLostError
from connectra.jobs import FIRST_TIME, Job, RunnerKind
from connectra.logs import BoundLogger
from connectra.processors.base import JobTypeRegistry, Services
from connectra.retry import RetryPolicy
from connectra.runners.execution import Executor, StopReason
from connectra.runners.instruments import job_instruments
from connectra.runners.status_writer import StatusWriter
from connectra.settings import Settings

log = logging.getLogger(__name__)

# How long final writes (hand-back) may take once we are stopping.
FINAL_WRITE_TIMEOUT = 5.0
# How long the write of the runner's presence row may take.
PRESENCE_TIMEOUT = 5.0
PRESENCE_FAILED: tuple[type[Exception], ...] = (TimeoutError, *DATABASE_DOWN)
# Without a successful heartbeat for this share of the lease, a runner gives up its jobs
# before anyone can rescue them, so a job never runs on two runners at once.
FENCE_SHARE = 0.75
# Consumers per handler slot: one runs a job while the others wait for the writes of the jobs
# it ran before (a completion is told one round after it was committed, see status_writer.py).
CONSUMERS_PER_SLOT = 3
# Wake a little after a delayed job or a retry falls due, so the claim's `run_after <= now()`
# holds.
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
    heartbeat_interval: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(seconds=60)
    queues: tuple[str, ...] | None = None  # None: every queue

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        kind: RunnerKind,
        concurrency: int,
        queues: tuple[str, ...] | None = None,
    ) -> RunnerConfig:
        """The seed's knobs: `JOB_IN_QUEUE_SIZE`, the ticker interval, the retry policy."""
        return cls(
            kind=kind,
            queues=queues,
            concurrency=concurrency,
            queue_size=settings.job_in_queue_size,
            tick_interval=settings.ticker_interval,
            shutdown_grace=settings.shutdown_grace,
            retry_policy=settings.retry_policy(),
            heartbeat_interval=settings.heartbeat_interval,
            lease=settings.lease,
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
        self.config = config
        self.kind = config.kind
        self.runner_id = runner_id or new_runner_id(config.kind)
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=config.queue_size)
        instruments = job_instruments(settings.metrics_enabled, self.label)
        self.writer = StatusWriter(store, config.kind, self.runner_id, instruments)
        self.executor = Executor(
            store=store,
            registry=registry,
            settings=settings,
            services=services or Services(pool=store.pool),
            kind=config.kind,
            runner_id=self.runner_id,
            retry_policy=config.retry_policy,
            writer=self.writer,
            is_fenced=self._is_fenced,
            instruments=instruments,
        )
        self._monitor = MonitorStore(store.pool)
        self._queued: dict[int, Job] = {}
        self._lost: set[int] = set()
        self._wake = asyncio.Event()
        # first_time: whether a delayed job may exist. While a lookup says none does, idle
        # waits skip it (one query less per idle claim), until told of one or until a tick.
        # (The retry runner always looks: every failed job falls due later.)
        self._maybe_due = True
        self._check_leases = asyncio.Event()
        self._idle: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._backlog = False
        # Refill in batches: claim again once the queue is down to half, not per free slot.
        self._refill_at = config.queue_size // 2
        self._last_heartbeat = time.monotonic()
        self._log = BoundLogger(log, {"runner_id": self.runner_id})

    def wake(self) -> None:
        """Claim now instead of at the next tick (a job was just created)."""
        self._wake.set()

    def expect_due(self) -> None:
        """A job due later exists (a delayed job was created): look up when, and claim now."""
        self._maybe_due = True
        self._wake.set()

    def check_leases(self) -> None:
        """Heartbeat now (a cancel was requested), instead of at the next interval."""
        self._check_leases.set()

    @property
    def label(self) -> str:
        """Kind and queues, e.g. `first_time:reports,emails` (`*`: every queue): the `runner`
        label of its metrics, the same in every process and after a restart."""
        return f"{self.kind.name}:{','.join(self.config.queues or ('*',))}"

    def heartbeat_age(self) -> float:
        """Seconds since the last successful heartbeat round (or since the runner began)."""
        return time.monotonic() - self._last_heartbeat

    def is_fenced(self) -> bool:
        """Whether heartbeats failed for so long that the runner gave up its jobs."""
        return self._is_fenced()

    def queue_depth(self) -> int:
        """Jobs waiting in the in-memory queue."""
        return self.queue.qsize()

    def busy_slots(self) -> int:
        """Handler slots running a job (or starting one)."""
        running = sum(not e.task.done() for e in self.executor.running.values())
        return len(self.executor.starting) + running

    async def run(self, stopping: Stopping) -> None:
        """Run until asked to stop, then hand back everything not finished."""
        self._log.info("runner started", extra={"action": "runner_start"})
        try:
            await self._announce_presence()
            async with asyncio.TaskGroup() as outer:
                helpers = [
                    outer.create_task(self._keep_leases()),
                    outer.create_task(self.writer.run()),
                ]
                try:
                    await self._work(stopping)
                finally:
                    for task in helpers:
                        task.cancel()
        finally:
            await _final(self._hand_back_queue())
            await _final(self._withdraw_presence())
            self._log.info("runner stopped", extra={"action": "runner_stop"})

    async def _work(self, stopping: Stopping) -> None:
        """The ticker and the consumers, until a stop has let them finish."""
        async with asyncio.TaskGroup() as tg:
            consumers = [
                tg.create_task(self._consume(stopping))
                for _ in range(CONSUMERS_PER_SLOT * self.config.concurrency)
            ]
            tg.create_task(self._tick(stopping))
            tg.create_task(self._stop_when_asked(stopping, consumers))

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
                try:
                    await asyncio.wait_for(self._wake.wait(), await self._idle_wait())
                except TimeoutError:
                    self._maybe_due = True  # a tick: look again (a notification may be lost)

    async def _idle_wait(self) -> float:
        """Until the next tick, or sooner when a delayed or failed job falls due before it. A
        delayed job that is due is made open here (0: claim again at once)."""
        tick = self.config.tick_interval.total_seconds()
        if self.kind is FIRST_TIME and not self._maybe_due:
            return tick
        try:
            due = await self.store.seconds_until_due(self.kind, self.config.queues)
            if due is not None and due <= 0 and self.kind is FIRST_TIME:
                return 0.0 if await self.store.promote_due() else DUE_SLACK
        except DATABASE_DOWN:
            return tick
        if due is None:
            self._maybe_due = False
            return tick
        return min(tick, max(due, 0.0) + DUE_SLACK)

    async def _claim(self, free: int) -> bool:
        """One claim of up to `free` jobs; True when it filled them all (more may wait)."""
        if self._is_fenced():
            return False  # no lease can be kept while heartbeats fail: take nothing new
        try:
            jobs = await self.store.claim(self.kind, self.runner_id, free, self.config.queues)
        except DATABASE_DOWN as exc:
            self._log.warning("claim failed: %s", exc, extra={"action": "claim_failed"})
            return False
        for job in jobs:
            self._queued[job.id] = job
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
                slot = await _Slot.take(self._slots)
                try:
                    job = await self.queue.get()
                except BaseException:
                    slot.release()
                    raise
            finally:
                self._idle.discard(me)
            if self._backlog and self.queue.qsize() <= self._refill_at:
                self._wake.set()  # the queue ran half empty and more jobs wait: claim now
            try:
                await self._execute(job, slot)
            finally:
                slot.release()

    async def _execute(self, job: Job, slot: _Slot) -> None:
        """Run one queued job, unless it was taken from us while it waited."""
        self._queued.pop(job.id, None)
        if job.id in self._lost:
            self._lost.discard(job.id)
            return
        try:
            await self.executor.execute(job, handler_done=slot.release)
        except asyncio.CancelledError:
            self._log.warning(
                "job %s interrupted; handing it back", job.uuid, extra={"action": "job_hand_back"}
            )
            await _final(self.executor.hand_back([job]))
            raise

    # -- leases ----------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Heartbeat every held job; stop those taken from us or cancelled by a user."""
        interval = self.config.heartbeat_interval.total_seconds()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_leases.wait(), interval)
            self._check_leases.clear()
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        """One heartbeat; judge only jobs held before it was sent."""
        queued, running = set(self._queued), set(self.executor.running)
        known = queued | running | self.executor.starting
        try:
            held = await self.writer.heartbeat(known)
        except JobLostError:
            return  # the writer is stopping, and so is the runner
        except DATABASE_DOWN as exc:
            self._log.warning("heartbeat failed: %s", exc, extra={"action": "heartbeat_failed"})
            if self._is_fenced():
                self._give_up_everything()
            return
        self._last_heartbeat = time.monotonic()
        for job_id in running:
            execution = self.executor.running.get(job_id)
            if execution is None:
                continue
            if job_id not in held:
                execution.stop(StopReason.LOST)
            elif held[job_id]:
                execution.stop(StopReason.ABORTED)
        self._lost |= {job_id for job_id in queued if job_id not in held and job_id in self._queued}
        await self._announce_presence()

    async def _announce_presence(self) -> None:
        """Write this runner's row in the runners table (how a deployment tells that a runner
        lives even when it holds no job). Best effort: a failure is only logged."""
        presence = RunnerPresence(
            runner_id=self.runner_id,
            kind=self.kind.name,
            queues=self.config.queues,
            host=socket.gethostname(),
            pid=os.getpid(),
            heartbeat_interval=self.config.heartbeat_interval,
        )
        try:
            async with asyncio.timeout(PRESENCE_TIMEOUT):
                await self._monitor.runner_seen(presence)
        except PRESENCE_FAILED as exc:
            self._log.warning("presence not written: %r", exc, extra={"action": "presence_failed"})

    async def _withdraw_presence(self) -> None:
        """Delete this runner's row: it stops."""
        await self._monitor.runner_gone(self.runner_id)

    def _is_fenced(self) -> bool:
        """True when heartbeats failed for so long that our leases may have run out."""
        fence = self.config.lease.total_seconds() * FENCE_SHARE
        return time.monotonic() - self._last_heartbeat > fence

    def _give_up_everything(self) -> None:
        """Our leases may be gone: stop every running job and drop the queued ones."""
        self._log.error(
            "no heartbeat for most of the lease; giving up held jobs",
            extra={"action": "lease_fenced"},
        )
        for execution in list(self.executor.running.values()):
            execution.stop(StopReason.LOST)
        self._lost |= set(self._queued)

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
            job = self.queue.get_nowait()
            if job.id not in self._lost:
                jobs.append(job)
        self._queued.clear()
        if jobs:
            count = await self.executor.hand_back(jobs)
            self._log.info(
                "handed back %d queued jobs", count, extra={"action": "hand_back_queued"}
            )


class _Slot:
    """One handler slot, given back exactly once."""

    __slots__ = ("_semaphore",)

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    @classmethod
    async def take(cls, semaphore: asyncio.Semaphore) -> _Slot:
        """Wait for a free slot."""
        await semaphore.acquire()
        return cls(semaphore)

    def release(self) -> None:
        """Give the slot back; later calls do nothing."""
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


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


async def _final(write: Any) -> None:
    """A last write that must happen even while this task is being cancelled."""
    try:
        await asyncio.wait_for(asyncio.shield(write), FINAL_WRITE_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("final write failed: %s", exc, extra={"action": "final_write_failed"})
