"""The SQL of the PostgreSQL export source: one keyset page of a filtered, totally ordered scan.

Identifiers come only from the catalog and are checked again here before being quoted; every
value is a bind parameter. The order is Elasticsearch's: text compares with COLLATE "C" (byte
order, as keyword sort), timestamps at millisecond precision (the `date` type's), missing values
last in both directions. Each page is its own statement, so no transaction stays open; rows
changed during an export may or may not appear, but no unchanged row is skipped or repeated.

The server also writes each row's CSV line, in exactly the format `csv_format` documents (and
writes for Elasticsearch documents): decoding typed values and formatting them in Python costs
about three times as much as the whole query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from connectra.catalog import Field, FieldType
from connectra.processors.vql import (
    Column,
    ExportQuery,
    KeywordFilter,
    RangeFilter,
    RangeOp,
    SortKey,
)

# Without an index on the sort keys this is a sort of the filtered rows per page; the default
# order (uuid) walks the primary key, and keyword filters on country use its index.
EXPORT_PAGE = """
SELECT {line} AS line, {keys}
FROM {table}
WHERE {where}
ORDER BY {order}
LIMIT {limit}
"""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_ARRAY_TYPES = {
    FieldType.TEXT: "text[]",
    FieldType.TEXT_ARRAY: "text[]",
    FieldType.UUID: "uuid[]",
    FieldType.INTEGER: "integer[]",
    FieldType.BIGINT: "bigint[]",
}
_RANGE_OPERATORS = {RangeOp.GTE: ">=", RangeOp.LTE: "<=", RangeOp.GT: ">", RangeOp.LT: "<"}
# Quote a field holding a comma, a quote, LF or CR (strpos: a regex here doubles the query's cost).
CSV_TEXT = """CASE WHEN strpos({value}, ',') > 0 OR strpos({value}, '"') > 0
        OR strpos({value}, chr(10)) > 0 OR strpos({value}, chr(13)) > 0
    THEN '"' || replace({value}, '"', '""') || '"'
    ELSE coalesce({value}, '') END"""
# ISO 8601 UTC with "Z"; the six fractional digits only when they are not all zero.
CSV_TIMESTAMP = """coalesce(
    replace(to_char({value} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '')
    || 'Z', '')"""
CSV_AS_TEXT = "coalesce({value}::text, '')"
# A row of one empty field is written as "" so that it is not a blank line (as csv_format does).
CSV_SINGLE = """CASE WHEN {line} = '' THEN '""' ELSE {line} END"""
_CSV_CELLS = {
    FieldType.TEXT: CSV_TEXT,
    FieldType.TEXT_ARRAY: CSV_TEXT.replace("{value}", "array_to_string({value}, ';')"),
    FieldType.UUID: CSV_AS_TEXT,
    FieldType.INTEGER: CSV_AS_TEXT,
    FieldType.BIGINT: CSV_AS_TEXT,
    FieldType.TIMESTAMP: CSV_TIMESTAMP,
}
# Never NULL: no "OR ... IS NULL" in the keyset and no NULLS LAST, so the primary key serves.
_NOT_NULL = frozenset({"uuid"})


class Params:
    """Bind parameters in the order their `$n` placeholders are handed out."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        """The placeholder of a new parameter."""
        self.values.append(value)
        return f"${len(self.values)}"


def quote_identifier(name: str) -> str:
    """A catalog name as a quoted SQL identifier; anything else is a programming error."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a catalog identifier: {name!r}")
    return f'"{name}"'


def compare_expression(field: Field) -> str:
    """The expression filters and sorts use for a field."""
    column = quote_identifier(field.name)
    if field.type is FieldType.TEXT:
        return f'{column} COLLATE "C"'
    if field.type is FieldType.TIMESTAMP:
        return f"date_trunc('milliseconds', {column})"
    return column


def export_page(query: ExportQuery, cursor: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """The statement and arguments of the page after `cursor` (the last row's sort keys).

    Each row is its CSV line, then its sort keys.
    """
    params = Params()
    conditions = [_keyword_condition(f, params) for f in query.keyword_filters]
    conditions += [_range_condition(f, params) for f in query.range_filters]
    if cursor is not None:
        conditions.append(keyset_condition(query.sort_keys, cursor, params))
    sql = EXPORT_PAGE.format(
        line=csv_line(query.columns),
        keys=", ".join(compare_expression(k.field) for k in query.sort_keys),
        table=quote_identifier(query.service.table),
        where=" AND ".join(conditions) or "TRUE",
        order=", ".join(_order_term(key) for key in query.sort_keys),
        limit=params.add(query.page_size),
    )
    return sql, params.values


def csv_line(columns: Sequence[Column]) -> str:
    """The expression of a row's CSV line, without its line end."""
    cells = [_CSV_CELLS[c.field.type].format(value=quote_identifier(c.field.name)) for c in columns]
    if len(cells) == 1:
        return CSV_SINGLE.format(line=cells[0])
    return "concat_ws(',', " + ", ".join(cells) + ")"


def _keyword_condition(keyword: KeywordFilter, params: Params) -> str:
    """`field = ANY(values)`, or overlap for text[]; must_not also keeps NULLs, as ES does."""
    column = quote_identifier(keyword.field.name)
    values = params.add(list(keyword.values)) + "::" + _ARRAY_TYPES[keyword.field.type]
    if keyword.field.type is FieldType.TEXT_ARRAY:
        condition = f"{column} && {values}"
    else:
        condition = f"{column} = ANY({values})"
    return f"({condition}) IS NOT TRUE" if keyword.negated else f"({condition})"


def _range_condition(bounds: RangeFilter, params: Params) -> str:
    """Every bound of a range; must_not also keeps NULLs, as ES does."""
    expression = compare_expression(bounds.field)
    terms = [f"{expression} {_RANGE_OPERATORS[op]} {params.add(v)}" for op, v in bounds.bounds]
    condition = " AND ".join(terms)
    return f"({condition}) IS NOT TRUE" if bounds.negated else f"({condition})"


def _order_term(key: SortKey) -> str:
    """One ORDER BY term; NULLS LAST is explicit because PostgreSQL puts them first on DESC."""
    direction = "DESC" if key.descending else "ASC"
    if key.field.name in _NOT_NULL:
        # Same order, but `uuid DESC NULLS LAST` would sort every page instead of walking the
        # primary key backwards.
        return f"{compare_expression(key.field)} {direction}"
    return f"{compare_expression(key.field)} {direction} NULLS LAST"


def keyset_condition(keys: Sequence[SortKey], cursor: Sequence[Any], params: Params) -> str:
    """Rows strictly after the cursor in the (mixed-direction, NULLS LAST) order of `keys`.

    Nested as `after(k0) OR (k0 = c0 AND (after(k1) OR ...))`; the text depends on which cursor
    values are NULL, since nothing sorts after a NULL key and NULL never equals NULL.
    """
    key, value = keys[0], cursor[0]
    expression = compare_expression(key.field)
    if value is None:
        after, equal = None, f"{expression} IS NULL"
    else:
        placeholder = params.add(value)
        after = _strictly_after(key, expression, placeholder)
        equal = f"{expression} = {placeholder}"
    if len(keys) == 1:
        return after or "FALSE"
    rest = keyset_condition(keys[1:], cursor[1:], params)
    tied = f"({equal} AND {rest})"
    return f"({after} OR {tied})" if after else tied


def _strictly_after(key: SortKey, expression: str, placeholder: str) -> str:
    """Non-NULL values past the cursor value, then the NULLs that sort last."""
    operator = "<" if key.descending else ">"
    condition = f"{expression} {operator} {placeholder}"
    if key.field.name in _NOT_NULL:
        return condition
    return f"({condition} OR {expression} IS NULL)"
