"""The failed-rows CSV of an import: every bad row, uploaded next to the source file.

Columns `line,error,<the source's header columns...>,raw`. `FailedRowsFile` is that object,
created with the first bad row; the import fills it once the whole file is in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from connectra.objectstore import MultipartWriter, ObjectStore
from connectra.processors.csv_lines import csv_line, join_lines
from connectra.processors.importing.rows import BadRow


def failed_rows_key(s3_key: str) -> str:
    """The key of the failed-rows file: the source key without `.csv`, plus `.failed.csv`."""
    stem = s3_key[: -len(".csv")] if s3_key.lower().endswith(".csv") else s3_key
    return f"{stem}.failed.csv"


def failed_rows_csv(rows: Sequence[BadRow], width: int) -> bytes:
    """The CSV lines of bad rows of a file whose header has `width` columns."""
    return join_lines([_line(row, width) for row in rows])


def failed_rows_lines(rows: Sequence[BadRow], width: int) -> list[tuple[int, bytes]]:
    """Each bad row's line number and its line of the failed-rows CSV."""
    return [(row.line, join_lines([_line(row, width)])) for row in rows]


def _line(row: BadRow, width: int) -> str:
    """A bad row's line, without its end: line, error, its fields (or as many empty cells),
    raw text."""
    return csv_line([str(row.line), row.reason, *(row.fields or [""] * width), row.raw])


class FailedRowsFile:
    """The failed-rows object of one import; completed on a clean exit, aborted otherwise."""

    def __init__(self, objects: ObjectStore, bucket: str, key: str, header: Sequence[str]) -> None:
        self._objects = objects
        self._bucket = bucket
        self._key = key
        self._header = ["line", "error", *header, "raw"]
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
            await self._writer.write(join_lines([csv_line(self._header)]))
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
