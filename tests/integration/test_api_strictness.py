"""Integers in query strings and bodies are read strictly (ASCII digits, bounded length), and
the listing refuses a field it does not take instead of ignoring it (`offset` was)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectra.api.openapi import build_document
from connectra.db.store import JobStore
from connectra.jobs import NewJob
from connectra.processors.registry import default_registry
from connectra.settings import load_settings
from tests.api_client import Client, started
from tests.services import moto_object_store

AUTH = {"X-API-Key": "k1", "Content-Type": "application/json"}
HUGE = "9" * 4301  # one digit past what Python turns into an int


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    """The API with a bucket and an object store that presigns (it is never called)."""
    async with moto_object_store("http://127.0.0.1:9") as objects:
        async for client in started(store, objects, S3_BUCKET="bucket-one"):
            yield client


async def error_of(client: Client, method: str, path: str, **kwargs: object) -> tuple[int, str]:
    """The status and the whole error string of an answer."""
    response = await client.request(method, path, headers=AUTH, **kwargs)
    return response.status, (await response.json())["error"]


@pytest.mark.parametrize("expires_in", ["%D9%A3", "%C2%B2", "-5", "0", HUGE, "9" * 20])
async def test_expires_in_of_other_than_a_few_ascii_digits_is_refused(
    client: Client, expires_in: str
) -> None:
    path = f"/common/upload-url?filename=a.csv&expires_in={expires_in}"
    status, error = await error_of(client, "GET", path)
    assert (status, error.split(":")[0]) == (400, "ERR_INVALID_EXPIRES_IN")


async def signed_in(client: Client) -> dict[str, str]:
    """The Cookie header of a browser signed in to the dashboard."""
    response = await client.post(
        "/ui/signin", data={"api_key": "k1", "next": "/ui"}, allow_redirects=False
    )
    assert response.status == 303
    cookie = response.cookies["connectra_ui"].value
    client.session.cookie_jar.clear()
    return {"Cookie": f"connectra_ui={cookie}"}


@pytest.mark.parametrize("after", ["%D9%A3", "%C2%B2", "%2B5", "0", HUGE, "9" * 20])
async def test_a_dashboard_cursor_of_other_than_ascii_digits_is_named_not_a_500(
    client: Client, after: str
) -> None:
    response = await client.get(f"/ui?after={after}", headers=await signed_in(client))
    assert response.status == 200
    assert "the page cursor is not a positive integer" in await response.text()


@pytest.mark.parametrize("number", ["\u0663", "\u00b2", HUGE, f"-{HUGE}"])
@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/common/jobs", '{"limit": %s}'),
        ("/common/jobs", '{"after": %s}'),
        ("/common/jobs/create", '{"job_type": "noop", "job_data": {}, "priority": %s}'),
        ("/common/jobs/create", '{"job_type": "noop", "job_data": {}, "retry_count": %s}'),
        ("/common/jobs/create", '{"job_type": "noop", "job_data": {}, "retry_interval": %s}'),
        ("/common/jobs/create", '{"job_type": "noop", "job_data": {}, "delay_seconds": %s}'),
        ("/common/schedules", '{"name": "n", "cron": "* * * * *", "job_type": "noop", '
         '"priority": %s}'),
    ],
)  # fmt: skip
async def test_a_body_integer_of_unicode_digits_or_4301_digits_is_invalid_json(
    client: Client, path: str, template: str, number: str
) -> None:
    status, error = await error_of(client, "POST", path, data=template % number)
    assert (status, error.split(":")[0]) == (400, "ERR_INVALID_JSON")


@pytest.mark.parametrize(
    ("field", "hint"),
    [("offset", True), ("page", True), ("limt", False), ("Status", False), ("", False)],
)
async def test_a_listing_field_it_does_not_take_is_refused_by_name(
    client: Client, field: str, hint: bool
) -> None:
    status, error = await error_of(client, "POST", "/common/jobs", json={"limit": 5, field: 10})
    assert status == 400
    assert error.startswith(
        f"ERR_UNKNOWN_BODY_FIELD: unknown field {field!r}; this body takes job_type, status, "
        "queue, limit, after"
    )
    assert ("pages go on with 'after'" in error) is hint


async def test_the_listing_keeps_its_limit_and_pages_by_after(
    client: Client, store: JobStore
) -> None:
    for _ in range(3):
        await store.create(NewJob("noop", {}))
    first = await (await client.post("/common/jobs", json={"limit": 2}, headers=AUTH)).json()
    assert len(first["data"]) == 2
    assert first["next_after"] == first["data"][-1]["id"]
    body = {"limit": 2, "after": first["next_after"], "job_type": None, "status": []}
    rest = await (await client.post("/common/jobs", json=body, headers=AUTH)).json()
    assert (len(rest["data"]), rest["next_after"]) == (1, None)
    for limit in (0, 101, 2.0, "5"):
        status, error = await error_of(client, "POST", "/common/jobs", json={"limit": limit})
        assert (status, error.split(":")[0]) == (400, "ERR_INVALID_LIMIT")
    default = await (await client.post("/common/jobs", data=b"", headers=AUTH)).json()
    assert len(default["data"]) == 3


def test_the_document_says_the_listing_takes_no_other_field() -> None:
    document = build_document(default_registry(), load_settings(API_KEYS="k1"))
    listing = document["components"]["schemas"]["ListJobsRequest"]
    assert listing["additionalProperties"] is False
    answers = document["paths"]["/common/jobs"]["post"]["responses"]
    assert "ERR_UNKNOWN_BODY_FIELD" in answers["400"]["x-error-codes"]
    assert answers["408"]["x-error-codes"] == ["ERR_REQUEST_TIMEOUT"]
