"""`export_csv_file` against real PostgreSQL, moto S3 and osmem Elasticsearch.

One small data set full of NULLs, duplicates, mixed case, non-ASCII text and timestamps that tie
at millisecond precision is loaded into both PostgreSQL (per test) and Elasticsearch (once); every
VQL clause must give the same bytes from both sources, and the rows a plain reading of the clause
gives. Bulk data for the multipart and cancellation tests comes from `generate_series`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from itertools import cycle
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from connectra.api.app import create_app
from connectra.catalog import COMPANY, CONTACT, FieldType, ServiceSchema
from connectra.db.migrate import migrate
from connectra.db.pool import create_pool
from connectra.db.store import JobStore
from connectra.errors import BucketNotConfiguredError, SearchIndexNotFoundError, UnknownFieldError
from connectra.jobs import NewJob
from connectra.logs import BoundLogger
from connectra.objectstore import ObjectStore
from connectra.processors.base import JobContext, JobTypeRegistry, Services
from connectra.processors.demo import NOOP
from connectra.processors.exporting.cells import RowFormatter
from connectra.processors.exporting.checkpoint import OpenUpload
from connectra.processors.exporting.job_type import EXPORT_CSV_FILE
from connectra.processors.exporting.postgres_source import copy_export
from connectra.processors.exporting.sql import range_end, range_rows
from connectra.processors.exporting.upload import Sink, write_export
from connectra.processors.exporting.vql import parse_vql, resolve_vql
from connectra.processors.search_index import ensure_index, index_name
from connectra.search import make_es_client
from connectra.settings import Settings, load_settings
from tests.conftest import with_database
from tests.polling import eventually
from tests.services import EsEndpoint, bucket_keys, read_object

Row = dict[str, Any]
MIB = 1024 * 1024
ES_PREFIX = f"export{uuid.uuid4().hex[:8]}_"
BASE_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
TIMES = [
    None,
    BASE_TIME,
    BASE_TIME + timedelta(microseconds=123_456),
    BASE_TIME + timedelta(microseconds=123_789),  # ties the one above at millisecond precision
    BASE_TIME + timedelta(days=1),
    BASE_TIME + timedelta(days=30, microseconds=500_000),
]
COUNTRIES = ["US", "US", "DE", "de", "Ürdün", "", None]
TITLES = ["CEO", "CTO", "Engineer", "engineer", None]
FIRST_NAMES = [
    "Ann",
    "Bo, Jr.",
    "carriage\rreturn",
    'Zoë "Z"',
    "two\nlines",
    "cr\rlf\r\n",
    "tab\tback\\slash",
    "",
]
FIRST_NAMES += [" spaced ", "\\.", None]  # "\." alone is psql's end-of-data marker
INDUSTRIES = ["Software", "SaaS", "Retail", "Biotech"]
EMPLOYEES = [None, 0, 10, 50, 51, 999, 1000, 1001, 5000]
REVENUES = [None, 0, 999_999, 1_000_000, 10_000_000_000]


def _uuid(rng: random.Random) -> uuid.UUID:
    """A reproducible random uuid."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _contacts(count: int) -> list[Row]:
    """Contacts with repeated and missing values in every sortable field."""
    rng = random.Random(3)
    companies = [_uuid(rng) for _ in range(3)] + [None]
    return [
        {
            "uuid": _uuid(rng),
            "first_name": FIRST_NAMES[i % len(FIRST_NAMES)],
            "email": rng.choice([f"user{i}@example.com", None]),
            "title": rng.choice(TITLES),
            "company_id": rng.choice(companies),
            "country": rng.choice(COUNTRIES),
            "email_verified_at": rng.choice(TIMES),
        }
        for i in range(count)
    ]


def _companies(count: int) -> list[Row]:
    """Companies with repeated and missing values, and empty industry lists."""
    rng = random.Random(5)
    return [
        {
            "uuid": _uuid(rng),
            "name": rng.choice(["Acme", "acme", "Zeta", "Ärger GmbH"]),
            "industries": rng.sample(INDUSTRIES, rng.randint(0, 2)),
            "employees_count": rng.choice(EMPLOYEES),
            "annual_revenue": rng.choice(REVENUES),
            "country": rng.choice(COUNTRIES),
        }
        for _ in range(count)
    ]


CONTACTS = _contacts(60)
COMPANIES = _companies(60)
DATA = {CONTACT.name: CONTACTS, COMPANY.name: COMPANIES}


# --- loading --------------------------------------------------------------------------


async def insert_rows(pool: asyncpg.Pool, service: ServiceSchema, rows: Sequence[Row]) -> None:
    """Insert rows with plain SQL (the import job is not used here)."""
    names = list(rows[0])
    columns = ", ".join(names)
    placeholders = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    sql = f"INSERT INTO {service.table} ({columns}) VALUES ({placeholders})"
    await pool.executemany(sql, [[row[name] for name in names] for row in rows])


def es_document(row: Row) -> Row:
    """The JSON document of a row; NULLs are left out, as an indexer would."""
    document: Row = {}
    for name, value in row.items():
        if isinstance(value, uuid.UUID):
            document[name] = str(value)
        elif isinstance(value, datetime):
            document[name] = value.isoformat().replace("+00:00", "Z")
        elif value is not None:
            document[name] = value
    return document


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def search(es_url: EsEndpoint) -> AsyncIterator[AsyncElasticsearch]:
    """A client on an Elasticsearch holding the small data set of both services."""
    es = make_es_client(es_url.url, es_url.plain_media_types)
    try:
        for service in (CONTACT, COMPANY):
            index = await ensure_index(es, ES_PREFIX, service)
            actions = (
                {"_index": index, "_id": str(row["uuid"]), "_source": es_document(row)}
                for row in DATA[service.name]
            )
            await async_bulk(es, actions, refresh=True)
        yield es
        for service in (CONTACT, COMPANY):
            await es.indices.delete(index=index_name(ES_PREFIX, service))
    finally:
        await es.close()


LINGUISTIC_TEXT = """
ALTER TABLE contacts ALTER COLUMN country TYPE text COLLATE "und-x-icu",
                     ALTER COLUMN title TYPE text COLLATE "und-x-icu";
ALTER TABLE companies ALTER COLUMN name TYPE text COLLATE "und-x-icu",
                      ALTER COLUMN country TYPE text COLLATE "und-x-icu"
"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loaded(admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A database of this module's own holding the small data set of both services (read-only).

    Text columns get a linguistic collation ("de" next to "DE"), as a production database may
    have by default, so the export must impose byte order itself to agree with Elasticsearch.
    """
    name = f"connectra_export_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await create_pool(with_database(admin_dsn, name), max_size=4)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            if await pool.fetchval("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'"):
                await pool.execute(LINGUISTIC_TEXT)
            await insert_rows(pool, CONTACT, CONTACTS)
            await insert_rows(pool, COMPANY, COMPANIES)
            yield pool
        finally:
            await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


BULK_CONTACTS = """
INSERT INTO contacts (uuid, first_name, last_name, email, title, country, city, email_verified_at)
SELECT gen_random_uuid(), 'First ' || i, md5(i::text), 'user' || i || '@example.com',
       (ARRAY['CEO', 'CTO', 'Engineer'])[1 + i % 3], 'US', md5((i * 7)::text),
       timestamptz '2024-01-01' + i * interval '1.5 second'
FROM generate_series(1, $1) AS i
"""
BULK_COLUMNS = ["id", "first_name", "last_name", "email", "title", "country", "city"]
BULK_COLUMNS += ["email_verified_at"]


# --- running --------------------------------------------------------------------------


def export_settings(bucket: str | None) -> Settings:
    """Settings naming the test bucket, index prefix and an export folder with a trailing /."""
    values: dict[str, Any] = {
        "ELASTICSEARCH_INDEX_PREFIX": ES_PREFIX,
        "S3_UPLOAD_FILE_PATH_PRIFIX": "exports/",
    }
    if bucket is not None:
        values["S3_BUCKET"] = bucket
    return load_settings(**values)


async def export_context(
    pool: asyncpg.Pool,
    job_data: dict[str, Any],
    *,
    objects: ObjectStore,
    bucket: str | None,
    search: AsyncElasticsearch | None = None,
    progress: list[dict[str, Any]] | None = None,
) -> JobContext:
    """A context for one attempt of a new export job."""
    job = await JobStore(pool).create(NewJob(EXPORT_CSV_FILE.name, job_data))
    reports = progress if progress is not None else []

    async def report(update: dict[str, Any]) -> None:
        reports.append(update)

    return JobContext(
        job=job,
        attempt=1,
        settings=export_settings(bucket),
        log=BoundLogger(logging.getLogger(__name__), {}),
        services=Services(pool=pool, objects=objects, search=search),
        report_progress=report,
    )


async def run_export(
    pool: asyncpg.Pool,
    objects: ObjectStore,
    bucket: str,
    job_data: dict[str, Any],
    search: AsyncElasticsearch | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Run one export job to the end; its response and the CSV it wrote."""
    ctx = await export_context(pool, job_data, objects=objects, bucket=bucket, search=search)
    result = await EXPORT_CSV_FILE.run(ctx)
    assert result is not None
    return result, await read_object(objects, bucket, result["s3_key"])


async def both_sources(
    pool: asyncpg.Pool,
    objects: ObjectStore,
    bucket: str,
    search: AsyncElasticsearch,
    job_data: dict[str, Any],
) -> bytes:
    """The CSV of a job from PostgreSQL and from Elasticsearch, which must be the same."""
    pg_result, from_pg = await run_export(pool, objects, bucket, job_data)
    es_result, from_es = await run_export(pool, objects, bucket, job_data, search)
    assert (pg_result["source"], es_result["source"]) == ("postgres", "elasticsearch")
    assert from_pg.decode() == from_es.decode()
    return from_pg


async def pending_uploads(objects: ObjectStore, bucket: str) -> list[Any]:
    """Multipart uploads neither completed nor aborted."""
    response = await objects.client.list_multipart_uploads(Bucket=bucket)
    return list(response.get("Uploads", []))


async def has_pending_upload(objects: ObjectStore, bucket: str) -> bool:
    """Whether a multipart upload is under way."""
    return bool(await pending_uploads(objects, bucket))


# --- reference -------------------------------------------------------------------------


def expected_csv(service: ServiceSchema, vql: dict[str, Any], keep: Callable[[Row], bool]) -> bytes:
    """The CSV a plain reading of the query gives: kept rows in the query's order."""
    query = resolve_vql(parse_vql(vql), service)
    rows = [row for row in DATA[service.name] if keep(row)]
    ordered = sorted(rows, key=functools.cmp_to_key(functools.partial(_compare, query)))
    formatter = RowFormatter(query.columns)
    return formatter.header() + formatter.search_rows(ordered)


def _compare(query: Any, a: Row, b: Row) -> int:
    """Compare two rows by the query's sort keys, NULLs last, text by bytes, time by ms."""
    for key in query.sort_keys:
        x, y = _sortable(a.get(key.field.name)), _sortable(b.get(key.field.name))
        if x == y:
            continue
        if x is None or y is None:
            return 1 if x is None else -1
        order = -1 if x < y else 1
        return -order if key.descending else order
    return 0


def _sortable(value: Any) -> Any:
    """The value as both sources compare it."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, uuid.UUID):
        return value.bytes
    return value


def within(value: Any, low: Any = None, high: Any = None, *, strict: bool = False) -> bool:
    """A range test where NULL never matches."""
    if value is None:
        return False
    if isinstance(value, datetime):
        value = _sortable(value)
    above = low is None or (value > low if strict else value >= low)
    below = high is None or (value < high if strict else value <= high)
    return above and below


def ms(moment: datetime) -> str:
    """ISO 8601 with a Z."""
    return moment.isoformat().replace("+00:00", "Z")


T1 = BASE_TIME + timedelta(microseconds=123_000)
EMPLOYEE, EMPLOYER = next((r["uuid"], r["company_id"]) for r in CONTACTS if r["company_id"])
T1_MICROS = BASE_TIME + timedelta(microseconds=123_456)
CONTACT_CASES: list[tuple[str, dict[str, Any], Callable[[Row], bool]]] = [
    ("everything", {}, lambda r: True),
    (
        "must one value",
        {"where": {"keyword_match": {"must": {"country": "US"}}}},
        lambda r: r["country"] == "US",
    ),
    (
        "must several fields and values",
        {"where": {"keyword_match": {"must": {"country": ["DE", ""], "title": ["CEO", "CTO"]}}}},
        lambda r: r["country"] in ("DE", "") and r["title"] in ("CEO", "CTO"),
    ),
    (
        "must_not keeps NULLs",
        {"where": {"keyword_match": {"must_not": {"country": ["US", "de"]}}}},
        lambda r: r["country"] not in ("US", "de"),
    ),
    (
        "must and must_not on uuids",
        {
            "where": {
                "keyword_match": {
                    "must": {"company_id": [str(EMPLOYER).upper(), str(uuid.UUID(int=0))]},
                    "must_not": {"id": [str(EMPLOYEE)]},
                }
            }
        },
        lambda r: r["company_id"] == EMPLOYER and r["uuid"] != EMPLOYEE,
    ),
    (
        "timestamp gte and lt",
        {
            "where": {
                "range_query": {"must": {"email_verified_at": {"gte": ms(T1), "lt": "2024-03-02"}}}
            }
        },
        lambda r: (
            within(r["email_verified_at"], T1)
            and within(r["email_verified_at"], high=BASE_TIME + timedelta(days=1), strict=True)
        ),
    ),
    (
        "timestamp gt at microsecond precision compares milliseconds",
        {"where": {"range_query": {"must": {"email_verified_at": {"gt": ms(T1_MICROS)}}}}},
        lambda r: within(r["email_verified_at"], T1, strict=True),
    ),
    (
        "timestamp lte with an offset",
        {
            "where": {
                "range_query": {
                    "must": {"email_verified_at": {"lte": "2024-03-01T14:00:00.123+02:00"}}
                }
            }
        },
        lambda r: within(r["email_verified_at"], high=T1),
    ),
    (
        "timestamp range must_not keeps NULLs",
        {
            "where": {
                "range_query": {
                    "must_not": {"email_verified_at": {"gte": ms(BASE_TIME), "lte": ms(T1)}}
                }
            }
        },
        lambda r: not within(r["email_verified_at"], BASE_TIME, T1),
    ),
    (
        "order by text desc then timestamp asc",
        {
            "order_by": [
                {"order_by": "country", "order_direction": "desc"},
                {"order_by": "email_verified_at"},
            ]
        },
        lambda r: True,
    ),
    (
        "order by timestamp desc, title asc, uuid desc",
        {
            "order_by": [
                {"order_by": "email_verified_at", "order_direction": "desc"},
                {"order_by": "title"},
                {"order_by": "id", "order_direction": "desc"},
            ]
        },
        lambda r: True,
    ),
    (
        "filter and order by uuid-typed company_id",
        {
            "where": {"keyword_match": {"must_not": {"title": "engineer"}}},
            "order_by": [{"order_by": "company_id", "order_direction": "desc"}],
        },
        lambda r: r["title"] != "engineer",
    ),
    (
        "one column with empty cells",
        {"select_columns": ["first_name"], "order_by": [{"order_by": "first_name"}]},
        lambda r: True,
    ),
    (
        "no match is a header-only file",
        {"where": {"keyword_match": {"must": {"country": "Atlantis"}}}},
        lambda r: False,
    ),
]
COMPANY_CASES: list[tuple[str, dict[str, Any], Callable[[Row], bool]]] = [
    (
        "text[] overlap",
        {"where": {"keyword_match": {"must": {"industries": ["Software", "SaaS"]}}}},
        lambda r: bool({"Software", "SaaS"} & set(r["industries"])),
    ),
    (
        "text[] must_not keeps empty lists",
        {"where": {"keyword_match": {"must_not": {"industries": "Retail"}}}},
        lambda r: "Retail" not in r["industries"],
    ),
    (
        "integer gte and lte, bigint gte",
        {
            "where": {
                "range_query": {
                    "must": {
                        "employees_count": {"gte": 50, "lte": 1000},
                        "annual_revenue": {"gte": 1_000_000},
                    }
                }
            }
        },
        lambda r: within(r["employees_count"], 50, 1000) and within(r["annual_revenue"], 1_000_000),
    ),
    (
        "integer gt and lt",
        {"where": {"range_query": {"must": {"employees_count": {"gt": 50, "lt": 1000}}}}},
        lambda r: within(r["employees_count"], 50, 1000, strict=True),
    ),
    (
        "integer range must_not and integer keyword",
        {
            "where": {
                "range_query": {"must_not": {"employees_count": {"lt": 51}}},
                "keyword_match": {"must_not": {"annual_revenue": [0, 999_999]}},
            }
        },
        lambda r: (
            not within(r["employees_count"], high=51, strict=True)
            and r["annual_revenue"] not in (0, 999_999)
        ),
    ),
    (
        "order by integer desc then name asc",
        {
            "order_by": [
                {"order_by": "employees_count", "order_direction": "desc"},
                {"order_by": "name", "order_direction": "asc"},
            ]
        },
        lambda r: True,
    ),
]
ALL_CASES = [(CONTACT, *case) for case in CONTACT_CASES] + [
    (COMPANY, *case) for case in COMPANY_CASES
]
SELECTS = {
    CONTACT.name: [
        *("id", "first_name", "email", "title", "company_id", "country", "email_verified_at")
    ],
    COMPANY.name: ["name", "industries", "employees_count", "annual_revenue", "country", "uuid"],
}


# --- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "vql_part", "keep"),
    [c[:1] + c[2:] for c in ALL_CASES],
    ids=[c[1] for c in ALL_CASES],
)
async def test_every_clause_gives_the_same_csv_from_postgres_and_elasticsearch(
    loaded: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    search: AsyncElasticsearch,
    service: ServiceSchema,
    vql_part: dict[str, Any],
    keep: Callable[[Row], bool],
) -> None:
    vql = {"select_columns": SELECTS[service.name], "limit": 7, **vql_part}
    job_data = {"service": service.name, "vql": vql}
    csv = await both_sources(loaded, object_store, s3_bucket, search, job_data)
    assert csv.decode() == expected_csv(service, vql, keep).decode()


@pytest.mark.parametrize("service", [CONTACT, COMPANY], ids=lambda s: s.name)
async def test_pages_of_1_3_7_and_one_big_page_give_the_same_bytes_from_both_sources(
    loaded: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    search: AsyncElasticsearch,
    service: ServiceSchema,
) -> None:
    order = [{"order_by": "country", "order_direction": "desc"}]
    order += [{"order_by": "email_verified_at" if service is CONTACT else "employees_count"}]
    outputs = set()
    for limit in (1, 3, 7, 10_000):
        vql = {"select_columns": SELECTS[service.name], "order_by": order, "limit": limit}
        outputs.add(
            await both_sources(
                loaded, object_store, s3_bucket, search, {"service": service.name, "vql": vql}
            )
        )
    assert len(outputs) == 1
    assert outputs.pop().count(b"\n") > len(DATA[service.name])  # a quoted newline adds one


KEYSET_ORDERS = [
    ([("country", False)], 'country COLLATE "C" ASC NULLS LAST, uuid'),
    ([("country", True)], 'country COLLATE "C" DESC NULLS LAST, uuid'),
    (
        [("title", True), ("country", False)],
        'title COLLATE "C" DESC NULLS LAST, country COLLATE "C" NULLS LAST, uuid',
    ),
    (
        [("email_verified_at", False), ("title", True)],
        "date_trunc('milliseconds', email_verified_at) NULLS LAST, "
        'title COLLATE "C" DESC NULLS LAST, uuid',
    ),
    (
        [("company_id", True), ("email_verified_at", True), ("country", False)],
        "company_id DESC NULLS LAST, "
        "date_trunc('milliseconds', email_verified_at) DESC NULLS LAST, "
        'country COLLATE "C" NULLS LAST, uuid',
    ),
    ([("id", True)], "uuid DESC"),
]


class Collected:
    """What a source hands its sink: the bytes, and the row counts of completed ranges."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ranges: list[int] = []

    async def sink(self, data: bytes | bytearray, rows: int) -> None:
        self.data += data
        if rows or not data:
            self.ranges.append(rows)


async def test_ranges_of_every_size_equal_one_unpaged_order_by(loaded: asyncpg.Pool) -> None:
    for keys, reference_order in KEYSET_ORDERS:
        reference = [
            r["uuid"]
            for r in await loaded.fetch(
                f"SELECT uuid::text FROM contacts ORDER BY {reference_order}"
            )
        ]
        order = [
            {"order_by": name, "order_direction": "desc" if desc else "asc"} for name, desc in keys
        ]
        vql = parse_vql({"select_columns": ["id"], "order_by": order})
        query = resolve_vql(vql, CONTACT)
        for size in range(1, len(CONTACTS) + 2):
            collected = Collected()
            await copy_export(loaded, query, collected.sink, range_rows_max=size, max_ranges=10**9)
            assert collected.data.decode().splitlines() == reference, (reference_order, size)
            full, last = divmod(len(CONTACTS), size)
            assert collected.ranges == [size] * full + [last], (reference_order, size)


class RecordingPool:
    """A pool that notes the statements run through its fetch methods."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.acquire = pool.acquire
        self.statements: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append(sql)
        return await self.pool.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self.statements.append(sql)
        return await self.pool.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return await self.pool.fetchval(sql, *args)


async def test_an_order_no_index_serves_is_sorted_once_and_cut_into_at_most_max_ranges(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(BULK_CONTACTS, 1000)
    await pool.execute("ANALYZE contacts")  # the planner's estimate sizes the ranges
    reference = [
        r["city"] for r in await pool.fetch('SELECT city FROM contacts ORDER BY city COLLATE "C"')
    ]
    vql = parse_vql({"select_columns": ["city"], "order_by": [{"order_by": "city"}]})
    query = resolve_vql(vql, CONTACT)
    recording = RecordingPool(pool)
    collected = Collected()
    await copy_export(recording, query, collected.sink, range_rows_max=10, max_ranges=4)  # type: ignore[arg-type]
    assert collected.data.decode().splitlines() == reference
    # Ranges of 250 rows, not 10: four ranges and the empty one after the last end.
    assert collected.ranges == [250, 250, 250, 250, 0]
    assert sum("row_number()" in sql for sql in recording.statements) == 1


async def test_rows_present_throughout_are_written_once_while_others_change(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(BULK_CONTACTS, 1000)
    before = {r["uuid"] for r in await pool.fetch("SELECT uuid::text FROM contacts")}
    deleted: set[str] = set()
    query = resolve_vql(parse_vql({"select_columns": ["id"]}), CONTACT)
    collected = Collected()

    async def changing_sink(data: bytes | bytearray, rows: int) -> None:
        await collected.sink(data, rows)
        if rows:  # between ranges: rows appear everywhere, and some not yet written go
            await pool.execute(BULK_CONTACTS, 50)
            gone = await pool.fetch(
                "DELETE FROM contacts WHERE uuid IN"
                " (SELECT uuid FROM contacts ORDER BY random() LIMIT 20) RETURNING uuid::text"
            )
            deleted.update(r["uuid"] for r in gone)

    await copy_export(pool, query, changing_sink, range_rows_max=97)
    written = collected.data.decode().splitlines()
    assert len(written) == len(set(written))
    assert written == sorted(written)
    assert before - deleted <= set(written)
    assert len(collected.ranges) > 10


EDGE_TEXTS = [None, "", " ", " lead", "trail ", "a,b", 'q"q', '"', '""', "\r", "\n", "\r\n"]
EDGE_TEXTS += ["\\.", "\\", ".", "\\.\n", "x\n\\.", '\n"\\."\n', '"\\."', "Ünï", "\t", "\\N"]
EDGE_ARRAYS = [[], [""], ["", ""], ["a", None, "b"], [None], ["\\."], ["a,b", 'c"d'], ["x\ny"]]
EDGE_ARRAYS += [["a;b", "c"], ["[x]"], ['q"u;o\\te\t\x01', None, "Ünï"], [";"], ["", "["]]
# Not datetime.min: asyncpg stores it as -infinity.
EDGE_TIMES = [None, datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)]
EDGE_TIMES += [BASE_TIME + timedelta(microseconds=m) for m in (1, 500_000, 999_999)]
EDGE_TIMES += [datetime(2024, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))]


async def copied(pool: asyncpg.Pool, service: ServiceSchema, names: list[str]) -> bytes:
    """The CSV the PostgreSQL source writes for these columns, in uuid order."""
    query = resolve_vql(parse_vql({"select_columns": names}), service)
    collected = Collected()
    await copy_export(pool, query, collected.sink, range_rows_max=4)
    return bytes(collected.data)


async def formatted(pool: asyncpg.Pool, service: ServiceSchema, names: list[str]) -> bytes:
    """The same rows formatted in Python by exporting/cells.py, as Elasticsearch documents are."""
    query = resolve_vql(parse_vql({"select_columns": names}), service)
    rows = await pool.fetch(f"SELECT * FROM {service.table} ORDER BY uuid")
    return RowFormatter(query.columns).search_rows([dict(row) for row in rows])


async def test_copy_writes_the_bytes_python_cells_write_for_edge_values(pool: asyncpg.Pool) -> None:
    rng = random.Random(11)
    contacts = [
        {"uuid": _uuid(rng), "first_name": text, "email_verified_at": EDGE_TIMES[i % 7]}
        for i, text in enumerate(EDGE_TEXTS)
    ]
    companies = [
        {"uuid": _uuid(rng), "name": "n", "industries": industries, "employees_count": count}
        for industries, count in zip(EDGE_ARRAYS, cycle([None, 0, 2**31 - 1]), strict=False)
    ]
    await insert_rows(pool, CONTACT, contacts)
    await insert_rows(pool, COMPANY, companies)
    await pool.execute(
        "UPDATE companies SET annual_revenue = $1 WHERE employees_count = 0", 2**63 - 1
    )
    selections = [
        (CONTACT, ["id", "first_name", "email_verified_at"]),
        (CONTACT, ["first_name"]),
        (CONTACT, ["email_verified_at"]),
        (CONTACT, ["company_id"]),
        (COMPANY, ["industries", "employees_count", "annual_revenue"]),
        (COMPANY, ["industries"]),
        (COMPANY, ["employees_count"]),
    ]
    for service, names in selections:
        from_copy = await copied(pool, service, names)
        assert from_copy == await formatted(pool, service, names), names
    assert b"\n\\.\n" in await copied(pool, CONTACT, ["first_name"])  # "\." written bare
    assert b'\n""\n' in await copied(pool, CONTACT, ["first_name"])  # an empty row is ""


async def test_a_large_export_streams_in_several_multipart_parts(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    rows = 150_000
    await pool.execute(BULK_CONTACTS, rows)
    progress: list[dict[str, Any]] = []
    job_data = {"service": "contact", "vql": {"select_columns": BULK_COLUMNS, "limit": 5000}}
    ctx = await export_context(
        pool, job_data, objects=object_store, bucket=s3_bucket, progress=progress
    )
    result = await EXPORT_CSV_FILE.run(ctx)
    assert result == {
        "messages": f"exported {rows} rows",
        "s3_key": f"exports/{ctx.job.uuid}.csv",
        "s3_bucket": s3_bucket,
        "number_records_processed": rows,
        "source": "postgres",
    }
    head = await object_store.client.head_object(Bucket=s3_bucket, Key=result["s3_key"])
    assert head["ContentLength"] > 2 * 8 * MIB
    assert int(head["ETag"].strip('"').rsplit("-", 1)[1]) >= 3
    assert progress[-1] == {"number_records_processed": rows}
    lines = (await read_object(object_store, s3_bucket, result["s3_key"])).decode().splitlines()
    assert lines[0] == ",".join(BULK_COLUMNS)
    assert len(lines) == rows + 1
    uuids = [line[:36] for line in lines[1:]]
    assert uuids == sorted(uuids)
    assert len(set(uuids)) == rows
    assert lines[1].endswith("Z")


@pytest.mark.parametrize("direction", ["asc", "desc"])
async def test_uuid_order_range_ends_walk_the_primary_key_and_ranges_use_it_for_both_bounds(
    pool: asyncpg.Pool, direction: str
) -> None:
    await pool.execute(BULK_CONTACTS, 20_000)
    await pool.execute("ANALYZE contacts")
    order = [{"order_by": "id", "order_direction": direction}]
    vql = parse_vql({"select_columns": BULK_COLUMNS, "order_by": order})
    query = resolve_vql(vql, CONTACT)
    start, end = [uuid.UUID(int=2**127)], [uuid.UUID(int=2**127 + 2**121)]  # ~1/64 of rows
    if direction == "desc":
        start, end = end, start
    sql, args = range_end(query, start, 5000)
    plan = "\n".join(row[0] for row in await pool.fetch("EXPLAIN " + sql, *args))
    assert "contacts_pkey" in plan
    assert "Sort" not in plan
    sql, args = range_rows(query, start, end)
    plan = "\n".join(row[0] for row in await pool.fetch("EXPLAIN " + sql, *args))
    assert "Seq Scan" not in plan  # (a large range may rather be read in heap order and sorted)
    assert "Index Cond: ((uuid " in plan
    assert " AND (uuid " in plan  # both bounds in the index condition


async def test_cancelling_an_export_midway_leaves_no_object_and_no_pending_upload(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await pool.execute(BULK_CONTACTS, 100_000)
    job_data = {"service": "contact", "vql": {"select_columns": BULK_COLUMNS, "limit": 2000}}
    ctx = await export_context(pool, job_data, objects=object_store, bucket=s3_bucket)
    task = asyncio.create_task(EXPORT_CSV_FILE.run(ctx))
    while not await pending_uploads(object_store, s3_bucket):
        assert not task.done()
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending_uploads(object_store, s3_bucket) == []
    assert await bucket_keys(object_store, s3_bucket) == []


async def test_an_export_aborts_the_upload_an_earlier_attempt_left_and_records_its_own_first(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await pool.execute(BULK_CONTACTS, 100_000)
    job_data = {"service": "contact", "vql": {"select_columns": BULK_COLUMNS, "limit": 2000}}
    ctx = await export_context(pool, job_data, objects=object_store, bucket=s3_bucket)
    key = f"exports/{ctx.job.uuid}.csv"
    left = await object_store.client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    await object_store.client.upload_part(
        Bucket=s3_bucket, Key=key, UploadId=left["UploadId"], PartNumber=1, Body=b"x" * MIB
    )
    checkpoint = OpenUpload(s3_bucket, key, left["UploadId"]).to_checkpoint()
    ctx.job = dataclasses.replace(ctx.job, checkpoint=checkpoint)
    saved: list[tuple[OpenUpload | None, int]] = []

    async def save(checkpoint: dict[str, Any]) -> None:
        upload = OpenUpload.from_checkpoint(checkpoint)
        assert upload is not None
        parts = await object_store.client.list_parts(
            Bucket=s3_bucket, Key=key, UploadId=upload.upload_id
        )
        saved.append((upload, len(parts.get("Parts", []))))

    ctx.save_checkpoint = save
    result = await EXPORT_CSV_FILE.run(ctx)

    assert result is not None
    assert result["number_records_processed"] == 100_000
    [(upload, parts_sent)] = saved
    assert upload is not None
    assert (upload.bucket, upload.key, parts_sent) == (s3_bucket, key, 0)
    assert upload.upload_id != left["UploadId"]
    assert await pending_uploads(object_store, s3_bucket) == []
    assert await bucket_keys(object_store, s3_bucket) == [key]


async def test_a_failure_midway_leaves_no_object_and_no_pending_upload(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    async def failing_source(sink: Sink) -> None:
        await sink(b"x" * (9 * MIB), 1)
        await eventually(lambda: has_pending_upload(object_store, s3_bucket))
        raise RuntimeError("the source broke")

    async def ignore(update: dict[str, Any]) -> None:
        pass

    with pytest.raises(RuntimeError, match="source broke"):
        await write_export(object_store, s3_bucket, "exports/x.csv", b"h\n", failing_source, ignore)
    assert await pending_uploads(object_store, s3_bucket) == []
    assert await bucket_keys(object_store, s3_bucket) == []


async def test_no_match_writes_a_header_only_file(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    vql = {
        "select_columns": ["id", "email"],
        "where": {"keyword_match": {"must": {"country": "XX"}}},
    }
    result, csv = await run_export(
        pool, object_store, s3_bucket, {"service": "contact", "vql": vql}
    )
    assert csv == b"id,email\n"
    assert result["number_records_processed"] == 0


async def test_an_unknown_field_fails_the_job_with_its_code_and_writes_nothing(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    job_data = {"service": "contact", "vql": {"select_columns": ["email", "salary"]}}
    ctx = await export_context(pool, job_data, objects=object_store, bucket=s3_bucket)
    with pytest.raises(UnknownFieldError) as caught:
        await EXPORT_CSV_FILE.run(ctx)
    assert caught.value.code == "ERR_UNKNOWN_FIELD"
    assert await bucket_keys(object_store, s3_bucket) == []


async def test_the_job_bucket_wins_and_no_bucket_at_all_is_an_error(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    job_data = {"service": "company", "vql": {"select_columns": ["name"]}, "s3_bucket": s3_bucket}
    ctx = await export_context(pool, job_data, objects=object_store, bucket=None)
    # A bucket other than S3_BUCKET must be listed in S3_ALLOWED_BUCKETS (test_bucket_allow_list).
    ctx.settings = ctx.settings.model_copy(update={"s3_allowed_buckets": (s3_bucket,)})
    result = await EXPORT_CSV_FILE.run(ctx)
    assert result is not None
    assert result["s3_bucket"] == s3_bucket
    ctx = await export_context(
        pool,
        {"service": "company", "vql": {"select_columns": ["name"]}},
        objects=object_store,
        bucket=None,
    )
    with pytest.raises(BucketNotConfiguredError) as caught:
        await EXPORT_CSV_FILE.run(ctx)
    assert caught.value.code == "ERR_S3_BUCKET_NOT_CONFIGURED"


async def test_a_missing_index_is_a_clear_error(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
    search: AsyncElasticsearch,
) -> None:
    job_data = {"service": "contact", "vql": {"select_columns": ["email"]}}
    ctx = await export_context(
        pool, job_data, objects=object_store, bucket=s3_bucket, search=search
    )
    ctx.settings = ctx.settings.model_copy(update={"elasticsearch_index_prefix": "missing_"})
    with pytest.raises(SearchIndexNotFoundError):
        await EXPORT_CSV_FILE.run(ctx)
    assert await bucket_keys(object_store, s3_bucket) == []


@pytest.mark.parametrize(
    ("vql", "code"),
    [
        ({"where": {}}, "ERR_MISSING_SELECT_COLUMNS"),
        ({"select_columns": ["salary"]}, "ERR_UNKNOWN_FIELD"),
        (
            {
                "select_columns": ["email"],
                "order_by": [{"order_by": "email", "order_direction": "up"}],
            },
            "ERR_INVALID_VQL",
        ),
    ],
)
async def test_the_create_endpoint_answers_400_with_the_vql_error_code(
    store: JobStore, vql: dict[str, Any], code: str
) -> None:
    registry = JobTypeRegistry([NOOP, EXPORT_CSV_FILE])
    app = create_app(store, registry, load_settings(API_KEYS="k1"))
    body = {"job_type": "export_csv_file", "job_data": {"service": "contact", "vql": vql}}
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/common/jobs/create", json=body, headers={"X-API-Key": "k1"})
        payload = await response.json()
    assert response.status == 400
    assert payload["error"].startswith(f"{code}: ")
    if code == "ERR_MISSING_SELECT_COLUMNS":
        assert payload["error"] == (
            "ERR_MISSING_SELECT_COLUMNS: 'select_columns' is required for export operations; "
            "specify at least one column to include in the output"
        )


def test_the_cell_formats_cover_every_field_type() -> None:
    assert {f.type for s in (CONTACT, COMPANY) for f in s.fields} == set(FieldType)
