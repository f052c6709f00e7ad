"""Waiting for a condition in tests, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]],
    within: float = 30,
    message: str = "condition not reached in time",
) -> None:
    """Poll `check` until it holds; fail the test with `message` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.02)
