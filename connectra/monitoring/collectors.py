"""The figures read when `/metrics` is scraped, not updated on the job path: each runner's
queue and handler slots, and (in the API) jobs by status and queue and live runners from
PostgreSQL, read at most every `DATABASE_FIGURES_MAX_AGE` seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import asyncpg
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from connectra import metrics as m
from connectra.db.monitor_store import JobCounts, LiveRunners, MonitorStore
from connectra.monitoring.health import NOT_READY, READY_TIMEOUT, WatchedRunner

log = logging.getLogger(__name__)

# However often `/metrics` is scraped, the database is read at most this often per process.
DATABASE_FIGURES_MAX_AGE = 5.0
# The job counts' own bound is their statement timeout (queries.JOB_COUNTS_PLAN); this one
# also covers waiting for a pooled connection.
DATABASE_FIGURES_TIMEOUT = 2 * READY_TIMEOUT


def _family(spec: m.MetricSpec) -> GaugeMetricFamily:
    """An empty gauge family of a declared metric."""
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


class RunnerGauges:
    """Per-runner gauges, read from the runners' memory at each scrape. Runners with one label
    (possible only with several daemons in one process, as in tests) are summed."""

    def __init__(self, runners: Sequence[WatchedRunner]) -> None:
        self.runners = runners

    def collect(self) -> Iterable[Metric]:
        """One family per gauge, one sample per runner label."""
        readings: dict[m.MetricSpec, Callable[[WatchedRunner], float]] = {
            m.RUNNER_QUEUE_DEPTH: lambda r: r.queue_depth(),
            m.RUNNER_BUSY_SLOTS: lambda r: r.busy_slots(),
            m.RUNNER_SLOTS: lambda r: r.config.concurrency,
            m.RUNNER_HEARTBEAT_AGE: lambda r: r.heartbeat_age(),
        }
        for spec, read in readings.items():
            values: dict[str, float] = {}
            for runner in self.runners:
                values[runner.label] = values.get(runner.label, 0.0) + read(runner)
            family = _family(spec)
            for label, value in values.items():
                family.add_metric([label], value)
            yield family


class DatabaseFigures:
    """Jobs by status and queue, and live runners by kind, from PostgreSQL: read at most every
    `max_age` seconds, by one scrape at a time (the others wait for it and share its result).
    A failed read is counted and leaves the figures out until the next read."""

    def __init__(self, monitor: MonitorStore, max_age: float = DATABASE_FIGURES_MAX_AGE) -> None:
        self.monitor = monitor
        self.max_age = max_age
        self._families: list[Metric] = []
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        # Every (status, queue) seen since the process started: shown as 0 once it empties,
        # instead of vanishing from the graphs.
        self._seen: set[tuple[str, str]] = set()

    async def refresh(self) -> None:
        """Read the database unless the last read (or failure) is recent enough."""
        async with self._lock:
            now = time.monotonic()
            if self._read_at is not None and now - self._read_at < self.max_age:
                return
            self._read_at = now
            try:
                async with asyncio.timeout(DATABASE_FIGURES_TIMEOUT):
                    counts = await self.monitor.job_counts()
                    live = await self.monitor.live_runners()
            except (*NOT_READY, asyncpg.PostgresError) as exc:
                m.JOB_COUNTS_ERRORS.inc()
                log.warning(
                    "job counts not read: %r", exc, extra={"action": "metrics_database_failed"}
                )
                self._families = []
                return
            self._families = self._build(counts, live)

    def _build(self, counts: JobCounts, live: LiveRunners) -> list[Metric]:
        """The families of one read."""
        self._seen |= set(counts.unfinished)
        jobs = _family(m.JOBS_BY_STATUS)
        for status, queue in sorted(self._seen):
            jobs.add_metric([status, queue], counts.unfinished.get((status, queue), 0))
        estimated = _family(m.JOBS_ESTIMATED)
        for status, value in sorted(counts.finished_estimate.items()):
            estimated.add_metric([status], value)
        runners = _family(m.RUNNERS_LIVE)
        for kind, value in sorted(live.by_kind.items()):
            runners.add_metric([kind], value)
        return [jobs, estimated, runners]

    def collect(self) -> Iterable[Metric]:
        """The families of the last read."""
        return list(self._families)
