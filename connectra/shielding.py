"""Running a piece of work to its end although the task awaiting it is cancelled, and telling
whether a task ran to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeGuard, TypeVar

T = TypeVar("T")


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


def succeeded(task: asyncio.Task[T] | None) -> TypeGuard[asyncio.Task[T]]:
    """Whether the task ran to its end without error (not cancelled, not failed)."""
    return task is not None and task.done() and not task.cancelled() and task.exception() is None
