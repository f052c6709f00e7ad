"""Every metric the product exports, declared once: name, type, help, labels and buckets.

Counters and histograms live in `REGISTRY`, the process's own registry; gauges are only
`MetricSpec`s here, read at scrape time by `connectra/monitoring/collectors.py`. The table
in `docs/operations/metrics.md` lists the same metrics (a test compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.process_collector import ProcessCollector

from connectra.loop_metrics import LoopCounter, LoopHistogram

MetricKind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric as scraped: its full name (counters end in `_total`), type, help, labels."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


# No `*_created` series beside every counter and histogram: the process start time tells.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
DECLARED: list[MetricSpec] = []

# Jobs run from milliseconds (no-op) to hours (a 10M-row import).
JOB_SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip
# Due time to start: a few ms with LISTEN/NOTIFY, up to a tick without it, hours in a backlog.
PICKUP_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
ROUND_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ROUND_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
REQUEST_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def _declare(spec: MetricSpec) -> MetricSpec:
    """Record a metric in `DECLARED`."""
    DECLARED.append(spec)
    return spec


def _counter(name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
    """A counter; `name` is the scraped name, ending in `_total`."""
    _declare(MetricSpec(name, "counter", help, labels))
    return Counter(name.removesuffix("_total"), help, labels, registry=REGISTRY)


def _histogram(
    name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...]
) -> Histogram:
    """A histogram with these buckets."""
    _declare(MetricSpec(name, "histogram", help, labels))
    return Histogram(name, help, labels, registry=REGISTRY, buckets=buckets)


def _loop_counter(name: str, help: str, labels: tuple[str, ...]) -> LoopCounter:
    """A counter of the per-job path (see `loop_metrics.py`)."""
    _declare(MetricSpec(name, "counter", help, labels))
    counter = LoopCounter(name, help, labels)
    REGISTRY.register(counter)
    return counter


def _loop_histogram(
    name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...]
) -> LoopHistogram:
    """A histogram of the per-job path (see `loop_metrics.py`)."""
    _declare(MetricSpec(name, "histogram", help, labels))
    histogram = LoopHistogram(name, help, labels, buckets)
    REGISTRY.register(histogram)
    return histogram


def _gauge(name: str, help: str, labels: tuple[str, ...] = ()) -> MetricSpec:
    """A gauge read at scrape time by a collector."""
    return _declare(MetricSpec(name, "gauge", help, labels))


# -- jobs, counted by the runner process that recorded the outcome ---------------------------

JOBS_STARTED = _loop_counter(
    "connectra_jobs_started_total", "Attempts started (the start committed).", ("job_type",)
)
JOBS_COMPLETED = _loop_counter("connectra_jobs_completed_total", "Jobs completed.", ("job_type",))
JOBS_RETRIED = _counter(
    "connectra_jobs_retried_total",
    "Attempts that failed with a retry due (status failed).",
    ("job_type", "error_code"),
)
JOBS_FAILED = _counter(
    "connectra_jobs_failed_total",
    "Jobs failed for good: no retry left or a permanent error (status failed_final).",
    ("job_type", "error_code"),
)
JOBS_ABORTED = _counter(
    "connectra_jobs_aborted_total",
    "Jobs cancelled: a running job stopped by its runner, or a waiting job cancelled "
    "through the API.",
    ("job_type",),
)
JOBS_RESCUED = _counter(
    "connectra_jobs_rescued_total",
    "Jobs taken back from a runner that stopped heartbeating, by the status they went to.",
    ("job_type", "status"),
)
JOB_DURATION = _loop_histogram(
    "connectra_job_duration_seconds",
    "How long the handler of an attempt ran, by outcome (completed, failed, failed_final, "
    "aborted, lost).",
    ("job_type", "outcome"),
    JOB_SECONDS_BUCKETS,
)
JOB_PICKUP = _loop_histogram(
    "connectra_job_pickup_seconds",
    "From a job's due time to its start: created or run_at for a first run, run_after for a retry.",
    ("job_type",),
    PICKUP_SECONDS_BUCKETS,
)

# -- runners, read from each runner's memory at scrape time ------------------------------

RUNNER_QUEUE_DEPTH = _gauge(
    "connectra_runner_queue_depth", "Jobs waiting in the runner's in-memory queue.", ("runner",)
)
RUNNER_BUSY_SLOTS = _gauge(
    "connectra_runner_busy_slots",
    "Handler slots running a job (starting it included).",
    ("runner",),
)
RUNNER_SLOTS = _gauge(
    "connectra_runner_slots",
    "Handler slots of the runner (PARALLEL_JOBS or its queue's).",
    ("runner",),
)
RUNNER_HEARTBEAT_AGE = _gauge(
    "connectra_runner_heartbeat_age_seconds",
    "Seconds since the runner's last successful heartbeat round.",
    ("runner",),
)
WRITER_ROUND_SIZE = _histogram(
    "connectra_status_writer_round_size",
    "Starts and completions written by one status-writer statement.",
    ("runner",),
    ROUND_SIZE_BUCKETS,
)
WRITER_ROUND_SECONDS = _histogram(
    "connectra_status_writer_round_seconds",
    "How long one status-writer statement took (round trip and commit).",
    ("runner",),
    ROUND_SECONDS_BUCKETS,
)

# -- bulk CSV jobs ---------------------------------------------------------------------------

ROWS_IMPORTED = _counter(
    "connectra_rows_imported_total", "Rows imported (committed in every sink).", ("service",)
)
ROWS_FAILED = _counter(
    "connectra_rows_failed_total",
    "Bad rows of imports, written to failed-rows files.",
    ("service",),
)
ROWS_EXPORTED = _counter("connectra_rows_exported_total", "Rows exported to S3.", ("service",))

# -- the HTTP API ----------------------------------------------------------------------------

HTTP_REQUEST_DURATION = _histogram(
    "connectra_http_request_duration_seconds",
    "API requests by method, route (its canonical path; 'unmatched' for none) and status.",
    ("method", "route", "status"),
    REQUEST_SECONDS_BUCKETS,
)

# -- the database, read by the API at scrape time (cached a few seconds) -------------------

JOBS_BY_STATUS = _gauge(
    "connectra_jobs",
    "Jobs waiting or running (scheduled, open, in_queue, processing, failed, "
    "retry_in_queued, retrying), counted exactly.",
    ("status", "queue"),
)
JOBS_ESTIMATED = _gauge(
    "connectra_jobs_estimated",
    "Finished jobs (completed, failed_final, aborted): an estimate from PostgreSQL's "
    "statistics, as of the last ANALYZE of jobs.",
    ("status",),
)
RUNNERS_LIVE = _gauge(
    "connectra_runners_live",
    "Runners whose last heartbeat round is younger than twice their heartbeat interval.",
    ("kind",),
)
JOB_COUNTS_ERRORS = _counter(
    "connectra_job_counts_errors_total",
    "Scrapes whose database figures could not be read (they are left out of that scrape).",
)

# -- the process (prometheus_client's ProcessCollector, Linux only) -----------------------

_PROCESS: tuple[tuple[str, MetricKind, str], ...] = (
    ("cpu_seconds_total", "counter", "User and system CPU time in seconds."),
    ("resident_memory_bytes", "gauge", "Resident memory size in bytes."),
    ("virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
    ("start_time_seconds", "gauge", "Start time of the process since the epoch, seconds."),
    ("open_fds", "gauge", "Open file descriptors."),
    ("max_fds", "gauge", "Maximum number of open file descriptors."),
)
PROCESS_METRICS = tuple(
    _declare(MetricSpec(f"connectra_process_{name}", kind, help)) for name, kind, help in _PROCESS
)
ProcessCollector(namespace="connectra", registry=REGISTRY)
