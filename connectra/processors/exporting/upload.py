"""An export's CSV streamed into one S3 object, with bounded memory (`write_export`).

The source runs beside the upload and waits while `BUFFERED_BLOCKS` blocks wait to be sent:
that is the back-pressure. A failed or cancelled export leaves no object and no pending upload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from logging import Logger, LoggerAdapter

from connectra.errors import ObjectStoreError
from connectra.objectstore import ObjectStore, UploadStarted
from connectra.processors.base import ProgressReporter
from connectra.processors.exporting.checkpoint import OpenUpload

BLOCK_BYTES = 1024 * 1024
BUFFERED_BLOCKS = 8
# Progress is a database write; at page granularity that would be hundreds per second.
PROGRESS_INTERVAL_SECONDS = 1.0

# CSV bytes and the number of rows they complete. The sink copies what it keeps, so the source
# may reuse its buffer once the sink returns.
Sink = Callable[[bytes | bytearray, int], Awaitable[None]]
Source = Callable[[Sink], Awaitable[None]]
Block = tuple[bytes, int]


async def write_export(
    objects: ObjectStore,
    bucket: str,
    key: str,
    header: bytes,
    source: Source,
    report: ProgressReporter,
    on_upload: UploadStarted | None = None,
) -> int:
    """Upload the header and everything the source gives as one object; the number of rows."""
    progress = _Progress(report)
    blocks = _Blocks()
    content_type = "text/csv; charset=utf-8"
    upload = objects.multipart_upload(bucket, key, content_type=content_type, on_start=on_upload)
    async with upload as writer:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_produce(source, blocks))
                await writer.write(header)
                while (block := await blocks.get()) is not None:
                    await writer.write(block[0])
                    await progress.add(block[1])
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            raise first from first.__cause__  # the failure itself, not a group; its cause kept
    await progress.flush()
    return progress.count


async def abort_left_upload(
    objects: ObjectStore,
    checkpoint: object,
    log: Logger | LoggerAdapter[Logger],
    *,
    failed: str,
    aborted: str,
    aborted_action: str,
    failed_action: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> None:
    """Abort the multipart upload a job's checkpoint names (an attempt killed mid-upload), if any.

    Logged the caller's way: `failed` (with the error) as a warning, which carries no fields
    unless `failed_action` is given; `aborted` (with the bucket and key) once aborted. Both
    carry the caller's `fields` and the upload id beside the action.
    """
    left = OpenUpload.from_checkpoint(checkpoint)
    if left is None:
        return
    named = {**(fields or {}), "upload_id": left.upload_id}
    try:
        done = await objects.abort_upload(left.bucket, left.key, left.upload_id)
    except ObjectStoreError as exc:  # a later attempt, or the cleaner, aborts it
        extra = {} if failed_action is None else {"action": failed_action, **named}
        log.warning(failed, exc, extra=extra)
        return
    if done:
        log.info(aborted, left.bucket, left.key, extra={"action": aborted_action, **named})


async def _produce(source: Source, blocks: _Blocks) -> None:
    """Run the source into the blocks, then mark their end."""
    await source(blocks.add)
    await blocks.close()


class _Blocks:
    """A bounded queue of blocks of BLOCK_BYTES (the last one shorter), then None."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[Block | None] = asyncio.Queue(maxsize=BUFFERED_BLOCKS)
        self._buf = bytearray()
        self._rows = 0

    async def add(self, data: bytes | bytearray, rows: int) -> None:
        """Take bytes and the rows they complete; wait while the queue is full."""
        self._buf += data
        self._rows += rows
        while len(self._buf) >= BLOCK_BYTES:
            await self._send(BLOCK_BYTES)

    async def close(self) -> None:
        """Queue what is left, then the end."""
        await self._send(len(self._buf))
        await self._ready.put(None)

    async def get(self) -> Block | None:
        """The next block, or None at the end."""
        return await self._ready.get()

    async def _send(self, size: int) -> None:
        """Queue the first `size` bytes with the rows counted so far."""
        with memoryview(self._buf) as view:
            block = bytes(view[:size])
        del self._buf[:size]
        rows, self._rows = self._rows, 0
        await self._ready.put((block, rows))


class _Progress:
    """Counts rows and reports them at most every PROGRESS_INTERVAL_SECONDS."""

    def __init__(self, report: ProgressReporter) -> None:
        self._report = report
        self._last = asyncio.get_running_loop().time()
        self.count = 0

    async def add(self, rows: int) -> None:
        """Count rows; report if the interval has passed."""
        self.count += rows
        now = asyncio.get_running_loop().time()
        if now - self._last >= PROGRESS_INTERVAL_SECONDS:
            self._last = now
            await self.flush()

    async def flush(self) -> None:
        """Report the count now."""
        await self._report({"number_records_processed": self.count})
