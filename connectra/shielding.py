"""Running a piece of work to its end although the task awaiting it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def run_to_the_end(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to its end even if this task is cancelled meanwhile; then honour the cancel.

    For steps whose outcome must be known, such as a COMMIT or the start of a multipart upload:
    cut off half-way, nobody could tell whether they happened.
    """
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancel is what goes on
        raise asyncio.CancelledError
    task.result()
