"""CSV records from a stream of byte chunks, with bounded memory and resumable offsets.

`CsvRecordReader` decides which complete lines to hand the parser (`blocks`) and keeps each
record's offsets and line; records that cannot be parsed come out as bad records.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from connectra.processors.importing.blocks import (
    INVALID_UTF8,
    RECORD_TOO_LARGE,
    STRAY_CARRIAGE_RETURN,
    UNTERMINATED_QUOTE,
    RecordBlock,
    bad_record_block,
    parse_block,
)

__all__ = [
    "INVALID_UTF8",
    "MAX_RECORD_BYTES",
    "RECORD_TOO_LARGE",
    "STRAY_CARRIAGE_RETURN",
    "UNTERMINATED_QUOTE",
    "CsvRecord",
    "CsvRecordReader",
    "RecordBlock",
    "iter_record_batches",
    "iter_records",
    "records_of",
]

MAX_RECORD_BYTES = 16 * 1024 * 1024
RAW_PREVIEW_BYTES = 4096
UTF8_BOM = b"\xef\xbb\xbf"


# Not frozen: a frozen dataclass is about 4x slower to build, and one is built per row.
@dataclass(slots=True)
class CsvRecord:
    """One record: where it starts and ends, and its fields (or why it could not be read).

    `quoted_empty` holds the positions of its empty fields that were written `""`.
    """

    line: int
    end_offset: int
    next_line: int
    fields: list[str]
    error: str | None = None
    raw: str = ""
    quoted_empty: tuple[int, ...] = ()

    @property
    def is_bad(self) -> bool:
        """True when the record could not be read; `error` says why and `raw` holds its text."""
        return self.error is not None


@dataclass(slots=True)
class _OversizedRecord:
    """What is kept of a record too large to hold while the rest of it is skipped."""

    line: int
    preview: bytes
    quotes_odd: bool


class CsvRecordReader:
    """Turns byte chunks into CSV records: `feed` each chunk in order, then `finish` once."""

    def __init__(
        self,
        start_offset: int = 0,
        start_line: int = 1,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self._buf = bytearray()
        self._offset = start_offset  # object offset of _buf[0], always a record start
        self._line = start_line  # line number of _buf[0]
        self._max = max_record_bytes
        self._preview = min(RAW_PREVIEW_BYTES, max_record_bytes)
        self._stalled = 0  # bytes of complete lines that did not finish a record last time
        self._bom_pending = start_offset == 0
        self._oversized: _OversizedRecord | None = None

    def feed(self, chunk: bytes) -> list[CsvRecord]:
        """The records completed by this chunk."""
        return [record for block in self.feed_blocks(chunk) for record in records_of(block)]

    def finish(self) -> list[CsvRecord]:
        """The records left at the end of the stream, including any cut off by it."""
        return [record for block in self.finish_blocks() for record in records_of(block)]

    def feed_blocks(self, chunk: bytes) -> list[RecordBlock]:
        """The records completed by this chunk, as blocks of consecutive records."""
        out: list[RecordBlock] = []
        if self._oversized is not None:
            rest = self._skip_oversized(chunk, out)
            if rest is None:
                return out
            chunk = rest
        self._buf += chunk
        if self._bom_pending and not self._strip_bom(final=False):
            return out
        self._parse_complete_lines(out)
        if len(self._buf) > self._max:
            self._start_oversized()
        return out

    def finish_blocks(self) -> list[RecordBlock]:
        """The records left at the end of the stream, as blocks; any cut off by it is bad."""
        out: list[RecordBlock] = []
        if self._oversized is not None:
            self._end_oversized(out, at_eof=True)
        elif self._buf:
            if self._bom_pending:
                self._strip_bom(final=True)
            self._parse(len(self._buf), out, final=True)
        return out

    def _strip_bom(self, final: bool) -> bool:
        """Drop a leading UTF-8 BOM; False while too few bytes have come to tell."""
        if not final and len(self._buf) < len(UTF8_BOM) and UTF8_BOM.startswith(self._buf):
            return False
        if self._buf.startswith(UTF8_BOM):
            del self._buf[: len(UTF8_BOM)]
            self._offset += len(UTF8_BOM)
        self._bom_pending = False
        return True

    def _parse_complete_lines(self, out: list[RecordBlock]) -> None:
        """Parse the buffer up to its last line end, unless that would re-parse too much."""
        cut = self._buf.rfind(b"\n") + 1
        # Re-parsing a stalled record only once it has doubled keeps huge quoted fields linear.
        if cut and (cut >= 2 * self._stalled or len(self._buf) > self._max):
            self._parse(cut, out, final=False)

    def _parse(self, cut: int, out: list[RecordBlock], final: bool) -> None:
        """Parse `_buf[:cut]`, keep what is left of an unfinished record."""
        with memoryview(self._buf) as view:
            data = bytes(view[:cut])  # one copy (slicing the bytearray would make two)
        block, used_bytes, used_lines = parse_block(
            data, self._offset, self._line, self._max, self._preview, final
        )
        if len(block):
            out.append(block)
        del self._buf[:used_bytes]
        self._offset += used_bytes
        self._line += used_lines
        self._stalled = cut - used_bytes

    def _start_oversized(self) -> None:
        """Begin skipping the record at the buffer's start, which is larger than allowed."""
        buf = self._buf
        self._oversized = _OversizedRecord(
            line=self._line,
            preview=bytes(buf[: self._preview]),
            quotes_odd=buf.count(b'"') % 2 == 1,
        )
        self._offset += len(buf)
        self._line += buf.count(b"\n")
        buf.clear()
        self._stalled = 0

    def _skip_oversized(self, chunk: bytes, out: list[RecordBlock]) -> bytes | None:
        """Skip the oversized record through this chunk; the bytes after its end, if it ends."""
        skipped = self._oversized
        assert skipped is not None
        pos = 0
        # Jump from quote to quote: only a line end outside quotes can end the record.
        while True:
            quote = chunk.find(b'"', pos)
            if not skipped.quotes_odd:
                newline = chunk.find(b"\n", pos, None if quote < 0 else quote)
                if newline >= 0:
                    return self._end_skip_at(chunk, pos, newline + 1, out)
            if quote < 0:
                self._line += chunk.count(b"\n", pos)
                self._offset += len(chunk)
                return None
            self._line += chunk.count(b"\n", pos, quote)
            skipped.quotes_odd = not skipped.quotes_odd
            pos = quote + 1

    def _end_skip_at(self, chunk: bytes, pos: int, end: int, out: list[RecordBlock]) -> bytes:
        """Finish skipping at `chunk[end]`; the bytes after it."""
        self._line += chunk.count(b"\n", pos, end)
        self._offset += end
        self._end_oversized(out, at_eof=False)
        return chunk[end:]

    def _end_oversized(self, out: list[RecordBlock], at_eof: bool) -> None:
        """Report the skipped record as one bad record."""
        skipped = self._oversized
        assert skipped is not None
        reason = UNTERMINATED_QUOTE if at_eof and skipped.quotes_odd else RECORD_TOO_LARGE
        raw = skipped.preview.decode(errors="replace")
        out.append(bad_record_block(skipped.line, self._offset, self._line, reason, raw))
        self._oversized = None


def records_of(block: RecordBlock) -> list[CsvRecord]:
    """The records of a block, one object each."""
    errors, quoted = block.errors, block.quoted_empty_of
    return [
        CsvRecord(block.lines[i], block.ends[i], block.next_lines[i], fields, None, "", quoted(i))
        if i not in errors
        else CsvRecord(block.lines[i], block.ends[i], block.next_lines[i], [], *errors[i])
        for i, fields in enumerate(block.rows)
    ]


async def iter_record_batches(
    chunks: AsyncIterable[bytes],
    start_offset: int = 0,
    start_line: int = 1,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> AsyncIterator[list[CsvRecord]]:
    """The records of a CSV byte stream, a list per chunk that completed any."""
    reader = CsvRecordReader(start_offset, start_line, max_record_bytes)
    async for chunk in chunks:
        records = reader.feed(chunk)
        if records:
            yield records
    records = reader.finish()
    if records:
        yield records


async def iter_records(
    chunks: AsyncIterable[bytes],
    start_offset: int = 0,
    start_line: int = 1,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> AsyncIterator[CsvRecord]:
    """The records of a CSV byte stream that starts at a record boundary of the object.

    To resume after a record `r`, stream the object from `r.end_offset` and pass
    `start_offset=r.end_offset, start_line=r.next_line`.
    """
    batches = iter_record_batches(chunks, start_offset, start_line, max_record_bytes)
    async for batch in batches:
        for record in batch:
            yield record
