"""Following one job until it ends (`jobs create --wait`, `jobs watch`): polling with backoff,
and its progress on stderr, rewritten in place on a terminal or one line per change otherwise.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import TextIO
from uuid import UUID

from connectra.db.store import JobStore
from connectra.job_table import Progress, byte_size, fit
from connectra.jobs import FINISHED_STATUSES, Job, JobStatus

POLL_SECONDS = 0.5  # the first interval between polls, and again after every change
MAX_POLL_SECONDS = 2.0  # the longest interval, reached while nothing changes
BACKOFF = 1.5
REDRAW_SECONDS = 0.125  # a terminal's line is redrawn this often (spinner, elapsed time)
SPINNER = "|/-\\"
MIN_BAR_WIDTH, MAX_BAR_WIDTH = 8, 30  # the bar takes the room the line leaves, or is left out
DEFAULT_COLUMNS = 80


def exit_code(job: Job) -> int:
    """0 for a job that completed, 1 for one that ended otherwise."""
    return 0 if job.status == JobStatus.COMPLETED else 1


def has_ended(job: Job) -> bool:
    """True once no runner will run the job again (a failed job with a retry due has not)."""
    return job.status in FINISHED_STATUSES


async def follow(store: JobStore, uuid: UUID, line: ProgressLine, max_seconds: float | None) -> Job:
    """Poll the job until it ends or `max_seconds` pass; return it as last read."""
    clock = asyncio.get_running_loop().time
    deadline = math.inf if max_seconds is None else clock() + max_seconds
    interval = POLL_SECONDS
    while True:
        job = await store.get(uuid)
        changed = line.show(job)
        remaining = deadline - clock()
        if has_ended(job) or remaining <= 0:
            return job
        interval = POLL_SECONDS if changed else min(interval * BACKOFF, MAX_POLL_SECONDS)
        await line.wait(min(interval, remaining))


class ProgressLine:
    """One job's progress on a stream: a line rewritten in place when the stream is a terminal
    (`live`), else a line each time what a person sees changes."""

    def __init__(self, stream: TextIO, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.started = time.monotonic()
        self.job: Job | None = None
        self._seen: Progress | None = None
        self._frame = 0
        self._drawn = 0  # characters of the live line now on screen

    def show(self, job: Job) -> bool:
        """Show the job as just read; True when what a person sees changed."""
        if self.job is None:
            self._print(f"job {job.uuid} ({job.job_type}); Ctrl-C stops watching, not the job")
        progress = Progress.of(job)
        changed = progress != self._seen
        self.job, self._seen = job, progress
        if self.live:
            self._draw()
        elif changed:
            self._print(self._text(progress))
        return changed

    async def wait(self, seconds: float) -> None:
        """Sleep between polls, keeping a live line moving."""
        if not self.live:
            await asyncio.sleep(seconds)
            return
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(REDRAW_SECONDS, left))
            self._frame += 1
            self._draw()

    def end(self) -> None:
        """Finish the live line, so that what follows starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    def stopped(self) -> str:
        """What to say when the user stops watching."""
        if self.job is None:
            return "stopped before the job was read"
        return f"stopped watching; job {self.job.uuid} is {self.job.status} and goes on"

    def _draw(self) -> None:
        """Rewrite the live line in place, within the terminal's width."""
        if self._seen is None:
            return
        width = self._columns() - 1
        text = fit(self._live_text(self._seen, width), width)
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def _live_text(self, progress: Progress, width: int) -> str:
        """A spinner, then the line with a bar as wide as the room left; on a narrow terminal
        the input's size goes first, then the bar."""
        spinner = " " if progress.status in FINISHED_STATUSES else SPINNER[self._frame % 4]
        for sized in (True, False):
            text = f"{spinner} {self._text(progress, sized=sized)}"
            room = min(MAX_BAR_WIDTH, width - len(text) - len(" []"))
            if room >= MIN_BAR_WIDTH:
                return f"{spinner} {self._text(progress, bar_width=room, sized=sized)}"
        return f"{spinner} {self._text(progress)}"

    def _print(self, text: str) -> None:
        """Write a line of its own."""
        self.end()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _text(self, progress: Progress, bar_width: int = 0, sized: bool = True) -> str:
        """State, rows, how much of the input is done, attempts and elapsed time."""
        running = progress.status not in FINISHED_STATUSES
        fraction = progress.fraction() if running else None
        parts = [
            str(progress.status),
            progress.counts(),
            "" if fraction is None else _share(fraction, progress, bar_width, sized),
            _attempts(progress),
            _clock(time.monotonic() - self.started),
        ]
        return "  ".join(part for part in parts if part)

    def _columns(self) -> int:
        """The terminal's width (some pseudo-terminals say 0)."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return DEFAULT_COLUMNS
        return columns if columns > 0 else DEFAULT_COLUMNS


def _bar(fraction: float, width: int) -> str:
    """A bar `width` characters wide inside brackets, filled to the fraction."""
    filled = round(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _share(fraction: float, progress: Progress, bar_width: int, sized: bool) -> str:
    """How much of the input is done, e.g. `41% of 2.0 MiB`, after a bar if it has room."""
    share = f"{fraction:.0%}"
    if sized:
        share += f" of {byte_size(progress.bytes_total or 0)}"
    return f"{_bar(fraction, bar_width)} {share}" if bar_width else share


def _attempts(progress: Progress) -> str:
    """`attempt 1/3` for a job that may be retried and has started, else empty."""
    if progress.runs < 2 or not progress.attempts:
        return ""
    return f"attempt {progress.attempts_text()}"


def _clock(seconds: float) -> str:
    """Elapsed time as `m:ss` or `h:mm:ss`."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
