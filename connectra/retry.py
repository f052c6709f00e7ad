"""When a failed job runs again: the seed's fixed interval, or capped exponential backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum


class RetryBackoff(StrEnum):
    """How the delay before a retry grows with the attempt number."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"


JITTER = 0.1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Decides the delay before the next attempt of a failed job."""

    backoff: RetryBackoff = RetryBackoff.FIXED
    max_delay: timedelta = timedelta(hours=1)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, *, attempts: int, retry_count: int, retry_interval: int) -> timedelta | None:
        """The wait before the next run, or None when the job has no retries left."""
        if attempts > retry_count:
            return None
        base = float(retry_interval)
        if self.backoff is RetryBackoff.EXPONENTIAL:
            base = retry_interval * 2.0 ** max(0, attempts - 1)
            base *= 1 + self.rng.uniform(-JITTER, JITTER)
        return min(timedelta(seconds=max(0.0, base)), self.max_delay)
