"""Blocks of CSV records cut into batches of a fixed number of records, without copying them.

A batch is a list of slices of blocks; it gives its records' fields in one list, finds the line
and the bytes of any of them, and says where it ends, for the checkpoint saved once it is in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from connectra.processors.importing.reader import CsvRecord, RecordBlock


@dataclass(frozen=True, slots=True)
class Segment:
    """Records [start, stop) of one block."""

    block: RecordBlock
    start: int
    stop: int


@dataclass(slots=True)
class RecordBatch:
    """Consecutive records of the object, in slices of the blocks they were read in."""

    segments: list[Segment] = field(default_factory=list)

    @classmethod
    def of_records(cls, records: Sequence[CsvRecord]) -> RecordBatch:
        """A batch of records built one by one (their bytes unknown)."""
        block = RecordBlock(
            offset=0,
            data=b"",
            rows=[r.fields for r in records],
            lines=[r.line for r in records],
            next_lines=[r.next_line for r in records],
            starts=[r.end_offset for r in records],
            ends=[r.end_offset for r in records],
            errors={i: (r.error, r.raw) for i, r in enumerate(records) if r.error is not None},
            quoted_empty={i: r.quoted_empty for i, r in enumerate(records) if r.quoted_empty},
        )
        return cls([Segment(block, 0, len(records))])

    def __len__(self) -> int:
        """How many records the batch has."""
        return sum(s.stop - s.start for s in self.segments)

    def rows(self) -> list[list[str]]:
        """Every record's fields, in order; a bad record's are empty."""
        if len(self.segments) == 1:
            only = self.segments[0]
            return only.block.rows[only.start : only.stop]
        rows: list[list[str]] = []
        for s in self.segments:
            rows += s.block.rows[s.start : s.stop]
        return rows

    def errors(self) -> Iterator[tuple[int, str, str]]:
        """The bad records: their index in the batch, why, and their text."""
        base = 0
        for s in self.segments:
            for i, (reason, raw) in s.block.errors.items():
                if s.start <= i < s.stop:
                    yield base + i - s.start, reason, raw
            base += s.stop - s.start

    def every_field_quoted(self) -> bool:
        """True when every field of every record starts with a quote (see `RecordBlock`)."""
        return all(s.block.every_field_quoted for s in self.segments)

    def quoted_empties(self) -> dict[int, tuple[int, ...]]:
        """The records with empty fields written `""`: their index in the batch, and where."""
        found: dict[int, tuple[int, ...]] = {}
        base = 0
        for s in self.segments:
            block = s.block
            if block.every_field_quoted or block.quoted_empty:
                for i in range(s.start, s.stop):
                    if positions := block.quoted_empty_of(i):
                        found[base + i - s.start] = positions
            base += s.stop - s.start
        return found

    def text(self, index: int) -> str | None:
        """The text of record `index`, without its line end; None when its bytes are unknown."""
        segment, i = self._locate(index)
        if not segment.block.data:
            return None
        return bytes(segment.block.raw(i, i + 1)).decode(errors="replace").rstrip("\r\n")

    def line(self, index: int) -> int:
        """The first line of the record at `index`."""
        segment, i = self._locate(index)
        return segment.block.lines[i]

    def end(self) -> tuple[int, int]:
        """The object offset after the last record, and the line after it."""
        last = self.segments[-1]
        return last.block.ends[last.stop - 1], last.block.next_lines[last.stop - 1]

    def plain(self) -> bool:
        """True when every block is plain (see `RecordBlock`), all with the same line end."""
        blocks = [s.block for s in self.segments]
        return all(b.plain for b in blocks) and len({b.line_end for b in blocks} - {""}) <= 1

    def raw(self, kept: Sequence[int] | None = None) -> list[memoryview] | None:
        """The bytes of every record, or of those at `kept`, in order; None if unknown.

        In pieces, views of the blocks' bytes when the records are back to back.
        """
        if any(not s.block.data and len(s.block.errors) < len(s.block) for s in self.segments):
            return None  # records built one by one: their bytes are unknown
        if kept is None and all(s.block.dense for s in self.segments):
            return [s.block.raw(s.start, s.stop) for s in self.segments]
        indices = range(len(self)) if kept is None else kept
        return [memoryview(b"".join(self._record_raw(i) for i in indices))]

    def _record_raw(self, index: int) -> memoryview:
        """The bytes of one record."""
        segment, i = self._locate(index)
        return segment.block.raw(i, i + 1)

    def _locate(self, index: int) -> tuple[Segment, int]:
        """The segment holding record `index` of the batch, and its index in the block."""
        for s in self.segments:
            size = s.stop - s.start
            if index < size:
                return s, s.start + index
            index -= size
        raise IndexError(index)


class BatchCutter:
    """Collects blocks and cuts them into batches of `size` records."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._pending = RecordBatch()
        self._count = 0

    def add(self, block: RecordBlock, start: int = 0) -> list[RecordBatch]:
        """Take the records of `block` from `start` on; the batches they complete."""
        full: list[RecordBatch] = []
        while start < len(block):
            stop = min(len(block), start + self._size - self._count)
            self._pending.segments.append(Segment(block, start, stop))
            self._count += stop - start
            start = stop
            if self._count == self._size:
                full.append(self._pending)
                self._pending, self._count = RecordBatch(), 0
        return full

    def finish(self) -> list[RecordBatch]:
        """The last, partial batch, if any records are left."""
        batch, self._pending, self._count = self._pending, RecordBatch(), 0
        return [batch] if batch.segments else []
