"""The Elasticsearch client factory against the test cluster (osmem-server unless configured)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_bulk

from connectra.search import make_es_client, plain_media_type
from tests.services import EsEndpoint

MAPPINGS = {
    "dynamic": "strict",
    "properties": {
        "uuid": {"type": "keyword"},
        "n": {"type": "integer"},
        "country": {"type": "keyword"},
    },
}


@pytest.fixture
async def index(es_client: AsyncElasticsearch) -> AsyncIterator[str]:
    """A fresh index with strict mappings, deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    await es_client.indices.create(index=name, mappings=MAPPINGS)
    yield name
    await es_client.indices.delete(index=name)


def test_plain_media_type_rewrites_versioned_json_and_ndjson() -> None:
    compat = "application/vnd.elasticsearch+json; compatible-with=9"
    ndjson = "application/vnd.elasticsearch+x-ndjson;compatible-with=8"
    assert plain_media_type(compat) == "application/json"
    assert plain_media_type(ndjson) == "application/x-ndjson"
    assert plain_media_type("text/plain") == "text/plain"


async def test_index_bulk_count_and_search_after_pages_in_exact_order(
    es_client: AsyncElasticsearch,
    index: str,
) -> None:
    docs = [
        {"uuid": str(uuid.UUID(int=i * 7919 % 1000)), "n": i % 10, "country": "US"}
        for i in range(1000)
    ]
    actions = ({"_index": index, "_id": doc["uuid"], "_source": doc} for doc in docs)
    indexed, errors = await async_bulk(es_client, actions)
    assert (indexed, errors) == (1000, [])
    await es_client.indices.refresh(index=index)

    assert (await es_client.count(index=index))["count"] == 1000

    seen: list[tuple[int, str]] = []
    after: list[Any] | None = None
    while True:
        page = await es_client.search(
            index=index,
            size=128,
            sort=[{"n": "asc"}, {"uuid": "asc"}],
            query={"term": {"country": "US"}},
            search_after=after,
        )
        hits = page["hits"]["hits"]
        if not hits:
            break
        seen += [(hit["_source"]["n"], hit["_source"]["uuid"]) for hit in hits]
        after = hits[-1]["sort"]
    assert seen == sorted((doc["n"], doc["uuid"]) for doc in docs)


async def test_bulk_reports_per_item_errors_under_strict_mappings(
    es_client: AsyncElasticsearch,
    index: str,
) -> None:
    actions = [
        {"_index": index, "_id": "ok", "_source": {"uuid": "ok", "n": 1}},
        {"_index": index, "_id": "bad", "_source": {"uuid": "bad", "unknown": 1}},
    ]
    indexed, errors = await async_bulk(es_client, actions, raise_on_error=False)
    assert indexed == 1
    assert [next(iter(e.values()))["_id"] for e in errors] == ["bad"]  # type: ignore[union-attr]


async def test_missing_index_raises_not_found(es_client: AsyncElasticsearch) -> None:
    with pytest.raises(NotFoundError):
        await es_client.count(index=f"missing-{uuid.uuid4().hex}")


async def test_versioned_content_type_is_refused_by_osmem_without_the_rewrite(
    es_url: EsEndpoint,
) -> None:
    if not es_url.plain_media_types:
        pytest.skip("the configured cluster accepts versioned media types")
    client = make_es_client(es_url.url, plain_media_types=False)
    try:
        with pytest.raises(ApiError) as caught:
            await client.search(index="any", query={"match_all": {}})
    finally:
        await client.close()
    assert caught.value.meta.status == 406
