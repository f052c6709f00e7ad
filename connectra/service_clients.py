"""Opens the outside systems job handlers use (object store, Elasticsearch) and closes them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from connectra.objectstore import ObjectStore
from connectra.processors.base import Services
from connectra.search import make_es_client
from connectra.settings import Settings


def object_store(settings: Settings) -> ObjectStore:
    """An object store for these settings (not yet opened)."""
    return ObjectStore(
        settings.s3_endpoint_url,
        settings.aws_region,
        _secret(settings.aws_access_key_id),
        _secret(settings.aws_secret_access_key),
        path_style=settings.s3_force_path_style,
        presign_endpoint_url=settings.s3_public_endpoint_url,
    )


def _secret(value: object) -> str | None:
    """The plain value of an optional secret."""
    get = getattr(value, "get_secret_value", None)
    return None if get is None else str(get())


@contextlib.asynccontextmanager
async def open_services(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Services]:
    """The object store, and Elasticsearch when `ELASTICSEARCH_URL` is set; closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        objects = await stack.enter_async_context(object_store(settings))
        search = None
        if settings.elasticsearch_url:
            search = make_es_client(
                settings.elasticsearch_url, settings.elasticsearch_plain_media_types
            )
            stack.push_async_callback(search.close)
        yield Services(pool=pool, objects=objects, search=search)
