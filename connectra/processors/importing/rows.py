"""CSV records to typed rows of one service: the header's layout, per-type converters, bad rows.

Pure and synchronous, so a whole batch can be converted in a worker thread. Its conversion rules
are the import's documented contract.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from connectra.catalog import Field, FieldType, ServiceSchema
from connectra.errors import DuplicateColumnsError, MissingColumnsError
from connectra.processors.csv_lines import csv_line
from connectra.processors.importing.batches import RecordBatch
from connectra.processors.importing.reader import CsvRecord

MAX_INDEXED_TEXT_CHARS = 512
PREVIEW_CHARS = 40

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

# Mirrors the CHECK constraints of migrations/0002: one row breaking them would fail its batch.
FIELD_BOUNDS: dict[tuple[str, str], tuple[int, int]] = {
    ("company", "employees_count"): (0, INT32[1]),
    ("company", "annual_revenue"): (0, INT64[1]),
    ("company", "founded_year"): (1000, 3000),
}
INDEXED_TEXT_FIELDS = frozenset({"email"})

_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch

Value = str | int | datetime | list[str] | None
Row = tuple[Value, ...]
Converter = Callable[[str], Value]


@dataclass(frozen=True, slots=True)
class RowLayout:
    """How a file's columns map to a service's fields."""

    service: ServiceSchema
    header: tuple[str, ...]
    fields: tuple[Field, ...]
    positions: tuple[int, ...]
    ignored_columns: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The service fields the file has, in the order rows hold them."""
        return tuple(f.name for f in self.fields)

    @property
    def has_every_field(self) -> bool:
        """True when the file has a column for every field of the service."""
        return len(self.fields) == len(self.service.fields)


@dataclass(frozen=True, slots=True)
class BadRow:
    """A record that could not be imported: its line, why, and its fields or its raw text.

    A record that was split into the header's number of fields has them in `fields` (and no
    `raw`); one that could not be decoded or split, or had another number of fields, has its
    text in `raw` (invalid UTF-8 replaced) and no `fields`.
    """

    line: int
    reason: str
    fields: list[str]
    raw: str = ""

    @property
    def message(self) -> str:
        """The `runtime_errors` entry for this row."""
        return f"line {self.line}: {self.reason}"


@dataclass(slots=True)
class ConvertedBatch:
    """A converted batch: its good rows as columns (one uuid each, the last wins) and bad rows.

    Text columns (`text_columns`) hold the fields as read, an empty one standing for NULL
    (`rows` says None) unless `empty_strings` lists its row: a quoted empty field is the empty
    string. When every empty field was quoted, `text_columns` is empty: every text is its value.
    Mapping them costs a pass per column that a batch COPYed as CSV never needs. `texts` holds
    the same rows' fields as read, a column per field; `records` the index in the batch of each
    row (None: every record of the batch, in order).
    """

    columns: list[Sequence[Value]] = field(default_factory=list)
    good: int = 0
    bad: list[BadRow] = field(default_factory=list)
    texts: list[Sequence[str]] = field(default_factory=list)
    records: list[int] | None = None
    text_columns: frozenset[int] = frozenset()
    empty_strings: dict[int, set[int]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """How many rows the batch writes (duplicates removed)."""
        return len(self.columns[0]) if self.columns else 0

    def rows(self) -> Iterator[Row]:
        """The rows to write, built one at a time from the columns."""
        columns = [
            _text_values(column, self.empty_strings.get(j)) if j in self.text_columns else column
            for j, column in enumerate(self.columns)
        ]
        return zip(*columns, strict=True)


def _text_values(column: Sequence[Value], empty_strings: set[int] | None) -> list[Value]:
    """A text column's values: its texts, an empty one NULL unless its row is listed."""
    if not empty_strings:
        return [value or None for value in column]
    return [value if value or i in empty_strings else None for i, value in enumerate(column)]


def _header_name(column: str) -> str:
    """A header cell as a field name: trimmed, lowercase, `id` meaning `uuid`."""
    name = column.strip().lower()
    return "uuid" if name == "id" else name


def read_header(service: ServiceSchema, header: Sequence[str]) -> RowLayout:
    """The layout of a file with this header row, or a clear error."""
    names = [_header_name(column) for column in header]
    _check_duplicates(header, names)
    known = set(service.field_names)
    missing = [f.name for f in service.required if f.name not in names]
    if missing:
        raise MissingColumnsError(
            f"the CSV file lacks the required column(s) {', '.join(missing)} "
            f"for service {service.name!r}"
        )
    mapped = [(i, service.field(name)) for i, name in enumerate(names) if name in known]
    return RowLayout(
        service=service,
        header=tuple(header),
        fields=tuple(f for _, f in mapped),
        positions=tuple(i for i, _ in mapped),
        ignored_columns=tuple(c for c, n in zip(header, names, strict=True) if n not in known),
    )


def _check_duplicates(header: Sequence[str], names: list[str]) -> None:
    """Raise when two non-blank header cells name the same column."""
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for column, name in zip(header, names, strict=True):
        if name and name in seen:
            clashes.append(f"{seen[name]!r} and {column!r}")
        seen.setdefault(name, column)
    if clashes:
        raise DuplicateColumnsError(f"the CSV header repeats columns: {'; '.join(clashes)}")


def _preview(text: str) -> str:
    """A value shortened for an error message."""
    return repr(text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "...")


def parse_uuid(text: str) -> str:
    """A UUID in canonical lowercase form."""
    if _CANONICAL_UUID(text):
        return text
    try:
        return str(UUID(text.strip()))
    except ValueError:
        raise ValueError(f"not a valid UUID: {_preview(text)}") from None


def all_canonical_uuids(texts: Sequence[str]) -> bool:
    """True when every text is a lowercase hyphenated UUID, checked with whole-column C calls."""
    count = len(texts)
    joined = "".join(texts)
    return (
        set(map(len, texts)) == {36}
        and joined.count("-") == 4 * count
        and all(joined[at::36] == "-" * count for at in (8, 13, 18, 23))
        and joined == joined.lower()
        and _hex_bytes(joined.replace("-", "")) == 16 * count
    )


def _hex_bytes(text: str) -> int:
    """How many bytes the hex digits of `text` make; -1 if it holds anything else."""
    try:
        return len(bytes.fromhex(text))
    except ValueError:
        return -1


def integer_parser(low: int, high: int) -> Converter:
    """A converter for base-10 integers from `low` to `high`."""

    def parse_integer(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"not an integer: {_preview(text)}") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range ({low} to {high})")
        return number

    return parse_integer


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {_preview(text)}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_text_array(text: str) -> list[str]:
    """A JSON array of strings or `;`-separated text; items trimmed, empty ones dropped."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except (ValueError, RecursionError):
            raise ValueError(f"not a JSON array: {_preview(text)}") from None
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError(f"a JSON array must hold only strings: {_preview(text)}")
    else:
        items = stripped.split(";")
    return [value for item in items if (value := item.strip())]


def converter_for(service: ServiceSchema, field: Field) -> Converter | None:
    """How to turn a non-empty field of this type into its value; None for plain text."""
    if field.type is FieldType.TEXT:
        return None
    if field.type is FieldType.UUID:
        return parse_uuid
    if field.type is FieldType.TIMESTAMP:
        return parse_timestamp
    if field.type is FieldType.TEXT_ARRAY:
        return parse_text_array
    default = INT32 if field.type is FieldType.INTEGER else INT64
    return integer_parser(*FIELD_BOUNDS.get((service.name, field.name), default))


def _is_length_limited(field: Field) -> bool:
    """True for text fields PostgreSQL keeps in a btree index."""
    text_type = field.type in (FieldType.TEXT, FieldType.TEXT_ARRAY)
    return text_type and (field.filterable or field.name in INDEXED_TEXT_FIELDS)


@dataclass(frozen=True, slots=True)
class _Column:
    """How one field of the layout is converted."""

    name: str
    position: int
    convert: Converter | None
    empty: Callable[[], Value]
    required: bool
    length_limited: bool


def _columns(layout: RowLayout) -> list[_Column]:
    """The conversion plan of each field of the layout, in row order."""
    return [
        _Column(
            name=f.name,
            position=position,
            convert=converter_for(layout.service, f),
            empty=list if f.type is FieldType.TEXT_ARRAY else _none,
            required=f.required,
            length_limited=_is_length_limited(f),
        )
        for f, position in zip(layout.fields, layout.positions, strict=True)
    ]


def _none() -> None:
    """The value of an empty field."""
    return None


class RowConverter:
    """Converts batches of records of one file, column by column.

    Transposing a batch and converting each column with one comprehension costs far less than
    per-row work; a column whose fast path fails is redone value by value to find the bad rows.
    """

    def __init__(self, layout: RowLayout) -> None:
        self.layout = layout
        self.width = len(layout.header)
        self.key = layout.names.index("uuid")
        self._columns = _columns(layout)
        self._text = frozenset(j for j, c in enumerate(self._columns) if c.convert is None)
        self._text_positions = {
            c.position: j for j, c in enumerate(self._columns) if j in self._text
        }

    def convert(
        self, records: RecordBatch | Sequence[CsvRecord], check_nul: bool
    ) -> ConvertedBatch:
        """Convert records into deduplicated rows and bad rows (in line order)."""
        batch = records if isinstance(records, RecordBatch) else RecordBatch.of_records(records)
        out = ConvertedBatch(text_columns=self._text)
        rows = batch.rows()
        kept = self._well_formed(batch, rows, out.bad)
        if kept is not None:
            rows = [rows[i] for i in kept]
        if not rows:
            out.records = []
            return out
        texts = list(zip(*rows, strict=False))  # widths checked
        reasons: dict[int, str] = {}
        if check_nul:
            _check_nul(texts, reasons)
        values = [
            self._convert_column(column, texts[column.position], reasons)
            for column in self._columns
        ]
        if reasons:
            out.bad += [
                BadRow(batch.line(i if kept is None else kept[i]), reason, rows[i])
                for i, reason in reasons.items()
            ]
            out.bad.sort(key=_line)
        out.good = len(rows) - len(reasons)
        self._keep(out, values, [texts[c.position] for c in self._columns], reasons, kept)
        if batch.every_field_quoted():
            out.text_columns = frozenset()  # every empty field was `""`: the empty string
        elif quoted := batch.quoted_empties():
            out.empty_strings = self._empty_strings(quoted, out.records)
        return out

    def _empty_strings(
        self, quoted: dict[int, tuple[int, ...]], records: list[int] | None
    ) -> dict[int, set[int]]:
        """For each text column, its rows (of the kept ones) whose field was written `""`."""
        listed: Iterable[tuple[int, tuple[int, ...]]]
        if records is None:  # every record kept, in order: a record's row is its index
            listed = quoted.items()
        else:
            listed = ((row, quoted[r]) for row, r in enumerate(records) if r in quoted)
        found: dict[int, set[int]] = {}
        for row, positions in listed:
            for position in positions:
                j = self._text_positions.get(position)
                if j is not None:
                    found.setdefault(j, set()).add(row)
        return found

    def _well_formed(
        self, batch: RecordBatch, rows: list[list[str]], bad: list[BadRow]
    ) -> list[int] | None:
        """The indices of records that split into the header's number of fields (None: all).

        The others go to `bad`.
        """
        width = self.width
        if set(map(len, rows)) <= {width}:
            return None
        errors = {i: (reason, raw) for i, reason, raw in batch.errors()}
        for i, fields in enumerate(rows):
            if i in errors:
                reason, raw = errors[i]
                bad.append(BadRow(batch.line(i), reason, [], raw.rstrip("\r\n")))
            elif len(fields) != width:
                found = f"expected {width} fields, found {len(fields)}"
                bad.append(BadRow(batch.line(i), found, [], _record_text(batch, i, fields)))
        return [i for i, fields in enumerate(rows) if len(fields) == width and i not in errors]

    def _keep(
        self,
        out: ConvertedBatch,
        values: list[Sequence[Value]],
        texts: list[Sequence[str]],
        bad: dict[int, str],
        kept: list[int] | None,
    ) -> None:
        """Keep the rows without a bad value, and only the last row of each key."""
        keep = _last_per_key(values[self.key], bad)
        if keep is None:
            out.columns, out.texts, out.records = values, texts, kept
            return
        out.columns = [[column[i] for i in keep] for column in values]
        out.texts = [[column[i] for i in keep] for column in texts]
        out.records = keep if kept is None else [kept[i] for i in keep]

    def _convert_column(
        self, column: _Column, texts: tuple[str, ...], reasons: dict[int, str]
    ) -> Sequence[Value]:
        """The values of one column; rows with a bad value are noted in `reasons`.

        A text column's values are its texts (see `ConvertedBatch`).
        """
        convert, empty = column.convert, column.empty
        values: Sequence[Value]
        if convert is None:
            values = texts
        elif convert is parse_uuid and all_canonical_uuids(texts):
            values = list(texts)
        else:
            try:
                values = [convert(text) if text else empty() for text in texts]
            except ValueError:
                values = _convert_each(column, texts, reasons)
        missing = "" if convert is None else None
        if column.required and missing in values:
            _note(
                reasons,
                [i for i, v in enumerate(values) if v == missing],
                column,
                "a value is required",
            )
        if column.length_limited and texts and max(map(len, texts)) > MAX_INDEXED_TEXT_CHARS:
            _check_lengths(column, values, reasons)
        return values


def _record_text(batch: RecordBatch, index: int, fields: list[str]) -> str:
    """The text of a record; its fields written back as CSV when its bytes are unknown."""
    text = batch.text(index)
    if text is not None:
        return text
    return csv_line(fields)


def _convert_each(column: _Column, texts: tuple[str, ...], reasons: dict[int, str]) -> list[Value]:
    """The values of a column converted one by one; a bad one is None and noted."""
    convert, empty = column.convert, column.empty
    assert convert is not None
    values: list[Value] = []
    for i, text in enumerate(texts):
        try:
            values.append(convert(text) if text else empty())
        except ValueError as exc:
            values.append(None)
            reasons.setdefault(i, f"column {column.name}: {exc}")
    return values


def _note(reasons: dict[int, str], indices: list[int], column: _Column, reason: str) -> None:
    """Mark rows bad, unless an earlier column already did."""
    for i in indices:
        reasons.setdefault(i, f"column {column.name}: {reason}")


def _check_nul(texts: list[tuple[str, ...]], reasons: dict[int, str]) -> None:
    """Mark rows with a NUL character in any field (PostgreSQL text cannot hold one)."""
    for column in texts:
        if "\x00" in "".join(column):
            for i, text in enumerate(column):
                if "\x00" in text:
                    reasons.setdefault(i, "a field contains a NUL character")


def _check_lengths(column: _Column, values: Sequence[Value], reasons: dict[int, str]) -> None:
    """Mark rows whose value (or an item of it) is too long for a btree index."""
    limit = MAX_INDEXED_TEXT_CHARS
    for i, value in enumerate(values):
        items = value if isinstance(value, list) else (value,)
        if any(isinstance(item, str) and len(item) > limit for item in items):
            reasons.setdefault(i, f"column {column.name}: longer than {limit} characters")


def _line(row: BadRow) -> int:
    """Sort key: the row's line."""
    return row.line


def _last_per_key(keys: Sequence[Value], bad: dict[int, str]) -> list[int] | None:
    """The rows to keep: not bad, and the last of each key; None when that is every row."""
    if bad:
        last = {keys[i]: i for i in range(len(keys)) if i not in bad}
    else:
        last = dict(zip(keys, range(len(keys)), strict=True))
        if len(last) == len(keys):
            return None
    return sorted(last.values())
