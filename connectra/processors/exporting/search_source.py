"""The Elasticsearch export source: pages of an `ExportQuery`'s documents, in its total order.

A bool query sorted with `missing: _last` and paged with `search_after` (`search_pages`); it
gives the records the PostgreSQL source gives, in the same order.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError, TransportError

from connectra.errors import (
    SearchIndexNotFoundError,
    SearchRequestError,
    SearchUnavailableError,
)
from connectra.processors.exporting.vql import ExportQuery, KeywordFilter, RangeFilter, SortKey

Source = Mapping[str, Any]


def search_body(query: ExportQuery) -> dict[str, Any]:
    """The `search` arguments of the first page (no `search_after`)."""
    wanted = {column.field.name for column in query.columns}
    wanted |= {key.field.name for key in query.sort_keys}
    return {
        "query": {"bool": _bool_clauses(query)},
        "sort": [_sort_clause(key) for key in query.sort_keys],
        "source": sorted(wanted),
        "size": query.page_size,
        "track_total_hits": False,
    }


def _bool_clauses(query: ExportQuery) -> dict[str, list[dict[str, Any]]]:
    """Filters that must hold and filters that must not, from the query's filters."""
    clauses: dict[str, list[dict[str, Any]]] = {"filter": [], "must_not": []}
    for keyword in query.keyword_filters:
        clauses["must_not" if keyword.negated else "filter"].append(_terms(keyword))
    for bounds in query.range_filters:
        clauses["must_not" if bounds.negated else "filter"].append(_range(bounds))
    return clauses


def _terms(keyword: KeywordFilter) -> dict[str, Any]:
    """A terms query; uuids as the lowercase strings the index holds."""
    values = [str(v) if isinstance(v, UUID) else v for v in keyword.values]
    return {"terms": {keyword.field.name: values}}


def _range(bounds: RangeFilter) -> dict[str, Any]:
    """A range query; timestamps as ISO 8601 UTC with milliseconds."""
    return {"range": {bounds.field.name: {op.value: _json(v) for op, v in bounds.bounds}}}


def _json(value: int | datetime) -> int | str:
    """A bound as JSON."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def _sort_clause(key: SortKey) -> dict[str, Any]:
    """One sort key, missing values last whatever the direction."""
    order = "desc" if key.descending else "asc"
    return {key.field.name: {"order": order, "missing": "_last"}}


async def search_pages(
    es: AsyncElasticsearch, index: str, query: ExportQuery
) -> AsyncGenerator[list[Source], None]:
    """Pages of `_source` documents, following `search_after`."""
    body = search_body(query)
    after: list[Any] | None = None
    while True:
        hits = await _search(es, index, body, after)
        if hits:
            yield [hit.get("_source", {}) for hit in hits]
        if len(hits) < query.page_size:
            return
        after = hits[-1]["sort"]


async def _search(
    es: AsyncElasticsearch, index: str, body: dict[str, Any], after: list[Any] | None
) -> list[dict[str, Any]]:
    """The hits of one page, with client errors as project errors."""
    extra: dict[str, Any] = {} if after is None else {"search_after": after}
    try:
        response = await es.search(index=index, **body, **extra)
    except NotFoundError as exc:
        raise SearchIndexNotFoundError(f"index {index!r} does not exist") from exc
    except ApiError as exc:
        if exc.status_code == 429 or exc.status_code >= 500:
            raise SearchUnavailableError(f"index {index!r}: {exc.message}") from exc
        raise SearchRequestError(f"index {index!r}: {exc.message}") from exc
    except TransportError as exc:
        raise SearchUnavailableError(f"index {index!r}: {exc.message}") from exc
    hits: list[dict[str, Any]] = response["hits"]["hits"]
    return hits
