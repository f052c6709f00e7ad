"""Elasticsearch indices of the two services: names, strict mappings, creation on first use."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError

from connectra.catalog import FieldType, ServiceSchema

# Exact-match fields are keywords, so keyword_match and sorting behave as in PostgreSQL
# with the "C" collation (byte order).
ES_TYPES: dict[FieldType, dict[str, Any]] = {
    FieldType.TEXT: {"type": "keyword", "ignore_above": 8191},
    FieldType.TEXT_ARRAY: {"type": "keyword", "ignore_above": 8191},
    FieldType.UUID: {"type": "keyword"},
    FieldType.INTEGER: {"type": "integer"},
    FieldType.BIGINT: {"type": "long"},
    FieldType.TIMESTAMP: {"type": "date", "format": "strict_date_optional_time"},
}


def index_name(prefix: str, service: ServiceSchema) -> str:
    """The index of a service, with the deployment's prefix (`ELASTICSEARCH_INDEX_PREFIX`)."""
    return f"{prefix}{service.index}"


def mappings(service: ServiceSchema) -> dict[str, Any]:
    """Strict mappings: a document with a field the catalog does not know is refused."""
    return {
        "dynamic": "strict",
        "properties": {field.name: ES_TYPES[field.type] for field in service.fields},
    }


async def ensure_index(es: AsyncElasticsearch, prefix: str, service: ServiceSchema) -> str:
    """Create the service's index unless it exists; return its name."""
    name = index_name(prefix, service)
    if await es.indices.exists(index=name):
        return name
    try:
        await es.indices.create(index=name, mappings=mappings(service))
    except BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
    return name
