"""Managed API keys against a real PostgreSQL and the API on a test server: the store, scopes
on every route, each key's jobs kept from the others, revocation and rotation without a
restart, API_KEYS as admin keys, and the dashboard's sessions of managed keys."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectra.api.access import ROUTE_SCOPES
from connectra.api.app import create_app
from connectra.api_keys import Scope
from connectra.db import queries as q
from connectra.db.api_key_store import ApiKeyStore, key_to_json
from connectra.db.store import JobStore
from connectra.errors import ApiKeyExistsError, ApiKeyNotFoundError, InvalidKeyNameError
from connectra.jobs import JobStatus, NewJob
from connectra.processors.registry import default_registry
from connectra.settings import load_settings
from tests.api_client import Client
from tests.polling import eventually

ENV_KEY = "env-secret-1"
CACHE_SECONDS = 0.3
Start = Callable[..., Awaitable[Client]]


@pytest.fixture
def keys(pool: asyncpg.Pool) -> ApiKeyStore:
    """The key store on the test's database."""
    return ApiKeyStore(pool)


@pytest.fixture
async def start(store: JobStore) -> AsyncIterator[Start]:
    """Start an API (one env key, a short key cache); each is closed afterwards."""
    clients: list[Client] = []

    async def started(**settings: object) -> Client:
        values: dict[str, object] = {
            "API_KEYS": ENV_KEY,
            "API_KEY_CACHE_SECONDS": CACHE_SECONDS,
            "S3_ALLOWED_BUCKETS": "my-bucket",
        }
        app = create_app(store, default_registry(), load_settings(**(values | settings)))
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield started
    for client in clients:
        await client.close()


@pytest.fixture
async def client(start: Start) -> Client:
    return await start()


def auth(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


async def error_code(response: aiohttp.ClientResponse) -> str:
    body = await response.json()
    assert body["success"] is False, body
    return str(body["error"].split(":")[0])


async def create(client: Client, secret: str, **headers: str) -> dict[str, Any]:
    """Create a noop job with this key; its JSON."""
    response = await client.post(
        "/common/jobs/create",
        json={"job_type": "noop", "job_data": {}},
        headers=auth(secret) | headers,
    )
    assert response.status == 201, await response.text()
    job: dict[str, Any] = (await response.json())["job"]
    return job


async def listed(client: Client, secret: str) -> set[str]:
    response = await client.post("/common/jobs", json={}, headers=auth(secret))
    assert response.status == 200, await response.text()
    return {job["uuid"] for job in (await response.json())["data"]}


# -- the store ---------------------------------------------------------------------------------


async def test_a_key_is_stored_hashed_with_its_scope_and_listed_without_secrets(
    keys: ApiKeyStore, pool: asyncpg.Pool
) -> None:
    key, secret = await keys.create("billing", Scope.WRITE)
    assert secret.startswith(key.prefix)
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE name = 'billing'")
    assert row is not None
    assert secret.encode() not in b"".join(str(value).encode() for value in row.values())
    assert bytes(row["secret_hash"]) == key.secret_hash
    assert len(key.secret_hash) == 32
    (shown,) = [key_to_json(k) for k in await keys.all()]
    assert shown["name"] == "billing"
    assert shown["scope"] == "write"
    assert shown["prefix"] == key.prefix
    assert shown["revoked_at"] is None
    assert secret not in repr(key)
    assert key.secret_hash.hex() not in str(shown)


async def test_names_are_unique_for_good_even_once_revoked(keys: ApiKeyStore) -> None:
    await keys.create("billing", Scope.READ)
    with pytest.raises(ApiKeyExistsError):
        await keys.create("billing", Scope.ADMIN)
    await keys.revoke("billing")
    with pytest.raises(ApiKeyExistsError):
        await keys.create("billing", Scope.READ)
    with pytest.raises(ApiKeyNotFoundError):
        await keys.revoke("billing")
    with pytest.raises(ApiKeyNotFoundError):
        await keys.rotate("billing")
    with pytest.raises(InvalidKeyNameError):
        await keys.create("env-1", Scope.ADMIN)


async def test_rotation_changes_the_secret_and_key_id_and_keeps_name_and_scope(
    keys: ApiKeyStore,
) -> None:
    key, secret = await keys.create("billing", Scope.WRITE)
    rotated, new = await keys.rotate("billing")
    assert new != secret
    assert rotated.key_id != key.key_id
    assert (rotated.name, rotated.scope, rotated.created_at) == ("billing", "write", key.created_at)
    assert rotated.rotated_at is not None
    assert await keys.active(key.key_id) is None
    assert await keys.active(rotated.key_id) == rotated


# -- scopes ------------------------------------------------------------------------------------


def test_every_common_route_of_the_app_has_its_scope_listed(client: Client) -> None:
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/common/")
        and route.method != "HEAD"
    }
    assert served == set(ROUTE_SCOPES)


async def test_each_scope_may_call_exactly_the_routes_it_covers(
    client: Client, keys: ApiKeyStore
) -> None:
    secrets = {scope: (await keys.create(f"k-{scope}", scope))[1] for scope in Scope}
    for (method, path), needed in sorted(ROUTE_SCOPES.items()):
        for scope, secret in secrets.items():
            job = await create(client, ENV_KEY)
            url = path.replace("{uuid}", job["uuid"]).replace("{name}", "nope")
            body = {"status": "aborted"} if method == "PATCH" else {}
            response = await client.request(
                method, url, json=body if method in ("POST", "PATCH") else None,
                headers=auth(secret),
            )  # fmt: skip
            if scope.allows(needed):
                assert response.status not in (401, 403), (method, path, scope)
            else:
                assert response.status == 403, (method, path, scope, await response.text())
                assert await error_code(response) == "ERR_SCOPE_REQUIRED"


async def test_unknown_keys_are_401_and_unknown_routes_404_whatever_the_scope(
    client: Client, keys: ApiKeyStore
) -> None:
    _, reader = await keys.create("reader", Scope.READ)
    for secret in ("cj_0123456789ab_nope", reader[:-2], "nope"):
        response = await client.get("/common/jobs/x", headers=auth(secret))
        assert response.status == 401
    response = await client.get("/common/nothing-here", headers=auth(reader))
    assert (response.status, await error_code(response)) == (404, "ERR_NOT_FOUND")
    response = await client.delete("/common/jobs/create", headers=auth(reader))
    assert response.status == 405


async def test_a_refused_scope_reads_no_body_and_creates_nothing(
    client: Client, keys: ApiKeyStore, store: JobStore
) -> None:
    _, reader = await keys.create("reader", Scope.READ)
    response = await client.post("/common/jobs/create", data=b"{not json", headers=auth(reader))
    assert (response.status, await error_code(response)) == (403, "ERR_SCOPE_REQUIRED")
    assert await store.find() == []


# -- ownership ---------------------------------------------------------------------------------


async def test_a_key_sees_and_acts_on_only_its_own_jobs_and_admins_on_all(
    client: Client, keys: ApiKeyStore, store: JobStore, pool: asyncpg.Pool
) -> None:
    _, alice = await keys.create("alice", Scope.WRITE)
    _, bob = await keys.create("bob", Scope.WRITE)
    _, boss = await keys.create("boss", Scope.ADMIN)
    a, b = await create(client, alice), await create(client, bob)
    from_cli = await store.create(NewJob("noop", {}))
    assert (a["created_by"], b["created_by"]) == ("alice", "bob")
    assert from_cli.created_by is None

    assert await listed(client, alice) == {a["uuid"]}
    assert await listed(client, bob) == {b["uuid"]}
    everyone = {a["uuid"], b["uuid"], str(from_cli.uuid)}
    assert await listed(client, boss) == everyone
    assert await listed(client, ENV_KEY) == everyone

    await pool.execute("UPDATE jobs SET status = 'failed_final' WHERE uuid = $1", b["uuid"])
    for method, path, body in [
        ("GET", f"/common/jobs/{b['uuid']}", None),
        ("POST", f"/common/jobs/{b['uuid']}/cancel", None),
        ("PATCH", f"/common/jobs/{b['uuid']}", {"status": "aborted"}),
        ("POST", f"/common/jobs/{b['uuid']}/retry", None),
        ("GET", f"/common/jobs/{b['uuid']}/download-url", None),
        ("GET", f"/common/jobs/{from_cli.uuid}", None),
    ]:
        response = await client.request(method, path, json=body, headers=auth(alice))
        assert response.status == 404, (method, path)
        assert await error_code(response) == "ERR_JOB_NOT_FOUND"
    assert (await store.get(b["uuid"])).status is JobStatus.FAILED_FINAL

    response = await client.post(f"/common/jobs/{b['uuid']}/retry", headers=auth(bob))
    assert response.status == 200
    response = await client.post(f"/common/jobs/{a['uuid']}/cancel", headers=auth(boss))
    assert response.status == 200
    response = await client.get(f"/common/jobs/{a['uuid']}", headers=auth(alice))
    assert (await response.json())["data"]["status"] == "aborted"


async def test_listing_filters_and_pages_within_a_keys_own_jobs(
    client: Client, keys: ApiKeyStore
) -> None:
    _, alice = await keys.create("alice", Scope.WRITE)
    _, bob = await keys.create("bob", Scope.WRITE)
    mine = [await create(client, alice) for _ in range(3)]
    for _ in range(3):
        await create(client, bob)
    response = await client.post("/common/jobs", json={"limit": 2}, headers=auth(alice))
    page = await response.json()
    assert [job["uuid"] for job in page["data"]] == [mine[2]["uuid"], mine[1]["uuid"]]
    response = await client.post(
        "/common/jobs", json={"limit": 2, "after": page["next_after"]}, headers=auth(alice)
    )
    assert [job["uuid"] for job in (await response.json())["data"]] == [mine[0]["uuid"]]
    response = await client.post(
        "/common/jobs", json={"status": ["open"], "job_type": "noop"}, headers=auth(bob)
    )
    assert all(job["created_by"] == "bob" for job in (await response.json())["data"])


async def test_two_keys_using_the_same_idempotency_key_get_their_own_jobs(
    client: Client, keys: ApiKeyStore
) -> None:
    _, alice = await keys.create("alice", Scope.WRITE)
    _, bob = await keys.create("bob", Scope.WRITE)
    first = await create(client, alice, **{"Idempotency-Key": "order-1"})
    other = await create(client, bob, **{"Idempotency-Key": "order-1"})
    again = await create(client, alice, **{"Idempotency-Key": "order-1"})
    assert first["uuid"] != other["uuid"]
    assert again["uuid"] == first["uuid"]
    assert other["created_by"] == "bob"


async def test_keys_of_api_keys_are_admins_named_env_in_order(start: Start) -> None:
    client = await start(API_KEYS="first,second")
    job = await create(client, "second")
    assert job["created_by"] == "env-2"
    response = await client.get("/common/schedules", headers=auth("first"))
    assert response.status == 200
    assert await listed(client, "first") == {job["uuid"]}


# -- without a restart -------------------------------------------------------------------------


async def test_a_revoked_key_is_refused_within_the_cache_time_without_a_restart(
    client: Client, keys: ApiKeyStore
) -> None:
    _, secret = await keys.create("ci", Scope.READ)
    assert (await client.post("/common/jobs", json={}, headers=auth(secret))).status == 200
    await keys.revoke("ci")

    async def refused() -> bool:
        response = await client.post("/common/jobs", json={}, headers=auth(secret))
        return response.status == 401

    await eventually(refused, within=CACHE_SECONDS + 1)


async def test_a_rotated_key_works_at_once_and_its_old_secret_stops(
    client: Client, keys: ApiKeyStore
) -> None:
    _, old = await keys.create("ci", Scope.WRITE)
    job = await create(client, old)
    _, new = await keys.rotate("ci")
    response = await client.get(f"/common/jobs/{job['uuid']}", headers=auth(new))
    assert response.status == 200, "the new secret works at once, and keeps the key's jobs"

    async def refused() -> bool:
        response = await client.get(f"/common/jobs/{job['uuid']}", headers=auth(old))
        return response.status == 401

    await eventually(refused, within=CACHE_SECONDS + 1)


async def test_a_key_created_while_the_api_runs_works_at_once_and_is_marked_used(
    client: Client, keys: ApiKeyStore
) -> None:
    assert await listed(client, ENV_KEY) == set()
    _, secret = await keys.create("late", Scope.READ)
    assert await listed(client, secret) == set()
    (shown,) = [key_to_json(key) for key in await keys.all()]
    assert shown["last_used_at"] is not None


# -- the dashboard -----------------------------------------------------------------------------


async def sign_in(client: Client, secret: str) -> dict[str, str]:
    """Sign in to the dashboard; a Cookie header of the session."""
    response = await client.post(
        "/ui/signin", data={"api_key": secret, "next": "/ui"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    cookies = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookies.load(header)
    client.session.cookie_jar.clear()
    return {"Cookie": f"connectra_ui={cookies['connectra_ui'].value}"}


async def ui(client: Client, path: str, headers: dict[str, str]) -> tuple[int, str]:
    response = await client.get(path, headers=headers, allow_redirects=False)
    return response.status, await response.text()


async def test_a_managed_keys_dashboard_shows_only_its_own_jobs(
    client: Client, keys: ApiKeyStore, store: JobStore
) -> None:
    alice_key, alice = await keys.create("alice", Scope.WRITE)
    _, bob = await keys.create("bob", Scope.WRITE)
    mine, theirs = await create(client, alice), await create(client, bob)
    await store.create(NewJob("noop", {}))
    headers = await sign_in(client, alice)
    assert headers["Cookie"].startswith(f"connectra_ui={alice_key.key_id}.")
    assert alice not in headers["Cookie"]

    status, html = await ui(client, "/ui", headers)
    assert status == 200
    assert set(re.findall(r'<tr data-uuid="([0-9a-f-]+)"', html)) == {mine["uuid"]}
    assert "sees only the jobs it created" in html
    tiles = dict(
        re.findall(r'data-count-status="(\w+)">\s*<span class="tile-count">([^<]+)</span>', html)
    )
    assert tiles["open"] == "1"
    assert (await ui(client, f"/ui?uuid={theirs['uuid']}", headers))[1].count("<tr data-uuid") == 0
    for path in (f"/ui/jobs/{theirs['uuid']}", f"/ui/jobs/{theirs['uuid']}/live"):
        assert (await ui(client, path, headers))[0] == 404
    status, html = await ui(client, f"/ui/jobs/{mine['uuid']}", headers)
    assert status == 200
    assert 'data-action="cancel"' in html

    admin = await sign_in(client, ENV_KEY)
    status, html = await ui(client, "/ui", admin)
    assert len(re.findall(r"<tr data-uuid=", html)) == 3


async def test_a_read_only_key_signs_in_but_is_offered_no_actions(
    client: Client, keys: ApiKeyStore, store: JobStore
) -> None:
    _, reader = await keys.create("reader", Scope.READ)
    job = await store.create(NewJob("noop", {}, created_by="reader"))
    headers = await sign_in(client, reader)
    status, html = await ui(client, f"/ui/jobs/{job.uuid}", headers)
    assert status == 200
    assert 'data-action="cancel"' not in html
    assert 'data-action="retry"' not in html


async def test_revoking_or_rotating_a_key_ends_its_dashboard_sessions(
    client: Client, keys: ApiKeyStore
) -> None:
    _, alice = await keys.create("alice", Scope.READ)
    _, bob = await keys.create("bob", Scope.READ)
    alice_session, bob_session = await sign_in(client, alice), await sign_in(client, bob)
    assert (await ui(client, "/ui", alice_session))[0] == 200
    await keys.revoke("alice")
    await keys.rotate("bob")

    async def ended(session: dict[str, str]) -> bool:
        return (await ui(client, "/ui", session))[0] == 303

    await eventually(lambda: ended(alice_session), within=CACHE_SECONDS + 1)
    await eventually(lambda: ended(bob_session), within=CACHE_SECONDS + 1)
    refused = await client.post("/ui/signin", data={"api_key": alice}, allow_redirects=False)
    assert refused.status == 401


async def test_a_session_names_its_key_and_cannot_be_moved_to_another(
    client: Client, keys: ApiKeyStore
) -> None:
    alice_key, alice = await keys.create("alice", Scope.ADMIN)
    bob_key, _ = await keys.create("bob", Scope.ADMIN)
    cookie = (await sign_in(client, alice))["Cookie"]
    moved = cookie.replace(alice_key.key_id, bob_key.key_id)
    assert (await ui(client, "/ui", {"Cookie": moved}))[0] == 303
    as_env = cookie.replace(alice_key.key_id, "env")
    assert (await ui(client, "/ui", {"Cookie": as_env}))[0] == 303
    made_up = f"connectra_ui={uuid4().hex[:12]}.1.2.3"
    assert (await ui(client, "/ui", {"Cookie": made_up}))[0] == 303


# -- plans -------------------------------------------------------------------------------------


async def _indexes_used(pool: asyncpg.Pool, sql: str, *args: object) -> set[str]:
    """Every index the plan of `sql` scans, with these arguments."""
    plan = await pool.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return found


async def test_a_keys_listing_and_counts_walk_its_own_index_on_a_big_table(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(
        "INSERT INTO jobs (job_type, status, completed_at, created_by) "
        "SELECT 'noop', 'completed', now(), CASE WHEN n % 10 = 0 THEN 'k' || (n % 7) END "
        "FROM generate_series(1, 30000) AS n"
    )
    await pool.execute("ANALYZE jobs")
    for args in [
        (None, None, 25, None, None, "k3"),
        (None, ["completed"], 25, None, None, "k3"),
        ("noop", None, 25, ["default"], 10**9, "k3"),
    ]:
        assert "jobs_created_by_idx" in await _indexes_used(pool, q.JOB_LIST_OWNED, *args)
    counts = await _indexes_used(pool, q.JOB_COUNT_OWNED_BY_QUEUE, "k3", 10_000)
    assert counts == {"jobs_created_by_idx"}
