"""When a failed job runs again."""

from __future__ import annotations

import random
from datetime import timedelta

from connectra.retry import RetryBackoff, RetryPolicy


def test_retry_count_zero_means_never_retried() -> None:
    assert RetryPolicy().delay(attempts=1, retry_count=0, retry_interval=30) is None


def test_fixed_policy_waits_the_seeds_retry_interval_every_time() -> None:
    policy = RetryPolicy()
    delays = [policy.delay(attempts=a, retry_count=3, retry_interval=30) for a in (1, 2, 3)]
    assert delays == [timedelta(seconds=30)] * 3


def test_no_retry_once_attempts_exceed_retry_count() -> None:
    # retry_count=3 allows the first run plus three retries: four attempts in all.
    assert RetryPolicy().delay(attempts=4, retry_count=3, retry_interval=30) is None


def test_exponential_policy_doubles_within_ten_percent_jitter() -> None:
    policy = RetryPolicy(backoff=RetryBackoff.EXPONENTIAL, rng=random.Random(7))
    for attempts, expected in [(1, 10), (2, 20), (3, 40), (4, 80)]:
        delay = policy.delay(attempts=attempts, retry_count=10, retry_interval=10)
        assert delay is not None
        assert expected * 0.9 <= delay.total_seconds() <= expected * 1.1


def test_exponential_policy_is_capped() -> None:
    policy = RetryPolicy(backoff=RetryBackoff.EXPONENTIAL, max_delay=timedelta(minutes=5))
    assert policy.delay(attempts=20, retry_count=25, retry_interval=30) == timedelta(minutes=5)
