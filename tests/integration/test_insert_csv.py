"""The insert_csv_file job against real PostgreSQL, moto S3 and osmem Elasticsearch."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import logging
import tracemalloc
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from elasticsearch import AsyncElasticsearch

from connectra.catalog import CONTACT
from connectra.db.store import JobStore
from connectra.errors import (
    BucketNotConfiguredError,
    BucketNotFound,
    DuplicateColumnsError,
    EmptyFileError,
    HeaderError,
    InvalidJobDataError,
    MissingColumnsError,
    ObjectNotFound,
    SearchBulkError,
)
from connectra.jobs import FIRST_TIME, Job, NewJob
from connectra.logs import BoundLogger
from connectra.objectstore import ObjectStat, ObjectStore
from connectra.processors.base import JobContext, Services
from connectra.processors.importing import job_type as insert_csv
from connectra.processors.importing import sinks
from connectra.processors.importing.job_type import INSERT_CSV_FILE
from connectra.processors.importing.reader import CsvRecordReader
from connectra.processors.importing.sinks import PostgresSink
from connectra.processors.registry import default_registry
from connectra.runners.runner import Runner, RunnerConfig, Stopping
from connectra.settings import load_settings
from tests.polling import eventually
from tests.services import bucket_keys, read_object

CONTACT_HEADER = (
    "uuid,first_name,last_name,email,title,seniority,department,company_id,phone,"
    "country,state,city,linkedin_url,email_verified_at"
)
COMPANY_HEADER = (
    "uuid,name,website,industries,employees_count,annual_revenue,founded_year,"
    "country,state,city,phone,linkedin_url"
)


def uid(i: int) -> str:
    """A deterministic uuid for row `i`."""
    return str(uuid.UUID(int=i + 1))


def contact_line(i: int, **overrides: str) -> str:
    """One contact CSV line in CONTACT_HEADER's column order."""
    values = {
        "uuid": uid(i),
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "email": f"user{i}@example.com",
        "title": ["Engineer", "Manager", "CTO"][i % 3],
        "seniority": ["junior", "senior"][i % 2],
        "department": "engineering",
        "company_id": uid(10_000 + i % 4),
        "phone": "",
        "country": ["US", "DE"][i % 2],
        "state": "",
        "city": f"City{i % 5}",
        "linkedin_url": "",
        "email_verified_at": f"2024-01-{1 + i % 28:02d}T10:00:00Z" if i % 2 else "",
    } | overrides
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values.values())
    return buffer.getvalue()


def contacts_csv(count: int, start: int = 0) -> str:
    """A contacts file with `count` good rows."""
    return "\n".join([CONTACT_HEADER, *(contact_line(i) for i in range(start, start + count))])


@dataclass
class Env:
    """What an import test talks to."""

    pool: asyncpg.Pool
    objects: ObjectStore
    bucket: str
    search: AsyncElasticsearch | None = None
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}_")

    async def put(self, key: str, data: str | bytes) -> None:
        """Upload a source file."""
        await self.objects.put_bytes(
            self.bucket, key, data if isinstance(data, bytes) else data.encode()
        )

    async def run(
        self,
        data: dict[str, Any],
        *,
        batch_size: int = 500,
        max_errors: int = 100,
        default_bucket: str | None = None,
        progress: list[dict[str, Any]] | None = None,
        parallel_jobs: int = 4,
    ) -> dict[str, Any]:
        """Run the job's handler on a real job row; its result."""
        job = await JobStore(self.pool).create(NewJob("insert_csv_file", data))
        settings = load_settings(
            BATCH_SIZE_FOR_INSERTION=batch_size,
            IMPORT_MAX_REPORTED_ERRORS=max_errors,
            ELASTICSEARCH_INDEX_PREFIX=self.prefix,
            S3_BUCKET=default_bucket,
            # The bucket a job names is allowed here; test_bucket_allow_list tests the list.
            S3_ALLOWED_BUCKETS=data.get("s3_bucket"),
            PARALLEL_JOBS=parallel_jobs,
        )
        calls = progress if progress is not None else []

        async def report(values: dict[str, Any]) -> None:
            calls.append(dict(values))

        ctx = JobContext(
            job=job,
            attempt=1,
            settings=settings,
            log=BoundLogger(logging.getLogger("test"), {}),
            services=Services(pool=self.pool, objects=self.objects, search=self.search),
            report_progress=report,
        )
        result = await INSERT_CSV_FILE.run(ctx)
        assert result is not None
        return result

    async def failed_rows(self, key: str) -> list[list[str]]:
        """The failed-rows CSV at `key`, parsed."""
        data = await read_object(self.objects, self.bucket, key)
        reader = CsvRecordReader()  # the project's reader: no 128 KiB field limit
        records = reader.feed(data) + reader.finish()
        assert not any(record.is_bad for record in records)
        return [record.fields for record in records]

    async def keys(self) -> list[str]:
        """Every key in the bucket."""
        return await bucket_keys(self.objects, self.bucket)


@pytest.fixture
async def env(
    pool: asyncpg.Pool,
    object_store: ObjectStore,
    s3_bucket: str,
) -> Env:
    """Postgres, S3 and no Elasticsearch."""
    return Env(pool, object_store, s3_bucket)


@pytest.fixture
async def es_env(env: Env, es_client: AsyncElasticsearch) -> AsyncIterator[Env]:
    """The same with Elasticsearch; the test's indices are deleted afterwards."""
    env.search = es_client
    yield env
    for name in ("contacts", "companies"):
        await es_client.options(ignore_status=404).indices.delete(index=env.prefix + name)


async def contacts(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    """Every contact row by uuid."""
    rows = await pool.fetch("SELECT *, xmin::text AS version FROM contacts")
    return {str(row["uuid"]): row for row in rows}


async def filter_values(pool: asyncpg.Pool, service: str) -> set[tuple[str, str]]:
    """The (field, value) pairs of a service in filter_values."""
    rows = await pool.fetch("SELECT field, value FROM filter_values WHERE service = $1", service)
    return {(row["field"], row["value"]) for row in rows}


# -- a clean import --------------------------------------------------------------------------


async def test_import_agrees_in_postgres_elasticsearch_and_filter_values(es_env: Env) -> None:
    await es_env.put("in/contacts.csv", contacts_csv(30))
    result = await es_env.run({"s3_key": "in/contacts.csv", "s3_bucket": es_env.bucket})

    assert result == {
        "messages": "imported 30 rows, 0 failed",
        "number_records_processed": 30,
        "number_records_failed": 0,
        "runtime_errors": [],
        "runtime_errors_total": 0,
        "failed_rows_s3_key": None,
        "ignored_columns": [],
        "s3_key": "in/contacts.csv",
        "s3_bucket": es_env.bucket,
        "service": "contact",
    }
    rows = await contacts(es_env.pool)
    assert sorted(rows) == sorted(uid(i) for i in range(30))
    first, second = rows[uid(0)], rows[uid(1)]
    assert (first["first_name"], first["email"], first["title"]) == (
        "First0",
        "user0@example.com",
        "Engineer",
    )
    assert first["phone"] is None
    assert first["email_verified_at"] is None
    assert second["email_verified_at"] == datetime(2024, 1, 2, 10, tzinfo=UTC)
    assert str(second["company_id"]) == uid(10_001)

    es = es_env.search
    assert es is not None
    index = f"{es_env.prefix}contacts"
    assert (await es.count(index=index))["count"] == 30
    for i in (0, 1, 29):
        doc = (await es.get(index=index, id=uid(i)))["_source"]
        assert doc["uuid"] == uid(i)
        assert doc["first_name"] == f"First{i}"
        assert doc["city"] == f"City{i % 5}"
        assert doc["phone"] is None
    doc = (await es.get(index=index, id=uid(1)))["_source"]
    assert datetime.fromisoformat(doc["email_verified_at"]) == datetime(2024, 1, 2, 10, tzinfo=UTC)

    expected = (
        {("title", t) for t in ("Engineer", "Manager", "CTO")}
        | {("seniority", "junior"), ("seniority", "senior"), ("department", "engineering")}
        | {("country", "US"), ("country", "DE")}
        | {("city", f"City{i}") for i in range(5)}
    )
    assert await filter_values(es_env.pool, "contact") == expected


async def test_a_second_run_of_the_same_file_changes_nothing(es_env: Env) -> None:
    await es_env.put("in/c.csv", contacts_csv(20))
    data = {"s3_key": "in/c.csv", "s3_bucket": es_env.bucket}
    await es_env.run(data, batch_size=6)
    before = await contacts(es_env.pool)
    filters_before = await filter_values(es_env.pool, "contact")

    result = await es_env.run(data, batch_size=6)

    after = await contacts(es_env.pool)
    assert result["number_records_processed"] == 20
    assert after == before  # same values, same updated_at, same row version (xmin): no UPDATE
    assert await filter_values(es_env.pool, "contact") == filters_before
    assert es_env.search is not None
    assert (await es_env.search.count(index=f"{es_env.prefix}contacts"))["count"] == 20


async def test_a_changed_row_alone_gets_a_new_updated_at(env: Env) -> None:
    await env.put("in/c.csv", contacts_csv(5))
    await env.run({"s3_key": "in/c.csv", "s3_bucket": env.bucket})
    before = await contacts(env.pool)
    changed = "\n".join(
        [CONTACT_HEADER, *(contact_line(i) for i in range(4)), contact_line(4, title="CEO")]
    )
    await env.put("in/c.csv", changed)

    await env.run({"s3_key": "in/c.csv", "s3_bucket": env.bucket})

    after = await contacts(env.pool)
    assert after[uid(4)]["title"] == "CEO"
    assert after[uid(4)]["updated_at"] > before[uid(4)]["updated_at"]
    assert after[uid(4)]["created_at"] == before[uid(4)]["created_at"]
    assert all(after[uid(i)] == before[uid(i)] for i in range(4))


async def test_a_file_without_some_columns_leaves_them_untouched(es_env: Env) -> None:
    await es_env.put("in/full.csv", contacts_csv(3))
    await es_env.run({"s3_key": "in/full.csv", "s3_bucket": es_env.bucket})
    await es_env.put("in/part.csv", f"id,title\n{uid(0)},Chief\n{uid(7)},Intern\n")

    result = await es_env.run({"s3_key": "in/part.csv", "s3_bucket": es_env.bucket})

    assert result["number_records_processed"] == 2
    rows = await contacts(es_env.pool)
    assert (rows[uid(0)]["title"], rows[uid(0)]["first_name"]) == ("Chief", "First0")
    assert (rows[uid(7)]["title"], rows[uid(7)]["first_name"]) == ("Intern", None)
    assert es_env.search is not None
    doc = (await es_env.search.get(index=f"{es_env.prefix}contacts", id=uid(0)))["_source"]
    assert (doc["title"], doc["first_name"]) == ("Chief", "First0")


async def test_companies_take_arrays_counts_and_check_constraints(es_env: Env) -> None:
    lines = [
        COMPANY_HEADER,
        f'{uid(1)},Acme,acme.io,"[""Software"", "" SaaS "", """"]",10,1000,1999,US,CA,SF,,',
        f"{uid(2)},Beta,,Software; Retail ;,0,,2001,DE,,Berlin,,",
        f"{uid(3)},Gamma,,,,,,,,,,",
        f"{uid(4)},Bad count,,,-1,,,,,,,",
        f"{uid(5)},Bad year,,,,,999,,,,,",
        f"{uid(6)},,,,,,,,,,,",
        f'{uid(7)},Bad array,,"[1, 2]",,,,,,,,',
        f"{uid(8)},Too big,,,,99999999999999999999,,,,,,",
    ]
    await es_env.put("in/companies.csv", "\n".join(lines))

    result = await es_env.run(
        {"s3_key": "in/companies.csv", "s3_bucket": es_env.bucket, "service": "company"}
    )

    assert (result["number_records_processed"], result["number_records_failed"]) == (3, 5)
    assert result["runtime_errors"] == [
        "line 5: column employees_count: -1 is out of range (0 to 2147483647)",
        "line 6: column founded_year: 999 is out of range (1000 to 3000)",
        "line 7: column name: a value is required",
        "line 8: column industries: a JSON array must hold only strings: '[1, 2]'",
        "line 9: column annual_revenue: 99999999999999999999 is out of range "
        "(0 to 9223372036854775807)",
    ]
    rows = {str(r["uuid"]): r for r in await es_env.pool.fetch("SELECT * FROM companies")}
    assert rows[uid(1)]["industries"] == ["Software", "SaaS"]
    assert rows[uid(2)]["industries"] == ["Software", "Retail"]
    assert rows[uid(3)]["industries"] == []  # empty means the empty array (NOT NULL column)
    assert (rows[uid(1)]["employees_count"], rows[uid(1)]["annual_revenue"]) == (10, 1000)
    assert await filter_values(es_env.pool, "company") == {
        ("industries", "Software"),
        ("industries", "SaaS"),
        ("industries", "Retail"),
        ("country", "US"),
        ("country", "DE"),
        ("state", "CA"),
        ("city", "SF"),
        ("city", "Berlin"),
    }
    assert es_env.search is not None
    doc = (await es_env.search.get(index=f"{es_env.prefix}companies", id=uid(1)))["_source"]
    assert doc["industries"] == ["Software", "SaaS"]


# -- malformed input: the good rows all land, the bad rows all reach the failed-rows file ----


async def test_an_unbalanced_quote_swallows_the_rest_into_one_bad_row(env: Env) -> None:
    lines = [CONTACT_HEADER, contact_line(0), contact_line(1, first_name='"Open'), contact_line(2)]
    source = "\n".join(lines).replace('"""Open"', '"Open')
    await env.put("in/q.csv", source)

    result = await env.run({"s3_key": "in/q.csv", "s3_bucket": env.bucket})

    assert (result["number_records_processed"], result["number_records_failed"]) == (1, 1)
    assert result["runtime_errors"] == ["line 3: unterminated quoted field"]
    assert result["failed_rows_s3_key"] == "in/q.failed.csv"
    failed = await env.failed_rows("in/q.failed.csv")
    assert failed[0] == ["line", "error", *CONTACT_HEADER.split(","), "raw"]
    assert failed[1][:2] == ["3", "unterminated quoted field"]
    assert uid(1) in failed[1][-1]
    assert uid(2) in failed[1][-1]
    assert list(await contacts(env.pool)) == [uid(0)]


async def test_rows_with_the_wrong_number_of_fields_are_failed_with_their_text(env: Env) -> None:
    lines = [CONTACT_HEADER, contact_line(0), f"{uid(1)},only,three", contact_line(2) + ",extra"]
    await env.put("in/w.csv", "\n".join(lines))

    result = await env.run({"s3_key": "in/w.csv", "s3_bucket": env.bucket})

    assert result["runtime_errors"] == [
        "line 3: expected 14 fields, found 3",
        "line 4: expected 14 fields, found 15",
    ]
    failed = await env.failed_rows("in/w.failed.csv")
    assert failed[1] == ["3", "expected 14 fields, found 3", *[""] * 14, f"{uid(1)},only,three"]
    assert failed[2][2:] == [*[""] * 14, contact_line(2) + ",extra"]
    assert list(await contacts(env.pool)) == [uid(0)]


async def test_invalid_utf8_fails_only_its_row(env: Env) -> None:
    source = "\n".join(
        [CONTACT_HEADER, contact_line(0), contact_line(1, first_name="X"), contact_line(2)]
    )
    data = source.encode().replace(b",X,", b",\xff\xfe,")
    await env.put("in/u.csv", data)

    result = await env.run({"s3_key": "in/u.csv", "s3_bucket": env.bucket})

    assert result["runtime_errors"] == ["line 3: invalid UTF-8"]
    failed = await env.failed_rows("in/u.failed.csv")
    assert failed[1][:2] == ["3", "invalid UTF-8"]
    assert failed[1][-1].startswith(uid(1))
    assert "\ufffd" in failed[1][-1]
    assert sorted(await contacts(env.pool)) == [uid(0), uid(2)]


async def test_a_bom_and_crlf_line_ends_are_accepted(env: Env) -> None:
    source = "\r\n".join([CONTACT_HEADER, contact_line(0), contact_line(1)]) + "\r\n"
    await env.put("in/bom.csv", b"\xef\xbb\xbf" + source.encode())

    result = await env.run({"s3_key": "in/bom.csv", "s3_bucket": env.bucket})

    assert (result["number_records_processed"], result["number_records_failed"]) == (2, 0)
    rows = await contacts(env.pool)
    assert rows[uid(1)]["email_verified_at"] == datetime(2024, 1, 2, 10, tzinfo=UTC)  # no \r
    assert rows[uid(0)]["linkedin_url"] is None


async def test_an_empty_file_fails_the_job(env: Env) -> None:
    await env.put("in/empty.csv", b"")
    with pytest.raises(EmptyFileError) as caught:
        await env.run({"s3_key": "in/empty.csv", "s3_bucket": env.bucket})
    assert caught.value.code == "ERR_EMPTY_FILE"


async def test_a_header_only_file_imports_nothing(env: Env) -> None:
    await env.put("in/h.csv", CONTACT_HEADER + "\n")
    progress: list[dict[str, Any]] = []

    result = await env.run({"s3_key": "in/h.csv", "s3_bucket": env.bucket}, progress=progress)

    assert (result["number_records_processed"], result["failed_rows_s3_key"]) == (0, None)
    assert progress == []
    assert await env.keys() == ["in/h.csv"]


async def test_a_one_megabyte_field_is_kept_or_refused_by_column(env: Env) -> None:
    big = "x" * 1_000_000
    lines = [
        CONTACT_HEADER,
        contact_line(0, last_name=big),
        contact_line(1, title=big),
        contact_line(2),
    ]
    await env.put("in/big.csv", "\n".join(lines))

    result = await env.run({"s3_key": "in/big.csv", "s3_bucket": env.bucket})

    assert result["runtime_errors"] == ["line 3: column title: longer than 512 characters"]
    rows = await contacts(env.pool)
    assert sorted(rows) == [uid(0), uid(2)]
    assert rows[uid(0)]["last_name"] == big
    failed = await env.failed_rows("in/big.failed.csv")
    assert failed[1][2 + 4] == big  # the title column, intact


async def test_a_record_over_the_size_limit_is_one_bad_row(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(insert_csv, "MAX_RECORD_BYTES", 64 * 1024)
    huge = "y" * 200_000
    lines = [CONTACT_HEADER, contact_line(0), contact_line(1, last_name=huge), contact_line(2)]
    await env.put("in/huge.csv", "\n".join(lines))

    result = await env.run({"s3_key": "in/huge.csv", "s3_bucket": env.bucket})

    assert result["runtime_errors"] == ["line 3: record too large"]
    assert sorted(await contacts(env.pool)) == [uid(0), uid(2)]
    failed = await env.failed_rows("in/huge.failed.csv")
    assert failed[1][:2] == ["3", "record too large"]
    assert failed[1][-1].startswith(uid(1))


async def test_duplicate_uuids_keep_the_last_occurrence(env: Env) -> None:
    lines = [
        CONTACT_HEADER,
        contact_line(0, title="first"),
        contact_line(1),
        contact_line(0, title="second"),  # same batch as the first
        contact_line(2),
        contact_line(0, uuid=uid(0).upper(), title="third"),  # next batch; same uuid
        contact_line(3),
    ]
    await env.put("in/dup.csv", "\n".join(lines))

    result = await env.run({"s3_key": "in/dup.csv", "s3_bucket": env.bucket}, batch_size=4)

    assert result["number_records_processed"] == 6
    rows = await contacts(env.pool)
    assert sorted(rows) == [uid(i) for i in range(4)]
    assert rows[uid(0)]["title"] == "third"


async def test_bad_values_fail_their_rows_with_the_reason(env: Env) -> None:
    lines = [
        CONTACT_HEADER,
        contact_line(0),
        contact_line(1, email_verified_at="yesterday"),
        contact_line(2, uuid="not-a-uuid"),
        contact_line(3, company_id="123"),
        contact_line(4, uuid=""),
        contact_line(5, email_verified_at="2024-02-30T00:00:00"),
        contact_line(6, email_verified_at="2024-03-01 08:30:00"),
        contact_line(7, city="Nul\x00City"),
    ]
    await env.put("in/bad.csv", "\n".join(lines))

    result = await env.run({"s3_key": "in/bad.csv", "s3_bucket": env.bucket})

    assert result["runtime_errors"] == [
        "line 3: column email_verified_at: not an ISO 8601 timestamp: 'yesterday'",
        "line 4: column uuid: not a valid UUID: 'not-a-uuid'",
        "line 5: column company_id: not a valid UUID: '123'",
        "line 6: column uuid: a value is required",
        "line 7: column email_verified_at: not an ISO 8601 timestamp: '2024-02-30T00:00:00'",
        "line 9: a field contains a NUL character",
    ]
    rows = await contacts(env.pool)
    assert sorted(rows) == [uid(0), uid(6)]
    assert rows[uid(6)]["email_verified_at"] == datetime(
        2024, 3, 1, 8, 30, tzinfo=UTC
    )  # naive: UTC
    failed = await env.failed_rows("in/bad.failed.csv")
    assert [row[0] for row in failed[1:]] == ["3", "4", "5", "6", "7", "9"]
    assert failed[1][2:] == [*next(csv.reader([lines[2]])), ""]


async def test_runtime_errors_are_capped_but_counted(env: Env) -> None:
    lines = [CONTACT_HEADER, *(contact_line(i, uuid=f"bad{i}") for i in range(5)), contact_line(9)]
    await env.put("in/many.csv", "\n".join(lines))

    result = await env.run({"s3_key": "in/many.csv", "s3_bucket": env.bucket}, max_errors=3)

    assert len(result["runtime_errors"]) == 3
    assert (result["runtime_errors_total"], result["number_records_failed"]) == (5, 5)
    assert len(await env.failed_rows("in/many.failed.csv")) == 1 + 5


# -- the header ------------------------------------------------------------------------------


async def test_unknown_columns_are_ignored_and_reported(env: Env) -> None:
    source = f" ID ,First_Name,Favourite Colour,EMAIL\n{uid(0)},Ann,blue,ann@example.com\n"
    await env.put("in/extra.csv", source)

    result = await env.run({"s3_key": "in/extra.csv", "s3_bucket": env.bucket})

    assert result["ignored_columns"] == ["Favourite Colour"]
    row = (await contacts(env.pool))[uid(0)]
    assert (row["first_name"], row["email"]) == ("Ann", "ann@example.com")


@pytest.mark.parametrize(
    ("service", "header", "error", "named"),
    [
        ("contact", "first_name,email", MissingColumnsError, "uuid"),
        ("company", "uuid,website", MissingColumnsError, "name"),
        ("contact", "id,uuid,email", DuplicateColumnsError, "'id' and 'uuid'"),
        ("contact", "uuid,email,Email", DuplicateColumnsError, "'email' and 'Email'"),
    ],
)
async def test_a_bad_header_fails_the_job_before_writing(
    env: Env, service: str, header: str, error: type[HeaderError], named: str
) -> None:
    await env.put("in/h.csv", f"{header}\n{uid(0)},a,b\n")
    with pytest.raises(error) as caught:
        await env.run({"s3_key": "in/h.csv", "s3_bucket": env.bucket, "service": service})
    assert named in caught.value.message
    assert await env.pool.fetchval("SELECT count(*) FROM contacts") == 0


# -- where the file is -----------------------------------------------------------------------


async def test_a_missing_object_fails_with_its_code(env: Env) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await env.run({"s3_key": "in/nothing.csv", "s3_bucket": env.bucket})
    assert caught.value.code == "ERR_S3_OBJECT_NOT_FOUND"


async def test_a_missing_bucket_fails_with_its_code(env: Env) -> None:
    with pytest.raises(BucketNotFound) as caught:
        await env.run({"s3_key": "in/x.csv", "s3_bucket": f"missing-{uuid.uuid4().hex}"})
    assert caught.value.code == "ERR_S3_BUCKET_NOT_FOUND"


async def test_the_bucket_defaults_to_s3_bucket_and_must_come_from_somewhere(env: Env) -> None:
    await env.put("uploads/contacts.csv", contacts_csv(2))
    result = await env.run({"s3_key": "uploads/contacts.csv"}, default_bucket=env.bucket)
    assert (result["s3_bucket"], result["service"]) == (env.bucket, "contact")

    with pytest.raises(BucketNotConfiguredError) as caught:
        await env.run({"s3_key": "uploads/contacts.csv"})
    assert caught.value.code == "ERR_S3_BUCKET_NOT_CONFIGURED"


@pytest.mark.parametrize(
    "data",
    [{}, {"s3_key": ""}, {"s3_key": "a.csv", "service": "person"}, {"s3_key": "a.csv", "x": 1}],
)
def test_job_data_is_validated(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidJobDataError):
        INSERT_CSV_FILE.parse(data)
    seed_example = {"s3_key": "uploads/contacts.csv", "s3_bucket": "my-bucket"}
    assert INSERT_CSV_FILE.parse(seed_example).service == "contact"


# -- Elasticsearch failures ------------------------------------------------------------------


async def test_a_document_elasticsearch_refuses_fails_the_job(es_env: Env) -> None:
    assert es_env.search is not None
    strict = {"dynamic": "strict", "properties": {"uuid": {"type": "keyword"}}}
    await es_env.search.indices.create(index=f"{es_env.prefix}contacts", mappings=strict)
    await es_env.put("in/c.csv", contacts_csv(3) + "\nnot,a,row")

    with pytest.raises(SearchBulkError) as caught:
        await es_env.run({"s3_key": "in/c.csv", "s3_bucket": es_env.bucket})
    assert caught.value.code == "ERR_ELASTICSEARCH_BULK"
    assert "3 document(s) refused" in caught.value.message
    assert await es_env.keys() == ["in/c.csv"]  # the failed-rows upload was abandoned
    assert es_env.pool.get_idle_size() == es_env.pool.get_size()  # every connection returned


@pytest.mark.parametrize("parallel_jobs", [4, 50])  # two connections, then one
async def test_a_database_failure_leaves_no_staging_tables_or_held_connections(
    env: Env, monkeypatch: pytest.MonkeyPatch, parallel_jobs: int
) -> None:
    monkeypatch.setattr(sinks.q, "staging_upsert", lambda service, names: "SELECT 1 / 0")
    await env.put("in/c.csv", contacts_csv(10))

    data = {"s3_key": "in/c.csv", "s3_bucket": env.bucket}
    with pytest.raises(asyncpg.DivisionByZeroError):
        await env.run(data, batch_size=3, parallel_jobs=parallel_jobs)

    assert env.pool.get_idle_size() == env.pool.get_size()
    staging = "SELECT count(*) FROM pg_class WHERE relname LIKE 'import_staging%'"
    assert await env.pool.fetchval(staging) == 0
    assert await env.pool.fetchval("SELECT count(*) FROM contacts") == 0


# -- batches and progress --------------------------------------------------------------------


async def test_small_batches_give_exact_results_and_report_progress(
    env: Env, store: JobStore
) -> None:
    lines = [CONTACT_HEADER]
    for i in range(50):
        lines.append(contact_line(i, uuid="oops") if i % 10 == 3 else contact_line(i))
    lines.append(contact_line(7, title="Last word"))  # a duplicate in a later batch
    await env.put("in/50.csv", "\n".join(lines))
    progress: list[dict[str, Any]] = []

    result = await env.run(
        {"s3_key": "in/50.csv", "s3_bucket": env.bucket}, batch_size=7, progress=progress
    )

    assert (result["number_records_processed"], result["number_records_failed"]) == (46, 5)
    rows = await contacts(env.pool)
    assert sorted(rows) == sorted(uid(i) for i in range(50) if i % 10 != 3)
    assert rows[uid(7)]["title"] == "Last word"
    failed = await env.failed_rows("in/50.failed.csv")
    assert [row[0] for row in failed[1:]] == ["5", "15", "25", "35", "45"]
    assert len(progress) == 8  # ceil(51 / 7)
    processed = [p["number_records_processed"] for p in progress]
    assert processed == sorted(processed)
    assert processed[-1] == 46
    assert progress[-1] == {"number_records_processed": 46, "number_records_failed": 5}


async def test_batches_copied_as_their_own_bytes_land_as_converted_rows_would(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        CONTACT_HEADER,
        contact_line(0, email_verified_at="2024-03-01 08:30:00"),  # no offset: UTC
        contact_line(1, email_verified_at="2024-03-01T08:30:00.123456+05:30"),
        contact_line(2, email_verified_at="2024-03-01", first_name=" spaced  "),
        contact_line(3, last_name="Zürich 日本", phone="+1 (555) 0100", email_verified_at=""),
        contact_line(4, email_verified_at="not a time"),  # a bad row among good ones
        contact_line(0, title="Last word", email_verified_at="2024-03-01 08:30:00"),  # again
        contact_line(5, uuid="{" + uid(5) + "}"),  # this batch goes converted: not canonical
        contact_line(6, city="back\\slash"),
    ]
    await env.put("in/v.csv", "\r\n".join(lines) + "\r\n")
    copied: list[int] = []
    copy_csv = PostgresSink._copy_csv

    async def spy(sink: PostgresSink, conn: asyncpg.Connection, csv: Any) -> None:
        copied.append(1)
        await copy_csv(sink, conn, csv)

    monkeypatch.setattr(PostgresSink, "_copy_csv", spy)
    data = {"s3_key": "in/v.csv", "s3_bucket": env.bucket}
    verbatim = await env.run(data, batch_size=6)
    rows = await contacts(env.pool)
    await env.pool.execute("DELETE FROM contacts")
    monkeypatch.setattr(insert_csv, "verbatim_csv", lambda *args: None)
    converted = await env.run(data, batch_size=6)

    assert copied == [1]  # the first batch, and only it
    assert verbatim == converted
    assert converted["runtime_errors"] == [
        "line 6: column email_verified_at: not an ISO 8601 timestamp: 'not a time'"
    ]
    fields = CONTACT.field_names
    again = await contacts(env.pool)
    assert {u: [r[f] for f in fields] for u, r in rows.items()} == {
        u: [r[f] for f in fields] for u, r in again.items()
    }
    assert rows[uid(0)]["title"] == "Last word"
    assert rows[uid(0)]["email_verified_at"] == datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
    assert rows[uid(2)]["first_name"] == " spaced  "
    assert rows[uid(2)]["email_verified_at"] == datetime(2024, 3, 1, tzinfo=UTC)
    assert rows[uid(3)]["last_name"] == "Zürich 日本"
    assert rows[uid(3)]["email_verified_at"] is None  # empty: NULL


@pytest.mark.parametrize(("parallel_jobs", "lanes"), [(4, 2), (5, 1)])
async def test_a_second_connection_is_used_only_when_the_pool_fits_two_per_job(
    env: Env, parallel_jobs: int, lanes: int
) -> None:
    async with PostgresSink.open(env.pool, CONTACT, ("uuid",), parallel_jobs) as sink:
        assert sink.lanes == lanes  # the test pool holds 10 = 2 * 4 jobs + 2 spare
    assert env.pool.get_idle_size() == env.pool.get_size()


async def test_one_connection_gives_the_same_results_as_two(env: Env) -> None:
    lines = [CONTACT_HEADER, *(contact_line(i) for i in range(30)), contact_line(3, title="Last")]
    await env.put("in/one.csv", "\n".join(lines))
    progress: list[dict[str, Any]] = []

    result = await env.run(
        {"s3_key": "in/one.csv", "s3_bucket": env.bucket},
        batch_size=4,
        parallel_jobs=50,
        progress=progress,
    )

    assert result["number_records_processed"] == 31
    rows = await contacts(env.pool)
    assert sorted(rows) == sorted(uid(i) for i in range(30))
    assert rows[uid(3)]["title"] == "Last"
    assert [p["number_records_processed"] for p in progress] == [*range(4, 32, 4), 31]


async def test_progress_lands_on_the_job_row(env: Env, store: JobStore) -> None:
    await env.put("in/p.csv", contacts_csv(12))
    job = await store.create(
        NewJob("insert_csv_file", {"s3_key": "in/p.csv", "s3_bucket": env.bucket})
    )
    await store.claim(FIRST_TIME, "test-runner", 1)
    attempt = await store.start(job, FIRST_TIME, "test-runner")

    async def report(values: dict[str, Any]) -> None:
        await store.report_progress(job, FIRST_TIME, "test-runner", values)

    ctx = JobContext(
        job=job,
        attempt=attempt,
        settings=load_settings(BATCH_SIZE_FOR_INSERTION=5, S3_BUCKET=env.bucket),
        log=BoundLogger(logging.getLogger("test"), {}),
        services=Services(pool=env.pool, objects=env.objects),
        report_progress=report,
    )
    await INSERT_CSV_FILE.run(ctx)

    stored = (await store.get(job.uuid)).job_response
    assert stored["number_records_processed"] == 12
    assert stored["number_records_failed"] == 0


async def test_a_cancelled_import_reports_every_row_it_committed(env: Env, store: JobStore) -> None:
    # Batch 6 (rows 500-599) holds a title another transaction is adding to filter_values and
    # does not commit: its filter write waits, while its PostgreSQL write commits batch 5.
    lines = [contact_line(i, title="Held") if i == 550 else contact_line(i) for i in range(1000)]
    await env.put("in/cancel.csv", "\n".join([CONTACT_HEADER, *lines]))
    job = await store.create(
        NewJob("insert_csv_file", {"s3_key": "in/cancel.csv", "s3_bucket": env.bucket})
    )
    settings = load_settings(BATCH_SIZE_FOR_INSERTION=100, PARALLEL_JOBS=1, S3_BUCKET=env.bucket)
    cfg = RunnerConfig.from_settings(settings, FIRST_TIME, 1)
    cfg = dataclasses.replace(cfg, tick_interval=timedelta(seconds=0.05))
    cfg = dataclasses.replace(cfg, heartbeat_interval=timedelta(seconds=0.1))
    services = Services(pool=env.pool, objects=env.objects)
    runner = Runner(store, default_registry(), settings, cfg, services=services)
    stopping = Stopping()
    async with env.pool.acquire() as other, other.transaction():
        await other.execute(
            "INSERT INTO filter_values (service, field, value) VALUES ('contact', 'title', 'Held')"
        )
        task = asyncio.create_task(runner.run(stopping))
        try:
            await eventually(lambda: _rows_are(env.pool, 500))
            await store.cancel(job.uuid)
            await eventually(lambda: _status_is(store, job, "aborted"))
        finally:
            stopping.request()
            await asyncio.wait_for(task, 30)
    response = (await store.get(job.uuid)).job_response
    assert response["number_records_processed"] == 500
    assert await env.pool.fetchval("SELECT count(*) FROM contacts") == 500


async def _rows_are(pool: asyncpg.Pool, count: int) -> bool:
    """Whether the contacts table holds `count` rows."""
    return bool(await pool.fetchval("SELECT count(*) FROM contacts") == count)


async def _status_is(store: JobStore, job: Job, status: str) -> bool:
    """Whether the job is in this state now."""
    return (await store.get(job.uuid)).status == status


# -- memory ----------------------------------------------------------------------------------


class GeneratedObjectStore(ObjectStore):
    """An ObjectStore whose objects are contact CSVs generated on the fly, never held whole."""

    async def iter_object(
        self, bucket: str, key: str, start: int = 0, if_match: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """`key` is the row count; chunks of about 256 KiB (never replaced: `if_match` holds)."""
        rows = int(key)
        lines = ["uuid,email,country"]
        for i in range(rows):
            lines.append(f"{uid(i)},user{i}@example.com,C{i % 50}")
            if len(lines) == 4000 or i == rows - 1:
                yield ("\n".join(lines) + "\n").encode()
                lines = []
                await asyncio.sleep(0)

    async def stat(self, bucket: str, key: str) -> ObjectStat:
        """A made-up size and ETag: the generated content never changes."""
        return ObjectStat(0, f"generated-{key}")


async def peak_traced_bytes(env: Env, rows: int) -> int:
    """Peak memory traced while importing `rows` generated rows in batches of 500."""
    generated = GeneratedObjectStore(None, "us-east-1")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        data = {"s3_key": str(rows), "s3_bucket": "generated"}
        result = await Env(env.pool, generated, "generated").run(data)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert result["number_records_processed"] == rows
    return peak


async def test_memory_does_not_grow_with_the_number_of_rows(env: Env) -> None:
    small = await peak_traced_bytes(env, 20_000)
    large = await peak_traced_bytes(env, 60_000)
    logging.getLogger("test").info("peak traced: 20k rows %d B, 60k rows %d B", small, large)
    assert large - small < 1_000_000, (small, large)
    assert await env.pool.fetchval("SELECT count(*) FROM contacts") == 60_000
