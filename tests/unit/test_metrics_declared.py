"""The metrics: the docs' Metrics page lists exactly those declared in `connectra/metrics.py`,
every declared counter and histogram is what the registry exports, and names and labels keep
the rules (prefix, bounded labels)."""

from __future__ import annotations

import re
from pathlib import Path

from connectra import metrics as m

METRICS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "metrics.md"
ROW = re.compile(r"^\| `(connectra_[a-z_]+)` \| (counter|gauge|histogram) \|([^|]*)\|")
# Every label a metric may have: each has a bounded set of values.
BOUNDED_LABELS = {
    "job_type", "outcome", "error_code", "status", "service", "kind", "queue", "method",
    "route", "runner",
}  # fmt: skip


def documented_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The metric table of `docs/operations/metrics.md`: name -> (type, labels)."""
    section = METRICS_PAGE.read_text()
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in section.splitlines():
        row = ROW.match(line)
        if row:
            name, kind, labels = row.groups()
            assert name not in found, f"{name} is listed twice"
            found[name] = (kind, tuple(re.findall(r"`([a-z_]+)`", labels)))
    return found


def test_the_metrics_page_lists_every_declared_metric_with_its_type_and_labels() -> None:
    declared = {spec.name: (spec.kind, spec.labels) for spec in m.DECLARED}
    assert documented_metrics() == declared


def test_names_are_prefixed_unique_and_labels_bounded() -> None:
    names = [spec.name for spec in m.DECLARED]
    assert len(names) == len(set(names))
    for spec in m.DECLARED:
        assert spec.name.startswith("connectra_"), spec.name
        assert set(spec.labels) <= BOUNDED_LABELS, spec
        assert spec.help.endswith("."), spec
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec


def test_the_registry_exports_the_declared_counters_and_histograms_and_nothing_else() -> None:
    exported = {(family.name, family.type) for family in m.REGISTRY.collect()}
    # prometheus_client names a counter's family without `_total`.
    exported = {(n + "_total" if t == "counter" else n, t) for n, t in exported}
    declared = {(spec.name, spec.kind) for spec in m.DECLARED}
    scraped_only = {
        (spec.name, spec.kind)
        for spec in m.DECLARED
        if spec.kind == "gauge" and not spec.name.startswith("connectra_process_")
    }
    assert exported == declared - scraped_only
