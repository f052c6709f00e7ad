"""One stretch of complete CSV lines parsed into a `RecordBlock`: fields plus where records are.

`parse_block` takes a one-call parse only when it provably agrees with the per-record parse, and
says which empty fields were quoted. It uses a private `_csv` instance, whose field size limit
is lifted without touching the process-wide one.
"""

from __future__ import annotations

import importlib.util
import io
import operator
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, compress, count, islice
from types import ModuleType
from typing import Protocol

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


@dataclass(slots=True)
class RecordBlock:
    """Consecutive records of the object, column-free: each one's fields, lines and bytes.

    Record `i` has the fields `rows[i]`, starts on line `lines[i]` at object offset `starts[i]`,
    and ends at offset `ends[i]`, before line `next_lines[i]`. A bad record has no fields and is
    in `errors` with why and its text. `data` holds the bytes from object offset `offset` on,
    covering every record; `dense` says the records are back to back, one line each.

    `plain` says the bytes hold no quote, NUL or `\\.`, and every line ends in `line_end`
    (LF or CRLF; empty when no line end was seen): see `verbatim_copy`. `every_field_quoted`
    says every field of every record starts with a quote, so every empty one is `""`;
    otherwise `quoted_empty` maps a record to the positions of its fields written `""` (its
    other empty fields were bare). `quoted_empty_of` tells either way.
    """

    offset: int
    data: bytes
    rows: list[list[str]]
    lines: Sequence[int]
    next_lines: Sequence[int]
    starts: Sequence[int]
    ends: Sequence[int]
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)
    dense: bool = False
    plain: bool = False
    line_end: str = ""
    quoted_empty: dict[int, tuple[int, ...]] = field(default_factory=dict)
    every_field_quoted: bool = False

    def __len__(self) -> int:
        """How many records the block has."""
        return len(self.rows)

    def quoted_empty_of(self, index: int) -> tuple[int, ...]:
        """The positions of the fields of record `index` written `""`."""
        if self.every_field_quoted:
            return tuple(compress(count(), map(operator.not_, self.rows[index])))
        return self.quoted_empty.get(index, ())

    def raw(self, start: int, stop: int) -> memoryview:
        """The bytes of records [start, stop), which must be back to back (not copied)."""
        begin, end = self.starts[start] - self.offset, self.ends[stop - 1] - self.offset
        return memoryview(self.data)[begin:end]


def bad_record_block(line: int, end: int, next_line: int, reason: str, raw: str) -> RecordBlock:
    """A block of one bad record, whose bytes are not kept."""
    return RecordBlock(end, b"", [[]], [line], [next_line], [end], [end], {0: (reason, raw)})


def parse_block(
    data: bytes, offset: int, line: int, max_bytes: int, preview: int, final: bool
) -> tuple[RecordBlock, int, int]:
    """The records of complete lines `data`; the bytes and lines they used.

    Lines after the last finished record are left unused, unless `final`: then a record still
    open at the end is one bad record (an unterminated quote).
    """
    block = _one_line_records(data, offset, line, final) if len(data) <= max_bytes else None
    if block is not None:
        return block, len(data), len(block)
    return _PerRecordParse(data, offset, line, max_bytes, preview).parse(final)


# -- one call: every line is one record ------------------------------------------------------


def _one_line_records(data: bytes, offset: int, line: int, final: bool) -> RecordBlock | None:
    """The block when every line is one complete, non-blank record; None otherwise."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    lines, line_end = _lines(text, final)
    if lines is None or "" in lines:
        return None  # a blank line: the per-record parse skips it and counts it
    quoted = '"' in text
    rows = _parse_lines(lines) if quoted else _split_lines(lines)
    if rows is None:
        return None
    ends = list(accumulate(map(len, io.BytesIO(data).readlines()), initial=offset))
    size = len(rows)
    quoted_empty, every_field_quoted = _quoted_empties(text, lines, rows)
    return RecordBlock(
        offset=offset,
        data=data,
        rows=rows,
        lines=range(line, line + size),
        next_lines=range(line + 1, line + size + 1),
        starts=ends[:-1],
        ends=ends[1:],
        dense=True,
        plain=not quoted and "\x00" not in text and ("\\" not in text or "\\." not in text),
        line_end=line_end,
        quoted_empty=quoted_empty,
        every_field_quoted=every_field_quoted,
    )


def _lines(text: str, final: bool) -> tuple[list[str] | None, str]:
    """The lines of `text` without their ends, and how they end (LF, CRLF, or "" for none).

    None when the last line is cut off, or when a carriage return is not part of a CRLF line end
    (those need the per-record parse).
    """
    line_end = "\r\n" if "\r" in text else "\n" if "\n" in text else ""
    complete = bool(line_end) and text.endswith(line_end)
    if not complete and (not final or not text):
        return None, line_end
    lines = text.split(line_end) if line_end else [text]
    if complete:
        lines.pop()  # the empty string after the last line end
    ends = len(lines) if complete else len(lines) - 1  # if every line ends the same
    if line_end == "\r\n" and not text.count("\r") == text.count("\n") == ends:
        return None, line_end
    return lines, line_end


def _split_lines(lines: list[str]) -> list[list[str]]:
    """The fields of quote-free lines: the C parser would split them at commas too."""
    return [text.split(",") for text in lines]


def _parse_lines(lines: list[str]) -> list[list[str]] | None:
    """Each line's fields, or None when a record spans lines or the parser refuses one."""
    reader = _CSV.reader(chain(lines, _END), **_DIALECT)
    try:
        # A record that needs another line reaches _END and raises: it spans lines.
        rows = list(islice(reader, len(lines)))
    except (_BlockEnd, _CSV.Error):
        return None
    return rows


def _quoted_empties(
    text: str, lines: list[str], rows: list[list[str]]
) -> tuple[dict[int, tuple[int, ...]], bool]:
    """Which empty fields of one-line records are written `""`: by record, or all (True)."""
    if '""' not in text:
        return {}, False
    if _every_field_quoted(text, rows):
        return {}, True
    return _quoted_empty_of_lines(lines, rows), False


def _every_field_quoted(text: str, rows: list[list[str]]) -> bool:
    """True when every field of these one-line records starts with a quote.

    Such a field holds two quotes more than twice its value's, or fewer when text holding
    quotes runs on after its closing quote (non-strict); a bare field holds only its value's,
    fewer. No field holds more, so the counts match only when no field is bare.
    """
    inner = "".join(map("".join, rows)).count('"')
    return text.count('"') == 2 * (sum(map(len, rows)) + inner)


def _quoted_empty_of_lines(lines: list[str], rows: list[list[str]]) -> dict[int, tuple[int, ...]]:
    """The quoted empty fields of one-line records, by record."""
    found = {}
    for i, (text, fields) in enumerate(zip(lines, rows, strict=True)):
        if "" in fields and '""' in text:
            positions = _quoted_empty_of_line(text, fields)
            if positions:
                found[i] = positions
    return found


def _quoted_empty_of_line(text: str, fields: list[str]) -> tuple[int, ...]:
    """The quoted empty fields of a one-line record.

    When the line splits at commas into as many pieces as it has fields, no field holds a
    comma, so the pieces are the fields as written. Otherwise the line is scanned.
    """
    pieces = text.split(",")
    if len(pieces) != len(fields):
        return quoted_empty_fields(text, fields)
    return tuple(compress(count(), map('""'.__eq__, pieces)))


def quoted_empty_fields(text: str, fields: list[str]) -> tuple[int, ...]:
    """The positions of the empty fields written `""` in a record's text, parsed as `fields`.

    An empty value comes from a bare empty field or from exactly `""`, so a field's first
    character tells which. The scan follows the parser: a quoted field ends at a quote not
    doubled, and (non-strict) runs on as text to the next delimiter.
    """
    found = []
    at = 0
    for position, value in enumerate(fields):
        quoted = text.startswith('"', at)
        if quoted:
            if not value:
                found.append(position)
            at = _after_closing_quote(text, at + 1)
        at = text.find(",", at) + 1
    return tuple(found)


def _after_closing_quote(text: str, at: int) -> int:
    """The index after the quote closing a quoted field whose content starts at `at`."""
    while True:
        at = text.find('"', at) + 1
        if not at:
            return len(text)
        if not text.startswith('"', at):
            return at
        at += 1  # a doubled quote: one quote of content


# -- record by record -----------------------------------------------------------------------


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


class _PerRecordParse:
    """Complete lines starting at a record boundary, parsed in one pass of the csv reader."""

    def __init__(self, data: bytes, offset: int, line: int, max_bytes: int, preview: int) -> None:
        self.data = data
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
        self.rows: list[list[str]] = []
        self.firsts: list[int] = []  # each record's first line
        self.nexts: list[int] = []
        self.starts: list[int] = []
        self.stops: list[int] = []
        self.errors: dict[int, tuple[str, str]] = {}
        self.quoted_empty: dict[int, tuple[int, ...]] = {}

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

    def parse(self, final: bool) -> tuple[RecordBlock, int, int]:
        """The block's records; the bytes and lines they used."""
        reader: _Reader = _CSV.reader(chain(self.texts, _END), **_DIALECT)
        while True:
            try:
                self._read_rows(reader)
            except _BlockEnd:
                break
            except _CSV.Error as exc:
                self.done = self._add_bad(self.done, reader.line_num, _reason(exc))
        if final and self.done < len(self.lines):
            self.done = self._add_bad(self.done, len(self.lines), UNTERMINATED_QUOTE)
        done = self.done
        block = RecordBlock(
            self.offset,
            self.data,
            self.rows,
            self.firsts,
            self.nexts,
            self.starts,
            self.stops,
            self.errors,
            quoted_empty=self.quoted_empty,
        )
        return block, (self.ends[done - 1] if done else 0), done

    def _read_rows(self, reader: _Reader) -> None:
        """Read rows until the reader raises, counting the lines of finished rows in `done`."""
        done = self.done
        try:
            for fields in reader:
                n = reader.line_num
                if self.vet:
                    self._add_vetted(done, n, fields)
                elif fields:
                    self._add(done, n, fields)
                done = n
        finally:
            self.done = done

    def _add(self, start: int, stop: int, fields: list[str]) -> None:
        """Append the record made of lines [start, stop)."""
        if "" in fields:
            self._note_quoted_empty(start, stop, fields)
        self.rows.append(fields)
        self.firsts.append(self.line + start)
        self.nexts.append(self.line + stop)
        self.starts.append(self.offset + (self.ends[start - 1] if start else 0))
        self.stops.append(self.offset + self.ends[stop - 1])

    def _note_quoted_empty(self, start: int, stop: int, fields: list[str]) -> None:
        """Note the empty fields written `""` of the next record, made of lines [start, stop)."""
        data = b"".join(self.lines[start:stop])
        if b'""' in data:
            positions = quoted_empty_fields(data.decode(errors="replace"), fields)
            if positions:
                self.quoted_empty[len(self.rows)] = positions

    def _add_vetted(self, start: int, stop: int, fields: list[str]) -> None:
        """Append the row of lines [start, stop), or a bad record if it is invalid."""
        size = self.ends[stop - 1] - (self.ends[start - 1] if start else 0)
        if size > self.max:
            self._add_bad(start, stop, RECORD_TOO_LARGE, truncate=True)
        elif not self.bad_lines.isdisjoint(range(start, stop)):
            self._add_bad(start, stop, INVALID_UTF8)
        elif fields:
            self._add(start, stop, fields)

    def _add_bad(self, start: int, stop: int, reason: str, truncate: bool = False) -> int:
        """Append a bad record made of lines [start, stop); returns `stop`."""
        data = b"".join(self.lines[start:stop])
        raw = (data[: self.preview] if truncate else data).decode(errors="replace")
        self.errors[len(self.rows)] = (reason, raw)
        self._add(start, stop, [])
        return stop


def _reason(exc: Exception) -> str:
    """A csv parser error in the words of this module."""
    message = str(exc)
    return STRAY_CARRIAGE_RETURN if message.startswith("new-line character seen") else message
