"""The failed-rows CSV of an import: every bad row, uploaded next to the source file.

Columns are `line,error,<the source's header columns...>`; a record that could not be split into
fields has its raw text in the first source column. The object is only created once a bad row
comes, and is streamed with a multipart upload, so memory stays bounded.

So that a resumed import loses none of them, bad rows are not uploaded as they come: each batch's
rows are stored in PostgreSQL (`sinks.FailedRowsSink`, one CSV line per row, keyed by job and
line) before the batch's checkpoint is saved. Once the whole file is imported, the attempt that
finishes streams them into this file in line order, then deletes them.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from connectra.objectstore import MultipartWriter, ObjectStore
from connectra.processors.row_parsing import BadRow


def failed_rows_key(s3_key: str) -> str:
    """The key of the failed-rows file: the source key without `.csv`, plus `.failed.csv`."""
    stem = s3_key[: -len(".csv")] if s3_key.lower().endswith(".csv") else s3_key
    return f"{stem}.failed.csv"


def failed_rows_csv(rows: Sequence[BadRow]) -> bytes:
    """The CSV lines of bad rows, ready to append to the file."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows([row.line, row.reason, *row.fields] for row in rows)
    return buffer.getvalue().encode()


def failed_rows_lines(rows: Sequence[BadRow]) -> list[tuple[int, bytes]]:
    """Each bad row's line number and its line of the failed-rows CSV."""
    return [(row.line, failed_rows_csv([row])) for row in rows]


class FailedRowsFile:
    """The failed-rows object of one import; completed on a clean exit, aborted otherwise."""

    def __init__(self, objects: ObjectStore, bucket: str, key: str, header: Sequence[str]) -> None:
        self._objects = objects
        self._bucket = bucket
        self._key = key
        self._header = ["line", "error", *header]
        self._stack = contextlib.AsyncExitStack()
        self._writer: MultipartWriter | None = None

    @property
    def key(self) -> str | None:
        """The object's key, or None while no bad row has been written."""
        return self._key if self._writer is not None else None

    async def write(self, data: bytes) -> None:
        """Append CSV lines from `failed_rows_csv`, creating the object first if needed."""
        if self._writer is None:
            upload = self._objects.multipart_upload(self._bucket, self._key)
            self._writer = await self._stack.enter_async_context(upload)
            buffer = io.StringIO()
            csv.writer(buffer).writerow(self._header)
            await self._writer.write(buffer.getvalue().encode())
        await self._writer.write(data)

    async def __aenter__(self) -> Self:
        """This file."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Complete the upload, or abort it when the block failed."""
        return await self._stack.__aexit__(exc_type, exc, tb)
