"""A counter and a histogram for the per-job path, exported by `collect()` like any collector.

Lock-free: children are plain numbers, updated and scraped only on the event loop's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric


class CounterCell:
    """One child of a `LoopCounter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add `amount` (not negative)."""
        self.value += amount


class HistogramCell:
    """One child of a `LoopHistogram`: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose bound is at least `value`."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family:
    """Children by label values."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.label_names = labels

    def _key(self, values: tuple[object, ...]) -> tuple[str, ...]:
        """Label values as text, checked against the label names."""
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {values}")
        return tuple(str(value) for value in values)


class LoopCounter(_Family):
    """A counter whose children are `CounterCell`s."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help, labels)
        self._children: dict[tuple[str, ...], CounterCell] = {}

    def labels(self, *values: object) -> CounterCell:
        """The child of these label values (keep it: looking it up costs more than a count)."""
        key = self._key(values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = CounterCell()
        return child

    def collect(self) -> Iterable[Metric]:
        """One counter family."""
        family = CounterMetricFamily(self.name, self.help, labels=self.label_names)
        for key, child in self._children.items():
            family.add_metric(list(key), child.value)
        yield family


class LoopHistogram(_Family):
    """A histogram whose children are `HistogramCell`s."""

    def __init__(
        self, name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        super().__init__(name, help, labels)
        self.bounds = tuple(sorted(float(bound) for bound in buckets))
        self._children: dict[tuple[str, ...], HistogramCell] = {}

    def labels(self, *values: object) -> HistogramCell:
        """The child of these label values (keep it: looking it up costs more than a count)."""
        key = self._key(values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HistogramCell(self.bounds)
        return child

    def collect(self) -> Iterable[Metric]:
        """One histogram family, with cumulative buckets as Prometheus wants them."""
        family = HistogramMetricFamily(self.name, self.help, labels=self.label_names)
        les = [repr(bound) for bound in self.bounds] + ["+Inf"]  # as prometheus_client: 0.5, 1.0
        for key, child in self._children.items():
            total, buckets = 0, []
            for le, count in zip(les, child.counts, strict=True):
                total += count
                buckets.append((le, float(total)))
            family.add_metric(list(key), buckets, child.sum)
        yield family
