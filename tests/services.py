"""Test services that need no Docker: S3 from moto in a thread, Elasticsearch from osmem-server.

`tests/conftest.py` imports the fixtures, so every test can ask for them by name. Do not
import them into a test module as well: pytest would then set up each session-scoped server
(moto, osmem-server) once more for every module that imports it.

`CONNECTRA_TEST_ELASTICSEARCH_URL` points the Elasticsearch fixtures at a real cluster instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import pytest
import pytest_asyncio
from elasticsearch import AsyncElasticsearch
from moto.server import ThreadedMotoServer
from osmem_server import OsmemServer

from connectra.objectstore import ObjectStore
from connectra.search import make_es_client

S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "testing"
S3_SECRET_ACCESS_KEY = "testing"  # moto accepts any credentials


class EsEndpoint(NamedTuple):
    """Where the test Elasticsearch answers, and whether it needs plain media types."""

    url: str
    plain_media_types: bool


def moto_object_store(endpoint_url: str) -> ObjectStore:
    """An unopened `ObjectStore` on the moto endpoint with its fake credentials."""
    return ObjectStore(endpoint_url, S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY)


def moto_process_env(endpoint_url: str, bucket: str) -> dict[str, str]:
    """The environment a spawned `connectra` process needs to use a moto bucket."""
    return {
        "S3_ENDPOINT_URL": endpoint_url,
        "S3_BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
        "AWS_REGION": S3_REGION,
    }


async def read_object(objects: ObjectStore, bucket: str, key: str) -> bytes:
    """The whole object."""
    async with contextlib.aclosing(objects.iter_object(bucket, key)) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def bucket_keys(objects: ObjectStore, bucket: str) -> list[str]:
    """Every key in the bucket (up to 1,000), sorted."""
    listing = await objects.client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server running in a thread on a free port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def object_store(s3_endpoint: str) -> AsyncIterator[ObjectStore]:
    """An open `ObjectStore` on the moto server, shared: opening a client costs ~0.1 s."""
    async with moto_object_store(s3_endpoint) as store:
        yield store


@pytest_asyncio.fixture(loop_scope="session")
async def s3_bucket(object_store: ObjectStore) -> AsyncIterator[str]:
    """A fresh, empty bucket for one test, emptied and removed afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    await object_store.client.create_bucket(Bucket=name)
    yield name
    await _remove_bucket(object_store.client, name)


async def _remove_bucket(client: Any, bucket: str) -> None:
    """Abort pending uploads, delete every object, then the bucket (moto keeps all in memory)."""
    uploads = await client.list_multipart_uploads(Bucket=bucket)
    for upload in uploads.get("Uploads", []):
        await client.abort_multipart_upload(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            await client.delete_object(Bucket=bucket, Key=item["Key"])
    await client.delete_bucket(Bucket=bucket)


def docker_available() -> bool:
    """True when a Docker engine answers (never on the development machines; CI may differ)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return False
    try:
        docker.from_env(timeout=2).ping()
    except (DockerException, OSError):
        return False
    return True


@pytest.fixture(scope="session")
def es_url() -> Iterator[EsEndpoint]:
    """`CONNECTRA_TEST_ELASTICSEARCH_URL` if set, else an in-process osmem-server."""
    explicit = os.environ.get("CONNECTRA_TEST_ELASTICSEARCH_URL")
    if explicit:
        yield EsEndpoint(explicit, plain_media_types=False)
        return
    if docker_available():
        from testcontainers.community.elasticsearch import ElasticSearchContainer

        with ElasticSearchContainer("elasticsearch:8.15.3") as container:
            yield EsEndpoint(container.get_url(), plain_media_types=False)
        return
    server = OsmemServer.start(japanese=False)
    try:
        yield EsEndpoint(server.url, plain_media_types=True)
    finally:
        server.close()
        if server.process.stdout is not None:
            server.process.stdout.close()  # OsmemServer.close leaves its stdout pipe open


@pytest_asyncio.fixture(loop_scope="session")
async def es_client(es_url: EsEndpoint) -> AsyncIterator[AsyncElasticsearch]:
    """A client on the test Elasticsearch, closed after the test."""
    client = make_es_client(es_url.url, es_url.plain_media_types)
    try:
        yield client
    finally:
        await client.close()
