"""The SQL of the PostgreSQL export source: ranges of a filtered, totally ordered scan.

Identifiers only from the catalog, values only as bind parameters, Elasticsearch's order; ranges
are bounded by keyset conditions, never OFFSET, so they partition the key space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from connectra.catalog import Field, FieldType
from connectra.processors.exporting.cells_sql import copy_cells
from connectra.processors.exporting.vql import (
    ExportQuery,
    KeywordFilter,
    RangeFilter,
    RangeOp,
    SortKey,
)

# The sort keys of a range's last row, `size` rows past the previous range. The default order
# (uuid) reads them from the primary key (index-only once the table is vacuumed); other orders
# sort the remaining filtered rows' keys.
RANGE_END = """
SELECT {keys}
FROM {table}
WHERE {where}
ORDER BY {order}
OFFSET {offset} LIMIT 1
"""
# Every range end at once, for orders no index serves: one sort of the filtered rows' keys,
# where a query per range would sort all remaining rows again each time.
RANGE_ENDS = """
SELECT {keys}
FROM (
    SELECT {named_keys}, row_number() OVER (ORDER BY {order}) AS n
    FROM {table}
    WHERE {where}
) AS ranked
WHERE n % {size} = 0
ORDER BY n
"""
# The planner's estimate of a table's rows (-1 before its first ANALYZE).
TABLE_ROWS_ESTIMATE = "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass"
# A range's rows as CSV cells. The default order walks the primary key between the two bounds;
# keyword filters on country use its index.
RANGE_ROWS = """
SELECT {cells}
FROM {table}
WHERE {where}
ORDER BY {order}
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
# Never NULL: no "OR ... IS NULL" in the keyset and no NULLS LAST, so the primary key serves.
_NOT_NULL = frozenset({"uuid"})

Keys = Sequence[Any]


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


def range_end(query: ExportQuery, start: Keys | None, size: int) -> tuple[str, list[Any]]:
    """The statement and arguments giving the sort keys of the `size`-th row after `start`
    (the previous range's last keys; None for the first range); no row if fewer remain."""
    params = Params()
    where = _where(query, params, start, None)
    sql = RANGE_END.format(
        keys=", ".join(_key_expressions(query)),
        table=quote_identifier(query.service.table),
        where=where,
        order=_order(query),
        offset=params.add(size - 1),
    )
    return sql, params.values


def table_rows_estimate(query: ExportQuery) -> tuple[str, list[Any]]:
    """The statement and arguments giving the planner's estimate of the table's rows."""
    return TABLE_ROWS_ESTIMATE, [quote_identifier(query.service.table)]


def walks_primary_key(query: ExportQuery) -> bool:
    """True when the export's order is the primary key's (uuid alone), which an index serves."""
    return len(query.sort_keys) == 1 and query.sort_keys[0].field.name in _NOT_NULL


def range_ends(query: ExportQuery, size: int) -> tuple[str, list[Any]]:
    """The statement and arguments giving the sort keys of the last row of every range of
    `size` rows, in order; the rows after the last of them are the last range."""
    params = Params()
    where = _where(query, params, None, None)
    expressions = _key_expressions(query)
    sql = RANGE_ENDS.format(
        keys=", ".join(f"k{i}" for i in range(len(expressions))),
        named_keys=", ".join(f"{e} AS k{i}" for i, e in enumerate(expressions)),
        table=quote_identifier(query.service.table),
        where=where,
        order=_order(query),
        size=params.add(size),
    )
    return sql, params.values


def range_rows(query: ExportQuery, start: Keys | None, end: Keys | None) -> tuple[str, list[Any]]:
    """The statement and arguments of the CSV cells of the rows after `start` up to and
    including `end` (None: no bound on that side), in the query's order."""
    params = Params()
    where = _where(query, params, start, end)
    identifiers = [quote_identifier(column.field.name) for column in query.columns]
    sql = RANGE_ROWS.format(
        cells=copy_cells(query.columns, identifiers),
        table=quote_identifier(query.service.table),
        where=where,
        order=_order(query),
    )
    return sql, params.values


def _key_expressions(query: ExportQuery) -> list[str]:
    """The sort keys as the expressions rows are compared by."""
    return [compare_expression(key.field) for key in query.sort_keys]


def _order(query: ExportQuery) -> str:
    """The ORDER BY list of the export's total order."""
    return ", ".join(_order_term(key) for key in query.sort_keys)


def _where(query: ExportQuery, params: Params, start: Keys | None, end: Keys | None) -> str:
    """The query's filters and the range's bounds."""
    conditions = [_keyword_condition(f, params) for f in query.keyword_filters]
    conditions += [_range_condition(f, params) for f in query.range_filters]
    if start is not None:
        conditions.append(keyset_condition(query.sort_keys, start, params))
    if end is not None:
        # Exact: the keyset condition is never NULL (see keyset_condition).
        conditions.append(f"NOT {keyset_condition(query.sort_keys, end, params)}")
    return " AND ".join(conditions) or "TRUE"


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
        # Same order, but `uuid DESC NULLS LAST` would sort every range instead of walking the
        # primary key backwards.
        return f"{compare_expression(key.field)} {direction}"
    return f"{compare_expression(key.field)} {direction} NULLS LAST"


def keyset_condition(keys: Sequence[SortKey], cursor: Sequence[Any], params: Params) -> str:
    """Rows strictly after the cursor in the (mixed-direction, NULLS LAST) order of `keys`.

    Nested as `after(k0) OR (k0 = c0 AND (after(k1) OR ...))`; the text depends on which cursor
    values are NULL, since nothing sorts after a NULL key and NULL never equals NULL. It is
    never NULL itself (`k = c` is NULL only where `after(k)` is TRUE), so `NOT` negates it.
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
