"""The OpenAPI document: it lists exactly the routes the app serves, it is a valid OpenAPI 3.1
document, /docs shows it from local files only, and the live API answers every request
schemathesis makes from it as the document says (no 5xx, documented statuses, content types,
bodies and error codes)."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from importlib import metadata
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis import Case, Response

from connectra.api.app import create_app
from connectra.api.docs import DOCS_STATIC
from connectra.api.openapi import build_document, documented_operations
from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from connectra.processors.registry import default_registry
from connectra.settings import load_settings
from tests.api_client import Client, started
from tests.conftest import admin_dsn, database_url, pool, session_database, store  # noqa: F401
from tests.services import moto_object_store

KEY = "k1"
BUCKET = "connectra-fuzz"
SETTINGS = {"API_KEYS": KEY, "S3_BUCKET": BUCKET}
# Served by the app, but not part of the HTTP API the document describes.
NOT_API = ("/openapi.json", "/docs", "/metrics", "/ui")

DOCUMENT = build_document(default_registry(), load_settings(**SETTINGS))

# Values that broke the API before (each a 500 or a bad row: Unicode digits `int` refuses, a
# trailing newline `$` lets through, NUL, times with no UTC value, a cron that never fires)
# and their neighbours, by the fields they go to. Positive cases draw the values the document
# allows, negative cases the others.
TRICKY = {
    "digits": ["\u00b2", "\u0661\u0662", "\uff11", "05", "+5", " 5", "5\n", "1e3", "9" * 40],
    "names": ["nap\n", "default\n", "a.csv\n", "\x00", "a\x00b", "a b", " ", "%00", "../x",
              "\u00e9", "a" * 63, "a" * 64],
    "uuids": ["{12345678-1234-5678-1234-567812345678}", "12345678123456781234567812345678",
              "urn:uuid:12345678-1234-5678-1234-567812345678", "\x00", "\u00b2"],
    "times": ["0001-01-01", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00",
              "1969-12-31T23:59:59Z", "2026-13-01T00:00:00Z"],
    "crons": ["0 0 31 2 *", "0 0 30 2 *", "0 0 29 2 *", "61 * * * *", "* * * * * *", "@daily",
              "*/5 * * * *"],
    "zones": ["Etc/GMT+12", "Pacific/Kiritimati", "UTC\n", "../../etc/passwd", "\x00", "utc"],
    "numbers": [0, -1, 1, 100, 101, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 31536000.5, 1e308],
}  # fmt: skip
TRICKY_FIELDS = {
    "query.expires_in": "digits",
    "query.filename": "names",
    "path.name": "names",
    "path.uuid": "uuids",
    "body.name": "names",
    "body.queue": "names",
    "body.run_at": "times",
    "body.cron": "crons",
    "body.timezone": "zones",
    **dict.fromkeys(
        ("body.retry_count", "body.retry_interval", "body.priority", "body.limit", "body.after"),
        "numbers",
    ),
}  # fmt: skip

# Fixed seed, no example database: the same requests on every run. Checks: no 5xx; status,
# content type, headers and body as documented; invalid requests refused with a 4xx.
FUZZ_CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261203,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "generation": {"max-examples": 60, "database": "none", "mode": "all"},
        "dictionaries": {name: {"values": values} for name, values in TRICKY.items()},
        "parameters": {
            field: {"dictionary": name, "probability": 0.5} for field, name in TRICKY_FIELDS.items()
        },
        # The two routes that store what they are given get more.
        "operations": [
            {
                "include-path": ["/common/jobs/create", "/common/schedules"],
                "include-method": "POST",
                "generation": {"max-examples": 150},
            }
        ],
        # Nothing learnt from the answers (ids, error feedback): the requests depend on the
        # seed alone.
        "phases": {
            "stateful": {"enabled": False},
            "fuzzing": {
                "extra-data-sources": {"responses": False},
                "error-feedback": {"enabled": False},
            },
        },
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "negative_data_rejection": {"enabled": True},
        },
        "headers": {"X-API-Key": KEY},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=FUZZ_CONFIG)


@pytest.fixture
async def client(store: JobStore) -> AsyncIterator[Client]:
    """The API with key `k1` and a bucket, on a test server."""
    async for client in started(store, S3_BUCKET=BUCKET):
        yield client


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path) of every API route (HEAD is implied by GET)."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith(NOT_API):
            continue
        routes.add((route.method, path))
    return routes


async def test_every_route_is_documented_and_every_documented_operation_is_routed(
    store: JobStore,
) -> None:
    app = create_app(store, default_registry(), load_settings(**SETTINGS))
    routed = _routes(app)
    documented = documented_operations(DOCUMENT)
    assert routed - documented == set(), "routes missing from the document"
    assert documented - routed == set(), "documented operations with no route"
    assert ("POST", "/common/jobs/create") in routed  # the exclusions leave the API in


async def test_openapi_json_is_a_valid_openapi_3_1_document(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    document = await response.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == metadata.version("connectra-jobs")
    assert document == json.loads(json.dumps(DOCUMENT))


def test_every_error_answer_is_the_error_body_with_its_codes() -> None:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            protected = path.startswith("/common/")
            assert ("401" in responses) is protected, (method, path)
            assert operation["security"] == ([{"ApiKey": []}] if protected else [])
            assert "500" in responses, (method, path)
            for status, answer in responses.items():
                if int(status) < 400 or path == "/readyz":
                    continue
                schema_ref = answer["content"]["application/json"]["schema"]
                assert schema_ref == {"$ref": "#/components/schemas/Error"}, (method, path)
                assert all(code in answer["description"] for code in answer["x-error-codes"])


def test_job_data_is_described_by_each_job_types_model() -> None:
    create = DOCUMENT["components"]["schemas"]["CreateJobRequest"]
    assert sorted(create["discriminator"]["mapping"]) == default_registry().names
    sleep = DOCUMENT["components"]["schemas"]["CreateJobRequest.sleep"]
    assert sleep["properties"]["job_data"] == {"$ref": "#/components/schemas/JobData.SleepData"}
    assert "JobData.Vql" in DOCUMENT["components"]["schemas"]  # a nested model of an export


async def test_docs_page_uses_only_local_assets_and_they_are_served(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) >= 4
    assert "http" not in page
    for asset in assets:
        assert asset.startswith(f"{DOCS_STATIC}/"), asset
        answer = await client.get(asset)
        assert answer.status == 200, asset
        body = await answer.read()
        assert body
        if asset.endswith("connectra-docs.js"):
            assert b'url: "/openapi.json"' in body
            assert b"validatorUrl: null" in body
            assert b"http" not in body
    missing = await client.get(f"{DOCS_STATIC}/index.html")  # the bundle's demo page: not served
    assert missing.status == 404


class LiveApi:
    """The API served from a thread with an event loop of its own (its own pool and object
    store), because schemathesis sends blocking requests from the test's thread."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(30) or not self.url:
            raise RuntimeError("the API did not start")
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        pool = await create_pool(self.database_url, max_size=4)
        try:
            # Presigning needs no server: the endpoint is never called.
            async with moto_object_store("http://127.0.0.1:9") as objects:
                settings = load_settings(**SETTINGS)
                app = create_app(JobStore(pool), default_registry(), settings, objects=objects)
                server = TestServer(app, host="127.0.0.1")
                await server.start_server()
                self.url = str(server.make_url("")).rstrip("/")
                self._ready.set()
                await self._stop.wait()
                await server.close()
        finally:
            self._ready.set()
            await pool.close()


@pytest.fixture(scope="module")
def live_api(session_database: str) -> Iterator[str]:
    """The base URL of the API, on the run's database, for the module's fuzzing."""
    with LiveApi(session_database) as url:
        yield url


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """One HTTP session, so that the requests reuse their connections."""
    with requests.Session() as session:
        yield session


def _documented_codes(case: Case, status: int) -> list[str]:
    """The error codes the document lists for this operation and status."""
    answer = case.operation.definition.raw["responses"].get(str(status), {})
    codes: list[str] = answer.get("x-error-codes", [])
    return codes


def _check_error_code(case: Case, response: Response) -> None:
    """An error answer carries one of the codes its operation documents for its status; a
    method the path does not list is 405 (as the document's description says)."""
    if case.method.upper() != case.operation.method.upper():
        # PATCH /common/jobs/create is a PATCH of the job "create": 400, not 405.
        if response.status_code == 405:
            assert response.json()["error"].startswith("ERR_METHOD_NOT_ALLOWED: ")
            assert "allow" in {name.lower() for name in response.headers}
        return
    if response.status_code < 400 or case.path == "/readyz":
        return
    body: Any = response.json()
    code = body["error"].split(":", 1)[0]
    documented = _documented_codes(case, response.status_code)
    assert code in documented, f"{case.method} {case.path}: {code} is not among {documented}"


def _api_rules() -> Draft202012Validator:
    """The create body as the API itself checks it: `job_data` any object."""
    components = copy.deepcopy(DOCUMENT["components"])
    del components["schemas"]["CreateJobRequest"]["oneOf"]
    root = {"$ref": "#/components/schemas/CreateJobRequest", "components": components}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


API_RULES = _api_rules()


def _negated_only_in_job_data(case: Case) -> bool:
    """Whether an invalid create request is invalid only inside `job_data`, which the job
    type's pydantic model reads in lax mode (`false` is 0 for an integer field): accepting it
    is the model's choice, not the API's."""
    meta = case.meta
    if meta is None or case.path != "/common/jobs/create" or not meta.generation.mode.is_negative:
        return False
    if any(info.mode.is_negative for where, info in meta.components.items() if where != "body"):
        return False
    return API_RULES.is_valid(case.body)


@schema.parametrize()
def test_the_live_api_answers_as_documented(
    case: Case, live_api: str, http: requests.Session
) -> None:
    response = case.call(base_url=live_api, session=http)
    lax = _negated_only_in_job_data(case)
    case.validate_response(
        response,
        excluded_checks=[schemathesis.checks.negative_data_rejection] if lax else [],
        transport_kwargs={"base_url": live_api},
    )
    _check_error_code(case, response)
