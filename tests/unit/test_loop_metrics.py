"""The per-job path's counter and histogram export what prometheus_client's would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from connectra.loop_metrics import LoopCounter, LoopHistogram

BUCKETS = (0.01, 0.1, 1.0)


def test_a_histogram_exports_the_same_text_as_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("h_seconds", "Help.", ("kind",), BUCKETS)
    ours.register(loop)
    reference = Histogram("h_seconds", "Help.", ("kind",), buckets=BUCKETS, registry=theirs)
    for value in (0.0, 0.01, 0.05, 1.0, 1.5, 30.0):  # on a bound counts in that bucket
        loop.labels("a").observe(value)
        reference.labels("a").observe(value)
    created = [line for line in generate_latest(theirs).decode().splitlines() if "created" in line]
    expected = [
        line for line in generate_latest(theirs).decode().splitlines() if line not in created
    ]
    assert generate_latest(ours).decode().splitlines() == expected


def test_a_counter_counts_per_label_values_and_checks_their_number() -> None:
    counter = LoopCounter("c_total", "Help.", ("job_type",))
    counter.labels("noop").inc()
    counter.labels("noop").inc(2)
    counter.labels("sleep").inc()
    [family] = counter.collect()
    assert {s.labels["job_type"]: s.value for s in family.samples} == {"noop": 3, "sleep": 1}
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("noop", "extra")
