"""Group commit of a runner's most frequent writes: starting a job, completing it, heartbeats.

All waiting writes go out as one statement per round, each with its own guard: a job no longer
ours fails alone with `JobLostError`.
Why: one commit per round, not per write, is what lets one runner drain short jobs quickly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from connectra.db.store import JobStore, job_lost
from connectra.errors import JobLostError
from connectra.jobs import Job, RunnerKind
from connectra.runners.instruments import NO_INSTRUMENTS, JobInstruments

T = TypeVar("T")

# Passes of the event loop a round's completions wait to be told with the next round (below).
ANSWER_PASSES = 4


@dataclass(slots=True)
class _Write(Generic[T]):
    """One consumer's write, and the future it waits on."""

    job: Job
    response: dict[str, Any]
    future: asyncio.Future[T]


class StatusWriter:
    """Batches the starts and completions of one runner's jobs."""

    def __init__(
        self,
        store: JobStore,
        kind: RunnerKind,
        runner_id: str,
        instruments: JobInstruments = NO_INSTRUMENTS,
    ) -> None:
        self.store = store
        self.kind = kind
        self.runner_id = runner_id
        self.instruments = instruments
        self._starts: dict[int, _Write[int]] = {}
        self._completions: dict[int, _Write[None]] = {}
        self._heartbeat: tuple[set[int], asyncio.Future[dict[int, bool]]] | None = None
        self._answers: list[tuple[_Write[None], bool]] = []  # committed, not yet told
        self._waiting = asyncio.Event()
        self.batches = 0  # statements sent, for tests and metrics

    async def start(self, job: Job) -> int:
        """Mark a queued job as running; return its attempt number."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._starts[job.id] = _Write(job, {}, future)
        self._waiting.set()
        return await future

    async def complete(
        self, job: Job, kind: RunnerKind, runner_id: str, response: dict[str, Any]
    ) -> None:
        """Mark a running job completed with its response (the store's `complete`, batched)."""
        assert (kind, runner_id) == (self.kind, self.runner_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._completions[job.id] = _Write(job, response, future)
        self._waiting.set()
        await future

    async def heartbeat(self, job_ids: set[int]) -> dict[int, bool]:
        """Renew the leases of these jobs (the store's `heartbeat`, in turn with the writes)."""
        future: asyncio.Future[dict[int, bool]] = asyncio.get_running_loop().create_future()
        if self._heartbeat is not None:
            _settle(self._heartbeat[1], JobLostError("a newer heartbeat replaced this one"))
        self._heartbeat = (job_ids, future)
        self._waiting.set()
        return await future

    async def run(self) -> None:
        """Send waiting writes as they come, until cancelled; writes left then fail."""
        try:
            while True:
                await self._gather()
                starts, self._starts = self._starts, {}
                completions, self._completions = self._completions, {}
                await self._send(starts, completions)
                await self._send_heartbeat()
        finally:
            self._tell_answers()  # committed: their waiters get the real outcome
            self._fail_all(JobLostError("the runner stopped before this write was sent"))

    async def _gather(self) -> None:
        """Wait until writes are waiting, and let the writes of consumers woken with them join.

        Completions answered by the last round are told when the next round goes out, or
        after `ANSWER_PASSES` passes of the event loop if none comes by then.
        """
        for _ in range(ANSWER_PASSES):
            if self._waiting.is_set() or not self._answers:
                break
            await asyncio.sleep(0)
        if not self._waiting.is_set():
            self._tell_answers()
            await self._waiting.wait()
        await asyncio.sleep(0)  # let the writes of consumers woken with it join
        self._waiting.clear()

    def _tell_answers(self) -> None:
        """Give the completions answered by the last round their results."""
        answers, self._answers = self._answers, []
        for completion, done in answers:
            _resolve(completion, done, None)

    async def _send(
        self, starts: dict[int, _Write[int]], completions: dict[int, _Write[None]]
    ) -> None:
        """One statement for this round's writes; each waiter gets its result or error."""
        starts = {job_id: w for job_id, w in starts.items() if not w.future.done()}
        completions = {job_id: w for job_id, w in completions.items() if not w.future.done()}
        if not starts and not completions:
            return  # every waiter left (cancelled)
        self.batches += 1
        responses = [(job_id, write.response) for job_id, write in completions.items()]
        writes: list[_Write[Any]] = [*starts.values(), *completions.values()]
        # The last round's completions are told now: their waiters (a log line each, then
        # back to the queue) run while this statement is in flight, not before it goes out.
        self._tell_answers()
        began = time.perf_counter()
        try:
            started, completed = await self.store.start_and_complete(
                self.kind, self.runner_id, list(starts), responses
            )
        except Exception as exc:
            # Each waiter handles the error as it would for a write of its own (retry while
            # the database is down, give up otherwise); the writer goes on.
            _settle_all(writes, exc)
            return
        except BaseException:
            # Cancelled mid-statement: nobody may wait forever on these writes.
            _settle_all(writes, JobLostError("the runner stopped during this write"))
            raise
        self.instruments.round(len(writes), time.perf_counter() - began)
        for job_id, start in starts.items():
            _resolve(start, job_id in started, started.get(job_id, 0))
        self._answers = [(w, job_id in completed) for job_id, w in completions.items()]

    async def _send_heartbeat(self) -> None:
        """The waiting heartbeat, if any; its result or error goes to its caller."""
        if self._heartbeat is None:
            return
        job_ids, future = self._heartbeat
        self._heartbeat = None
        if future.done():
            return
        self._tell_answers()
        try:
            held = await self.store.heartbeat(self.kind, self.runner_id, job_ids)
        except Exception as exc:
            _settle(future, exc)
        except BaseException:
            _settle(future, JobLostError("the runner stopped during this heartbeat"))
            raise
        else:
            if not future.done():
                future.set_result(held)

    def _fail_all(self, exc: Exception) -> None:
        """Fail every write still waiting (the writer is stopping)."""
        _settle_all(self._starts.values(), exc)
        _settle_all(self._completions.values(), exc)
        if self._heartbeat is not None:
            _settle(self._heartbeat[1], exc)
        self._starts, self._completions, self._heartbeat = {}, {}, None


def _resolve(write: _Write[T], done: bool, result: T) -> None:
    """Give a write its result, or `JobLostError` when its guard did not hold."""
    if not done:
        _settle(write.future, job_lost(write.job))
    elif not write.future.done():
        write.future.set_result(result)


def _settle_all(writes: Iterable[_Write[Any]], exc: BaseException) -> None:
    """Fail every write of a batch."""
    for write in writes:
        _settle(write.future, exc)


def _settle(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail a write unless its waiter already left."""
    if not future.done():
        future.set_exception(exc)
