"""CSV records from a stream of byte chunks, with bounded memory and resumable offsets.

The stdlib csv parser does the field splitting; this module decides which complete lines to hand
it, decodes UTF-8, and keeps the position of every record so an import can resume later with a
ranged GET at `CsvRecord.end_offset`, passing `CsvRecord.next_line` as `start_line`.

Boundaries follow the csv module (RFC 4180 plus its lenient handling of stray quotes). Lines end
at LF; CRLF is accepted. Records that cannot be parsed are yielded as bad records rather than
stopping the stream:

- invalid UTF-8: the record's bytes, decoded with errors="replace", are in `raw`;
- a quote left open up to the end of the file: one bad record from the line where it starts;
- a record larger than `MAX_RECORD_BYTES`: one bad record, its first `RAW_PREVIEW_BYTES` bytes in
  `raw`; the rest of it is skipped without being held in memory, up to the first line end where
  its quotes balance.

Blank lines are counted but yield nothing. The buffer never holds more than `max_record_bytes`
plus one chunk; parsing it takes a few times that.

`csv.field_size_limit` is process-wide and 128 KiB by default. Rather than raise it for every
user of the csv module, this module parses with a private instance of the `_csv` extension
(multi-phase init, PEP 489, so the instance has its own limit) and lifts the limit there: the size
cap above, enforced in bytes before and after parsing, is the real bound.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate, chain
from types import ModuleType
from typing import Protocol

MAX_RECORD_BYTES = 16 * 1024 * 1024
RAW_PREVIEW_BYTES = 4096
UTF8_BOM = b"\xef\xbb\xbf"

INVALID_UTF8 = "invalid UTF-8"
UNTERMINATED_QUOTE = "unterminated quoted field"
RECORD_TOO_LARGE = "record too large"
STRAY_CARRIAGE_RETURN = "carriage return inside an unquoted field"

_DIALECT = {"delimiter": ",", "quotechar": '"', "doublequote": True, "strict": False}


def _private_csv_module() -> ModuleType:
    """A fresh instance of `_csv` whose field size limit no other code shares."""
    spec = importlib.util.find_spec("_csv")
    if spec is None or spec.loader is None:
        raise ImportError("the _csv extension module is not available")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.field_size_limit(sys.maxsize)
    return module


_CSV = _private_csv_module()


# Not frozen: a frozen dataclass is about 4x slower to build, and one is built per row.
@dataclass(slots=True)
class CsvRecord:
    """One record: where it starts and ends, and its fields (or why it could not be read)."""

    line: int
    end_offset: int
    next_line: int
    fields: list[str]
    error: str | None = None
    raw: str = ""

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


class _Reader(Protocol):
    """The part of a `_csv` reader this module uses."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]:
        """The rows."""
        ...

    def __next__(self) -> list[str]:
        """The next row."""
        ...


class _BlockEnd(Exception):
    """The csv parser asked for a line past the end of the current block."""


class _RaiseAtEnd:
    """An iterator that raises `_BlockEnd` instead of ending, so a cut-off record shows."""

    def __iter__(self) -> _RaiseAtEnd:
        """This iterator."""
        return self

    def __next__(self) -> str:
        """Always raise."""
        raise _BlockEnd


_END = _RaiseAtEnd()


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
        out: list[CsvRecord] = []
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

    def finish(self) -> list[CsvRecord]:
        """The records left at the end of the stream, including any cut off by it."""
        out: list[CsvRecord] = []
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

    def _parse_complete_lines(self, out: list[CsvRecord]) -> None:
        """Parse the buffer up to its last line end, unless that would re-parse too much."""
        cut = self._buf.rfind(b"\n") + 1
        # Re-parsing a stalled record only once it has doubled keeps huge quoted fields linear.
        if cut and (cut >= 2 * self._stalled or len(self._buf) > self._max):
            self._parse(cut, out, final=False)

    def _parse(self, cut: int, out: list[CsvRecord], final: bool) -> None:
        """Parse `_buf[:cut]`, keep what is left of an unfinished record."""
        block = _Block(bytes(self._buf[:cut]), self._offset, self._line, self._max, self._preview)
        used_bytes, used_lines = block.parse(out, final)
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

    def _skip_oversized(self, chunk: bytes, out: list[CsvRecord]) -> bytes | None:
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

    def _end_skip_at(self, chunk: bytes, pos: int, end: int, out: list[CsvRecord]) -> bytes:
        """Finish skipping at `chunk[end]`; the bytes after it."""
        self._line += chunk.count(b"\n", pos, end)
        self._offset += end
        self._end_oversized(out, at_eof=False)
        return chunk[end:]

    def _end_oversized(self, out: list[CsvRecord], at_eof: bool) -> None:
        """Report the skipped record as one bad record."""
        skipped = self._oversized
        assert skipped is not None
        reason = UNTERMINATED_QUOTE if at_eof and skipped.quotes_odd else RECORD_TOO_LARGE
        raw = skipped.preview.decode(errors="replace")
        out.append(CsvRecord(skipped.line, self._offset, self._line, [], reason, raw))
        self._oversized = None


class _Block:
    """Complete lines starting at a record boundary, parsed in one pass of the csv reader."""

    def __init__(self, data: bytes, offset: int, line: int, max_bytes: int, preview: int) -> None:
        self.lines = io.BytesIO(data).readlines()
        self.ends = list(accumulate(map(len, self.lines)))
        self.offset = offset
        self.line = line
        self.max = max_bytes
        self.preview = preview
        self.vet = len(data) > max_bytes
        self.bad_lines: set[int] = set()
        self.done = 0  # lines used by finished records
        self.texts = self._decode(data)

    def _decode(self, data: bytes) -> Iterable[str]:
        """The lines as text; invalid UTF-8 lines are replaced and remembered."""
        try:
            data.decode()
        except UnicodeDecodeError:
            self.vet = True
            return [self._decode_line(i, line) for i, line in enumerate(self.lines)]
        return map(bytes.decode, self.lines)

    def _decode_line(self, index: int, line: bytes) -> str:
        """One line as text, noting it when it is not valid UTF-8."""
        try:
            return line.decode()
        except UnicodeDecodeError:
            self.bad_lines.add(index)
            return line.decode(errors="replace")

    def parse(self, out: list[CsvRecord], final: bool) -> tuple[int, int]:
        """Append the block's records to `out`; the bytes and lines they used."""
        reader: _Reader = _CSV.reader(chain(self.texts, _END), **_DIALECT)
        while True:
            try:
                self._read_rows(reader, out)
            except _BlockEnd:
                break
            except _CSV.Error as exc:
                self.done = self._add_bad(out, self.done, reader.line_num, _reason(exc))
        if final and self.done < len(self.lines):
            self.done = self._add_bad(out, self.done, len(self.lines), UNTERMINATED_QUOTE)
        done = self.done
        return (self.ends[done - 1] if done else 0), done

    def _read_rows(self, reader: _Reader, out: list[CsvRecord]) -> None:
        """Read rows until the reader raises, counting the lines of finished rows in `done`."""
        ends, offset, line, append, vet = self.ends, self.offset, self.line, out.append, self.vet
        done = self.done
        try:
            for fields in reader:
                n = reader.line_num
                if vet:
                    self._add_vetted(out, done, n, fields)
                elif fields:
                    append(CsvRecord(line + done, offset + ends[n - 1], line + n, fields))
                done = n
        finally:
            self.done = done

    def _add_vetted(self, out: list[CsvRecord], start: int, stop: int, fields: list[str]) -> None:
        """Append the row of lines [start, stop), or a bad record if it is invalid."""
        size = self.ends[stop - 1] - (self.ends[start - 1] if start else 0)
        if size > self.max:
            self._add_bad(out, start, stop, RECORD_TOO_LARGE, truncate=True)
        elif not self.bad_lines.isdisjoint(range(start, stop)):
            self._add_bad(out, start, stop, INVALID_UTF8)
        elif fields:
            end = self.offset + self.ends[stop - 1]
            out.append(CsvRecord(self.line + start, end, self.line + stop, fields))

    def _add_bad(
        self, out: list[CsvRecord], start: int, stop: int, reason: str, truncate: bool = False
    ) -> int:
        """Append a bad record made of lines [start, stop); returns `stop`."""
        data = b"".join(self.lines[start:stop])
        raw = (data[: self.preview] if truncate else data).decode(errors="replace")
        end = self.offset + self.ends[stop - 1]
        out.append(CsvRecord(self.line + start, end, self.line + stop, [], reason, raw))
        return stop


def _reason(exc: Exception) -> str:
    """A csv parser error in the words of this module."""
    message = str(exc)
    return STRAY_CARRIAGE_RETURN if message.startswith("new-line character seen") else message


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
