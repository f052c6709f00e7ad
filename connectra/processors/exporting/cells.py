"""CSV cells of exported records, the same bytes whichever source the record came from.

One format per field type (`format_value`), lines as `csv_lines` writes them (`RowFormatter`).
Elasticsearch records are formatted here; PostgreSQL writes the same bytes itself (`cells_sql`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from connectra.catalog import FieldType
from connectra.processors.csv_lines import csv_line, join_lines
from connectra.processors.exporting.vql import Column

ARRAY_SEPARATOR = ";"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with "Z"; fractional seconds only when non-zero."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


# An element holding one of these makes the ";"-joined form ambiguous (see the module).
_AMBIGUOUS_IN_ARRAY = re.compile(r"[;\[]")
_ARRAY_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def format_array(values: Iterable[str | None]) -> str:
    """The elements joined with ";", or a JSON array when that would be ambiguous.

    NULL elements are left out either way.
    """
    items = [value for value in values if value is not None]
    if any(_AMBIGUOUS_IN_ARRAY.search(item) for item in items):
        return _ARRAY_JSON.encode(items)
    return ARRAY_SEPARATOR.join(items)


def _text(value: Any) -> str:
    """Text as is (a list, if one was indexed, joined like text[])."""
    return format_array(value) if isinstance(value, list) else str(value)


def _integer(value: Any) -> str:
    """An integer (Elasticsearch may hold it as a string or a whole float)."""
    return str(int(value))


def _uuid(value: Any) -> str:
    """Lowercase canonical form."""
    return str(value if isinstance(value, UUID) else UUID(str(value)))


def _array(value: Any) -> str:
    """A list, or the single value Elasticsearch keeps for a one-element array."""
    return format_array(value if isinstance(value, list) else [value])


def _timestamp(value: Any) -> str:
    """A datetime, an ISO 8601 string or epoch milliseconds (Elasticsearch keeps what it got)."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, int):
        return format_timestamp(_EPOCH + timedelta(milliseconds=value))
    return format_timestamp(datetime.fromisoformat(str(value)))


_FORMATTERS: dict[FieldType, Callable[[Any], str]] = {
    FieldType.TEXT: _text,
    FieldType.INTEGER: _integer,
    FieldType.BIGINT: _integer,
    FieldType.UUID: _uuid,
    FieldType.TEXT_ARRAY: _array,
    FieldType.TIMESTAMP: _timestamp,
}


def format_value(field_type: FieldType, value: Any) -> str:
    """One cell; NULL is empty."""
    return "" if value is None else _FORMATTERS[field_type](value)


class RowFormatter:
    """Turns Elasticsearch documents into CSV lines for a fixed list of columns."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self._columns = tuple(columns)

    def header(self) -> bytes:
        """The header line."""
        return join_lines([csv_line([column.header for column in self._columns])])

    def search_rows(self, sources: Iterable[Mapping[str, Any]]) -> bytes:
        """Lines of Elasticsearch `_source` documents (or any field -> value mappings)."""
        return join_lines([self._line(source) for source in sources])

    def _line(self, source: Mapping[str, Any]) -> str:
        """The line of one document."""
        return csv_line(
            [format_value(c.field.type, source.get(c.field.name)) for c in self._columns]
        )
