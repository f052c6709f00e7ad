"""How many database connections a process may open, by what it runs."""

from __future__ import annotations

import pytest

from connectra.runners.daemon import Parts, pool_size
from connectra.settings import load_settings


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (Parts(first_time=True), 2 * 4 + 4),
        (Parts(api=True), 2 * 4 + 4),
        (Parts(api=True, first_time=True, retry=True, migrate=True), 2 * 4 + 4),
        (Parts(retry=True), 2 * 1 + 4),  # one job at a time
    ],
)
def test_a_process_pool_follows_the_handler_slots_it_runs(parts: Parts, expected: int) -> None:
    assert pool_size(load_settings(PARALLEL_JOBS=4), parts) == expected


def test_queues_slots_size_the_pool_of_first_time_runners_only() -> None:
    settings = load_settings(QUEUES="reports=2,default=8")
    assert pool_size(settings, Parts(first_time=True)) == 2 * 10 + 4
    assert pool_size(settings, Parts(retry=True)) == 2 * 1 + 4


def test_database_pool_size_wins_for_every_process() -> None:
    settings = load_settings(PARALLEL_JOBS=4, DATABASE_POOL_SIZE=9)
    assert pool_size(settings, Parts(retry=True)) == 9
    assert pool_size(settings, Parts(first_time=True)) == 9
