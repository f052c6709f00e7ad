"""The select list whose `COPY ... (FORMAT csv)` output is exactly the cells `cells` writes.

`copy_cells` turns each value into the text `cells` writes and evens out how COPY marks empty
values; `restore_end_marker` unquotes the one row COPY quotes and `cells` does not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from connectra.catalog import FieldType
from connectra.processors.exporting.vql import Column

# COLLATE "C": under a nondeterministic collation, a string of ignorable characters equals ''.
COPY_TEXT = """nullif({value} COLLATE "C", '')"""
# array_to_json escapes exactly as cells' JSON encoder does (tested on edge values).
COPY_ARRAY = """CASE WHEN strpos(array_to_string({value}, ''), ';') > 0
    OR strpos(array_to_string({value}, ''), '[') > 0
    THEN array_to_json(array_remove({value}, NULL))::text
    ELSE nullif(array_to_string({value}, ';'), '') END"""
COPY_AS_IS = "{value}"
COPY_TIMESTAMP = """replace(
    to_char({value} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '') || 'Z'"""
# The only cell of a row: never NULL, so that an empty cell is written `""`.
COPY_SINGLE = "coalesce(({cell})::text, '')"
_COPY_CELLS = {
    FieldType.TEXT: COPY_TEXT,
    FieldType.TEXT_ARRAY: COPY_ARRAY,
    FieldType.UUID: COPY_AS_IS,
    FieldType.INTEGER: COPY_AS_IS,
    FieldType.BIGINT: COPY_AS_IS,
    FieldType.TIMESTAMP: COPY_TIMESTAMP,
}

# A line that is exactly "\." between quotes can only be a whole single-column row: inside a
# quoted field every quote is doubled, and a closing quote is followed by the line end.
_QUOTED_END_MARKER = re.compile(rb'^"\\\."$', re.MULTILINE)
_QUOTED_END_MARKER_TEXT = b'"\\."'


def copy_cells(columns: Sequence[Column], quoted_identifiers: Sequence[str]) -> str:
    """The select list of the columns (their quoted identifiers given in the same order)."""
    cells = [
        _COPY_CELLS[column.field.type].format(value=identifier)
        for column, identifier in zip(columns, quoted_identifiers, strict=True)
    ]
    if len(cells) == 1:
        return COPY_SINGLE.format(cell=cells[0])
    return ", ".join(cells)


def restore_end_marker(data: bytes | bytearray) -> bytes | bytearray:
    """Single-column COPY output (whole rows) with rows `"\\."` written bare, as `\\.`."""
    if _QUOTED_END_MARKER_TEXT not in data:
        return data
    return _QUOTED_END_MARKER.sub(rb"\\.", data)
