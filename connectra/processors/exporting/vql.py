"""VQL, the query language of export jobs: its model, and its validation against a service.

`parse_vql` checks the shape and refuses any unknown key (an ignored filter would export too
much); `resolve_vql` checks names and values against the catalog and gives an `ExportQuery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic import Field as ModelField

from connectra.catalog import Field, FieldType, ServiceSchema
from connectra.errors import InvalidVqlError, MissingSelectColumnsError

MAX_PAGE_SIZE = 10_000
DEFAULT_PAGE_SIZE = 500
TIEBREAK_FIELD = "uuid"

Scalar = StrictStr | StrictInt
Bound = StrictStr | StrictInt

_INT_LIMITS = {FieldType.INTEGER: 2**31, FieldType.BIGINT: 2**63}
_KEYWORD_TYPES = frozenset(
    {FieldType.TEXT, FieldType.TEXT_ARRAY, FieldType.UUID, FieldType.INTEGER, FieldType.BIGINT}
)
_RANGE_TYPES = frozenset({FieldType.INTEGER, FieldType.BIGINT, FieldType.TIMESTAMP})
_SORT_TYPES = frozenset(FieldType) - {FieldType.TEXT_ARRAY}


class RangeOp(StrEnum):
    """A range bound."""

    GTE = "gte"
    LTE = "lte"
    GT = "gt"
    LT = "lt"


class _Strict(BaseModel):
    """Refuse unknown keys and coercions."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class KeywordMatch(_Strict):
    """Exact-value filters: field -> value or list of values."""

    must: dict[str, Scalar | list[Scalar]] = ModelField(default_factory=dict)
    must_not: dict[str, Scalar | list[Scalar]] = ModelField(default_factory=dict)


class RangeBounds(_Strict):
    """The bounds of one range filter."""

    gte: Bound | None = None
    lte: Bound | None = None
    gt: Bound | None = None
    lt: Bound | None = None


class RangeQuery(_Strict):
    """Range filters: field -> bounds."""

    must: dict[str, RangeBounds] = ModelField(default_factory=dict)
    must_not: dict[str, RangeBounds] = ModelField(default_factory=dict)


class Where(_Strict):
    """Every filter of a query; all of them must hold."""

    keyword_match: KeywordMatch = ModelField(default_factory=KeywordMatch)
    range_query: RangeQuery = ModelField(default_factory=RangeQuery)


def _lower(value: object) -> object:
    """Accept `ASC`/`Desc` as well as the documented lower case."""
    return value.lower() if isinstance(value, str) else value


class OrderBy(_Strict):
    """One sort key."""

    order_by: StrictStr
    order_direction: Annotated[Literal["asc", "desc"], BeforeValidator(_lower)] = "asc"


class Vql(_Strict):
    """A VQL query as given; `resolve_vql` checks it against a service."""

    where: Where = ModelField(default_factory=Where)
    select_columns: list[StrictStr] = ModelField(min_length=1)
    order_by: list[OrderBy] = ModelField(default_factory=list)
    limit: int = ModelField(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @model_validator(mode="before")
    @classmethod
    def _select_columns_given(cls, data: Any) -> Any:
        """Missing or empty select_columns gets the contract's own error, before any other."""
        if isinstance(data, dict) and not data.get("select_columns"):
            raise MissingSelectColumnsError()
        return data


def parse_vql(data: object) -> Vql:
    """The VQL model of raw JSON data, or ERR_MISSING_SELECT_COLUMNS / ERR_INVALID_VQL."""
    try:
        return Vql.model_validate(data)
    except ValidationError as exc:
        raise InvalidVqlError(describe_vql_error(exc)) from exc


def describe_vql_error(exc: ValidationError) -> str:
    """The first problem of a VQL validation error, with its path."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in ("vql", *first["loc"]))
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {first['msg']}{more}"


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: its header as the user wrote it, and the catalog field behind it."""

    header: str
    field: Field


@dataclass(frozen=True, slots=True)
class KeywordFilter:
    """`field` equals (overlaps, for text[]) one of `values`; negated for must_not."""

    field: Field
    values: tuple[str | int | UUID, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class RangeFilter:
    """`field` lies within every bound; negated for must_not."""

    field: Field
    bounds: tuple[tuple[RangeOp, int | datetime], ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class SortKey:
    """One key of the total order."""

    field: Field
    descending: bool


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """A VQL query checked against a service: only catalog fields and typed values."""

    service: ServiceSchema
    columns: tuple[Column, ...]
    keyword_filters: tuple[KeywordFilter, ...]
    range_filters: tuple[RangeFilter, ...]
    sort_keys: tuple[SortKey, ...]
    page_size: int

    @property
    def headers(self) -> list[str]:
        """The CSV header row."""
        return [column.header for column in self.columns]


def resolve_vql(vql: Vql, service: ServiceSchema) -> ExportQuery:
    """Check every field and value of the query against the service; ERR_UNKNOWN_FIELD or
    ERR_INVALID_VQL on the first problem."""
    keyword = vql.where.keyword_match
    ranges = vql.where.range_query
    return ExportQuery(
        service=service,
        columns=tuple(Column(name, service.field(name)) for name in vql.select_columns),
        keyword_filters=(
            *_keyword_filters(service, keyword.must, negated=False),
            *_keyword_filters(service, keyword.must_not, negated=True),
        ),
        range_filters=(
            *_range_filters(service, ranges.must, negated=False),
            *_range_filters(service, ranges.must_not, negated=True),
        ),
        sort_keys=_sort_keys(service, vql.order_by),
        page_size=vql.limit,
    )


def _keyword_filters(
    service: ServiceSchema, clauses: dict[str, Scalar | list[Scalar]], *, negated: bool
) -> list[KeywordFilter]:
    """The keyword filters of one clause."""
    where = "must_not" if negated else "must"
    filters = []
    for name, given in clauses.items():
        field = service.field(name)
        path = f"vql.where.keyword_match.{where}.{name}"
        if field.type not in _KEYWORD_TYPES:
            raise InvalidVqlError(f"{path}: {field.type} fields take range_query, not keyword")
        values = given if isinstance(given, list) else [given]
        if not values:
            raise InvalidVqlError(f"{path}: give at least one value")
        typed = tuple(_keyword_value(field, value, path) for value in values)
        filters.append(KeywordFilter(field, typed, negated))
    return filters


def _keyword_value(field: Field, value: str | int, path: str) -> str | int | UUID:
    """One keyword value, converted to the field's type."""
    if field.type in _INT_LIMITS:
        return _integer(field, value, path)
    if not isinstance(value, str):
        raise InvalidVqlError(f"{path}: {field.name} takes strings, not {value!r}")
    if field.type is FieldType.UUID:
        try:
            return UUID(value)
        except ValueError:
            raise InvalidVqlError(f"{path}: {value[:60]!r} is not a UUID") from None
    return value


def _integer(field: Field, value: str | int, path: str) -> int:
    """An integer that fits the field's column type."""
    limit = _INT_LIMITS[field.type]
    if not isinstance(value, int) or not -limit <= value < limit:
        raise InvalidVqlError(f"{path}: {field.name} takes {field.type} values, not {value!r}")
    return value


def _range_filters(
    service: ServiceSchema, clauses: dict[str, RangeBounds], *, negated: bool
) -> list[RangeFilter]:
    """The range filters of one clause."""
    where = "must_not" if negated else "must"
    filters = []
    for name, given in clauses.items():
        field = service.field(name)
        path = f"vql.where.range_query.{where}.{name}"
        if field.type not in _RANGE_TYPES:
            raise InvalidVqlError(f"{path}: range_query takes integer and timestamp fields only")
        bounds = tuple(
            (op, _bound(field, value, f"{path}.{op}"))
            for op in RangeOp
            if (value := getattr(given, op.value)) is not None
        )
        if not bounds:
            raise InvalidVqlError(f"{path}: give at least one of gte, lte, gt, lt")
        filters.append(RangeFilter(field, bounds, negated))
    return filters


def _bound(field: Field, value: str | int, path: str) -> int | datetime:
    """One range bound, converted to the field's type."""
    if field.type is not FieldType.TIMESTAMP:
        return _integer(field, value, path)
    if not isinstance(value, str):
        raise InvalidVqlError(f"{path}: give an ISO 8601 timestamp, not {value!r}")
    return millisecond_timestamp(value, path)


def millisecond_timestamp(value: str, path: str) -> datetime:
    """An ISO 8601 string as an aware UTC datetime truncated to milliseconds."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidVqlError(f"{path}: {value[:60]!r} is not an ISO 8601 timestamp") from None
    aware = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


def _sort_keys(service: ServiceSchema, order_by: list[OrderBy]) -> tuple[SortKey, ...]:
    """The sort keys asked for, then the uuid tiebreak unless uuid is already a key."""
    keys: list[SortKey] = []
    for position, item in enumerate(order_by):
        field = service.field(item.order_by)
        path = f"vql.order_by.{position}.order_by"
        if field.type not in _SORT_TYPES:
            raise InvalidVqlError(f"{path}: {field.type} fields cannot be sorted on")
        if any(key.field == field for key in keys):
            raise InvalidVqlError(f"{path}: {field.name} is already a sort key")
        keys.append(SortKey(field, descending=item.order_direction == "desc"))
    if not any(key.field.name == TIEBREAK_FIELD for key in keys):
        keys.append(SortKey(service.field(TIEBREAK_FIELD), descending=False))
    return tuple(keys)
