"""Starting the API on a test server, for the tests of its endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectra.api.app import create_app
from connectra.db.store import JobStore
from connectra.objectstore import ObjectStore
from connectra.processors.registry import default_registry
from connectra.settings import load_settings

Client = TestClient[web.Request, web.Application]


async def started(
    store: JobStore, objects: ObjectStore | None = None, **settings: object
) -> AsyncIterator[Client]:
    """The API with key `k1` (and these settings) on a test server, closed afterwards."""
    app = create_app(
        store, default_registry(), load_settings(API_KEYS="k1", **settings), objects=objects
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
