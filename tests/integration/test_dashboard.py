"""The dashboard's pages over HTTP, against a real PostgreSQL: sign-in, sessions, escaping,
filters, paging and counts. `tests/browser` drives the same pages in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectra.api import dashboard
from connectra.api.app import create_app
from connectra.db import queries as q
from connectra.db.store import JobStore
from connectra.jobs import JobStatus, NewJob
from connectra.processors.registry import default_registry
from connectra.settings import load_settings
from tests.api_client import Client, started

KEY = "k1"  # the key tests/api_client.py configures


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    """The API (and dashboard) on a test server."""
    async for client in started(store):
        yield client


async def sign_in(client: Client, key: str = KEY, **headers: str) -> tuple[int, SimpleCookie]:
    """Post the sign-in form; the answer's status and cookies."""
    response = await client.post(
        "/ui/signin", data={"api_key": key, "next": "/ui"}, headers=headers, allow_redirects=False
    )
    cookies = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookies.load(header)
    client.session.cookie_jar.clear()
    return response.status, cookies


async def session(client: Client) -> dict[str, str]:
    """A Cookie header of a signed-in browser."""
    status, cookies = await sign_in(client)
    assert status == 303
    return {"Cookie": f"connectra_ui={cookies['connectra_ui'].value}"}


async def page(client: Client, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """A page's status and HTML."""
    response = await client.get(path, headers=headers, allow_redirects=False)
    return response.status, await response.text()


async def test_pages_need_a_session_and_send_to_the_sign_in_form(client: Client) -> None:
    uuid = uuid4()
    for path in ("/ui", "/ui?status=open&queue=a", f"/ui/jobs/{uuid}"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        location = urlsplit(response.headers["Location"])
        assert location.path == "/ui/signin"
        assert parse_qs(location.query) == {"next": [path]}
    for path in ("/ui/live", f"/ui/jobs/{uuid}/live"):
        assert (await client.get(path)).status == 401
    status, html = await page(client, "/ui/signin", {})
    assert status == 200
    assert 'name="api_key" type="password"' in html


async def test_a_wrong_key_gets_no_session(client: Client) -> None:
    status, cookies = await sign_in(client, key="nope")
    assert status == 401
    assert "connectra_ui" not in cookies


async def test_the_session_cookie_is_httponly_strict_browser_session_only_and_keyless(
    client: Client,
) -> None:
    status, cookies = await sign_in(client)
    assert status == 303
    cookie = cookies["connectra_ui"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert (cookie["expires"], cookie["max-age"]) == ("", "")
    assert KEY not in cookie.value
    assert re.fullmatch(r"env\.\d+\.[0-9a-f]{32}\.[0-9a-f]{64}", cookie.value)


async def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_the_dashboard(
    client: Client,
) -> None:
    for wanted, location in [
        ("/ui/jobs/x", "/ui/jobs/x"),
        ("/ui?queue=a", "/ui?queue=a"),
        ("https://evil.example/ui", "/ui"),
        ("//evil.example/ui", "/ui"),
        ("/common/jobs", "/ui"),
    ]:
        response = await client.post(
            "/ui/signin", data={"api_key": KEY, "next": wanted}, allow_redirects=False
        )
        assert (response.status, response.headers["Location"]) == (303, location)


async def test_a_sign_in_posted_from_another_site_is_refused(client: Client) -> None:
    status, cookies = await sign_in(client, Origin="https://evil.example")
    assert status == 403
    assert "connectra_ui" not in cookies
    host = f"http://{client.server.host}:{client.server.port}"
    assert (await sign_in(client, Origin=host))[0] == 303


async def test_sign_out_drops_the_cookie(client: Client) -> None:
    headers = await session(client)
    response = await client.post("/ui/signout", headers=headers, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/ui/signin")
    cookies = SimpleCookie()
    cookies.load(response.headers["Set-Cookie"])
    assert cookies["connectra_ui"].value == ""
    assert cookies["connectra_ui"]["max-age"] == "0"


async def test_a_session_cookie_cannot_act_on_jobs(client: Client, store: JobStore) -> None:
    job = await store.create(NewJob("noop", {}))
    headers = await session(client)
    for method, path in [
        ("POST", f"/common/jobs/{job.uuid}/cancel"),
        ("POST", f"/common/jobs/{job.uuid}/retry"),
        ("GET", f"/common/jobs/{job.uuid}/download-url"),
    ]:
        response = await client.request(method, path, headers=headers)
        assert response.status == 401
    assert (await store.get(job.uuid)).status is JobStatus.OPEN


async def test_pages_are_locked_down_and_not_cached(client: Client) -> None:
    headers = await session(client)
    response = await client.get("/ui", headers=headers)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_script_and_styles_are_served_without_a_session(client: Client) -> None:
    for name, kind in [("dashboard.js", "javascript"), ("dashboard.css", "text/css")]:
        response = await client.get(f"/ui/static/{name}")
        assert response.status == 200
        assert kind in response.content_type


async def test_job_data_and_responses_are_escaped(client: Client, store: JobStore) -> None:
    attack = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    job = await store.create(NewJob("noop", {"note": attack}))
    headers = await session(client)
    for path in (f"/ui/jobs/{job.uuid}", f"/ui/jobs/{job.uuid}/live"):
        status, html = await page(client, path, headers)
        assert status == 200
        assert "<script>alert" not in html
        assert "<img src=x" not in html
    status, html = await page(client, f"/ui/jobs/{job.uuid}", headers)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    status, html = await page(client, f"/ui?uuid={attack}&queue={attack}", headers)
    assert "<script>alert" not in html
    assert "is not a UUID" in html


async def test_the_list_filters_by_status_type_queue_and_uuid(
    client: Client, store: JobStore
) -> None:
    noop = await store.create(NewJob("noop", {}, queue="reports"))
    sleep = await store.create(NewJob("sleep", {"seconds": 1}))
    await store.cancel(sleep.uuid)
    headers = await session(client)

    async def listed(query: str) -> set[str]:
        status, html = await page(client, f"/ui{query}", headers)
        assert status == 200
        return set(re.findall(r'<tr data-uuid="([0-9a-f-]+)"', html))

    both = {str(noop.uuid), str(sleep.uuid)}
    assert await listed("") == both
    assert await listed("?status=aborted") == {str(sleep.uuid)}
    assert await listed("?type=noop") == {str(noop.uuid)}
    assert await listed("?queue=reports") == {str(noop.uuid)}
    assert await listed(f"?uuid={sleep.uuid}") == {str(sleep.uuid)}
    assert await listed(f"?uuid={sleep.uuid}&status=open") == set()
    assert await listed(f"?uuid={uuid4()}") == set()
    assert await listed("?status=finished&type=&queue=") == set()
    assert await listed("?queue=no%20spaces") == set()


async def test_the_list_pages_newest_first_with_a_keyset_cursor(
    client: Client, store: JobStore
) -> None:
    jobs = [await store.create(NewJob("noop", {"n": n})) for n in range(dashboard.PAGE_SIZE + 3)]
    headers = await session(client)
    status, html = await page(client, "/ui", headers)
    assert status == 200
    shown = re.findall(r'<tr data-uuid="([0-9a-f-]+)"', html)
    assert shown == [str(job.uuid) for job in reversed(jobs)][: dashboard.PAGE_SIZE]
    [older] = re.findall(r'href="(/ui\?after=\d+)" rel="next"', html)
    assert older == f"/ui?after={jobs[3].id}"

    status, html = await page(client, older, headers)
    assert status == 200
    assert re.findall(r'<tr data-uuid="([0-9a-f-]+)"', html) == [
        str(job.uuid) for job in reversed(jobs[:3])
    ]
    assert 'rel="next"' not in html
    assert 'href="/ui"' in html
    assert 'data-refresh-seconds="0"' in html, "a later page does not move under the reader"


async def test_counts_are_exact_while_waiting_and_capped_or_estimated_once_finished(
    client: Client, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "COUNT_CAP", 3)
    for _ in range(4):
        await store.create(NewJob("noop", {}, queue="bulk"))
    await store.create(NewJob("noop", {}, queue="reports"))
    aborted = await store.create(NewJob("noop", {}, queue="reports"))
    await store.cancel(aborted.uuid)
    await store.pool.execute(
        "INSERT INTO jobs (job_type, status, completed_at) "
        "SELECT 'noop', 'completed', now() FROM generate_series(1, 5)"
    )
    headers = await session(client)

    async def tiles() -> dict[str, str]:
        status, html = await page(client, "/ui/live", headers)
        assert status == 200
        assert "counted up to\n    3 per state" in html
        found = re.findall(
            r'data-count-status="(\w+)">\s*<span class="tile-count">([^<]+)</span>', html
        )
        return dict(found)

    shown = await tiles()
    assert (shown["open"], shown["aborted"], shown["failed"]) == ("5", "1", "0")
    assert shown["completed"] == "3+"
    await store.pool.execute("ANALYZE jobs")
    assert (await tiles())["completed"] == "≈5"


async def test_counting_reads_at_most_the_cap_of_each_state_on_a_big_table(
    store: JobStore,
) -> None:
    await store.pool.execute(
        "INSERT INTO jobs (job_type, status, completed_at) "
        "SELECT 'noop', 'completed', now() FROM generate_series(1, 20000)"
    )
    await store.pool.execute("INSERT INTO jobs (job_type) SELECT 'noop' FROM generate_series(1, 5)")
    await store.pool.execute("ANALYZE jobs")
    counts = await store.count_by_status_and_queue(JobStatus, cap=100)
    assert counts == {(JobStatus.COMPLETED, "default"): 100, (JobStatus.OPEN, "default"): 5}

    states = [str(status) for status in JobStatus]
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(q.JOB_COUNT_BOUNDED_PLAN)
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + q.JOB_COUNT_BOUNDED_BY_QUEUE, states, 100
        )
    if isinstance(plan, str):  # the pool may or may not decode json
        plan = json.loads(plan)
    scans = list(_scans_of_jobs(plan[0]["Plan"]))
    assert scans, "the plan reads jobs somewhere"
    for node in scans:
        assert node["Node Type"] != "Seq Scan", node
        assert node["Index Name"] == "jobs_status_list_idx"
        assert node["Actual Rows"] <= 100
        assert "Rows Removed by Filter" not in node


def _scans_of_jobs(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The plan nodes that read the jobs table."""
    if node.get("Relation Name") == "jobs":
        yield node
    for child in node.get("Plans", []):
        yield from _scans_of_jobs(child)


async def _app_with_keys(store: JobStore, keys: str) -> Client:
    """The API with exactly these keys, started; close it afterwards."""
    app = create_app(store, default_registry(), load_settings(API_KEYS=keys))
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_job_that_does_not_exist_has_a_not_found_page(client: Client) -> None:
    headers = await session(client)
    for name in (str(uuid4()), "not-a-uuid"):
        status, html = await page(client, f"/ui/jobs/{name}", headers)
        assert status == 404
        assert "No such job" in html
        assert (await client.get(f"/ui/jobs/{name}/live", headers=headers)).status == 404


async def test_a_session_ends_when_its_key_is_removed(store: JobStore) -> None:
    clients = [await _app_with_keys(store, keys) for keys in ("k1", "k2", "k2,k1")]
    try:
        before, without_k1, still_with_k1 = clients
        headers = await session(before)
        response = await without_k1.get("/ui", headers=headers, allow_redirects=False)
        assert response.status == 303
        assert (await still_with_k1.get("/ui", headers=headers)).status == 200
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize(
    ("path", "cookie"),
    [("/ui", "².a.b"), ("/ui?after=%C2%B2", None), ("/ui?after=" + "9" * 30, None)],
)
async def test_unicode_digits_in_a_cookie_or_cursor_are_no_server_error(
    store: JobStore, path: str, cookie: str | None
) -> None:
    app = create_app(store, default_registry(), load_settings(API_KEYS="k1"))
    async with TestClient(TestServer(app)) as client:
        headers = {"Cookie": f"connectra_ui={cookie}"} if cookie else {}
        response = await client.get(path, headers=headers, allow_redirects=False)
        assert response.status < 500
