"""S3_PUBLIC_ENDPOINT_URL: presigned URLs name the endpoint their user reaches, signed for it.

Presigning makes no request, so these need no S3 server. The clock is fixed so that two
signatures of the same request can be compared.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from connectra.objectstore import ObjectStore
from connectra.service_clients import object_store
from connectra.settings import Settings

INSIDE = "http://minio:9000"  # where the daemon reaches the server (a compose service name)
OUTSIDE = "http://localhost:9000"  # where the user's machine reaches it (a published port)
NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sign every URL at the same instant."""
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW)


def store(endpoint: str, presign_endpoint: str | None = None) -> ObjectStore:
    """An unopened store with fixed credentials, path-style as for MinIO."""
    return ObjectStore(
        endpoint,
        "us-east-1",
        "key-id",
        "secret",
        path_style=True,
        presign_endpoint_url=presign_endpoint,
    )


async def presigned_put(objects: ObjectStore) -> str:
    """A presigned PUT of one CSV."""
    async with objects:
        return await objects.presign_put("imports", "uploads/a.csv", 600, content_type="text/csv")


async def test_presigned_urls_name_the_public_endpoint() -> None:
    url = urlsplit(await presigned_put(store(INSIDE, OUTSIDE)))

    assert (url.scheme, url.netloc) == ("http", "localhost:9000")
    assert url.path == "/imports/uploads/a.csv"
    assert parse_qs(url.query)["X-Amz-SignedHeaders"] == ["content-type;host"]


async def test_presigned_urls_are_signed_for_the_public_host() -> None:
    public = await presigned_put(store(INSIDE, OUTSIDE))

    assert public == await presigned_put(store(OUTSIDE))
    assert public != (await presigned_put(store(INSIDE))).replace("minio:9000", "localhost:9000")


async def test_presigned_get_urls_use_the_public_endpoint_too() -> None:
    async with store(INSIDE, OUTSIDE) as objects:
        url = await objects.presign_get("imports", "uploads/x.csv", 60)

    assert urlsplit(url).netloc == "localhost:9000"


async def test_without_a_public_endpoint_presigned_urls_name_the_daemons_endpoint() -> None:
    assert urlsplit(await presigned_put(store(INSIDE))).netloc == "minio:9000"


async def test_the_setting_reaches_the_object_store() -> None:
    settings = Settings(
        S3_ENDPOINT_URL=INSIDE,
        S3_PUBLIC_ENDPOINT_URL=OUTSIDE,
        S3_FORCE_PATH_STYLE=True,
        AWS_ACCESS_KEY_ID="key-id",
        AWS_SECRET_ACCESS_KEY="secret",
    )

    assert urlsplit(await presigned_put(object_store(settings))).netloc == "localhost:9000"
