"""Classic CSV edge cases through the real import: moto S3 in, real PostgreSQL out.

Empty fields follow PostgreSQL's own CSV rule: unquoted is NULL, quoted (`""`) is an empty
string, for text; a typed column reads both as NULL. Every CSV the product writes ends its
lines in LF.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from connectra import objectstore
from connectra.processors.importing import job_type as insert_csv
from connectra.processors.importing.sinks import PostgresSink
from tests.integration.test_export_csv import run_export
from tests.integration.test_insert_csv import (
    COMPANY_HEADER,
    CONTACT_HEADER,
    Env,
    contact_line,
    contacts,
    env,  # noqa: F401
    es_env,  # noqa: F401
    uid,
)
from tests.services import read_object

SHORT_HEADER = "uuid,first_name,last_name,email_verified_at,company_id"


async def imported(env: Env, key: str, data: bytes, **options: Any) -> dict[str, Any]:
    """Upload `data` and import it as contacts; the job's result."""
    await env.put(key, data)
    return await env.run({"s3_key": key, "s3_bucket": env.bucket}, **options)


async def stored(pool: asyncpg.Pool, uuid: str, *columns: str) -> tuple[Any, ...]:
    """The stored values of one contact."""
    row = (await contacts(pool))[uuid]
    return tuple(row[c] for c in columns)


# -- quoted and unquoted empty fields --------------------------------------------------------


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
async def test_a_quoted_empty_field_is_an_empty_string_and_an_unquoted_one_null(
    env: Env, line_end: str
) -> None:
    lines = [
        SHORT_HEADER,
        f'{uid(0)},"",,"",""',  # typed columns read "" as NULL
        f'"{uid(1)}",,"",,',
        f'{uid(2)},"Ada","Love""lace",2024-01-02T03:04:05Z,{uid(9)}',
    ]
    result = await imported(env, "in/e.csv", line_end.join(lines).encode())

    assert (result["number_records_processed"], result["number_records_failed"]) == (3, 0)
    columns = ("first_name", "last_name", "email_verified_at", "company_id")
    assert await stored(env.pool, uid(0), *columns) == ("", None, None, None)
    assert await stored(env.pool, uid(1), *columns) == (None, "", None, None)
    assert (await stored(env.pool, uid(2), *columns))[:3] == (
        "Ada",
        'Love"lace',
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


async def test_quoted_empties_hold_in_records_spanning_lines_and_after_a_bom(env: Env) -> None:
    lines = [
        '"uuid","first_name","last_name","title","city"',
        f'{uid(0)},"two\r\nlines","","",',
        f'{uid(1)},"",,"""","a ""b"", c"',
        f'{uid(2)},,"x\ny",,""',
    ]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    result = await imported(env, "in/m.csv", data)

    assert (result["number_records_processed"], result["number_records_failed"]) == (3, 0)
    columns = ("first_name", "last_name", "title", "city")
    assert await stored(env.pool, uid(0), *columns) == ("two\r\nlines", "", "", None)
    assert await stored(env.pool, uid(1), *columns) == ("", None, '"', 'a "b", c')
    assert await stored(env.pool, uid(2), *columns) == (None, "x\ny", None, "")


async def test_a_file_quoting_every_field_stores_every_empty_field_as_an_empty_string(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    quoted_header = '"' + SHORT_HEADER.replace(",", '","') + '"'
    lines = [quoted_header, *(f'"{uid(i)}","","First{i}","",""' for i in range(3))]
    last = f'"{uid(3)}",,"x","",\r\n'  # read in a block of its own: not every field quoted
    data = ("\r\n".join(lines) + "\r\n" + last).encode()
    monkeypatch.setattr(objectstore, "READ_CHUNK_SIZE", len(data) - len(last))
    result = await imported(env, "in/all.csv", data)

    assert (result["number_records_processed"], result["number_records_failed"]) == (4, 0)
    columns = ("first_name", "last_name", "email_verified_at", "company_id")
    for i in range(3):
        assert await stored(env.pool, uid(i), *columns) == ("", f"First{i}", None, None)
    assert await stored(env.pool, uid(3), *columns) == (None, "x", None, None)


async def test_a_required_field_needs_more_than_a_quoted_empty_string(env: Env) -> None:
    lines = [
        COMPANY_HEADER,
        f'{uid(0)},"",,"","",,"",,,,,',
        f'{uid(1)},Acme,"","","","","","","",,,',
        '"",Beta,,,,,,,,,,',
    ]
    await env.put("in/c.csv", "\n".join(lines))
    data = {"s3_key": "in/c.csv", "s3_bucket": env.bucket, "service": "company"}
    result = await env.run(data)

    assert result["runtime_errors"] == [
        "line 2: column name: a value is required",
        "line 4: column uuid: a value is required",
    ]
    row = await env.pool.fetchrow("SELECT * FROM companies WHERE uuid = $1", uid(1))
    assert row is not None
    assert (row["website"], row["industries"], row["employees_count"]) == ("", [], None)
    assert (row["founded_year"], row["country"], row["city"]) == (None, "", None)


async def test_a_batch_copied_as_its_bytes_and_a_converted_one_follow_the_same_rule(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [SHORT_HEADER, f"{uid(0)},,b,,", f"{uid(1)},a,,,", f'{uid(2)},"",b,"",""']
    copied: list[int] = []
    copy_csv = PostgresSink._copy_csv

    async def spy(sink: PostgresSink, conn: asyncpg.Connection, csv: Any) -> None:
        copied.append(1)
        await copy_csv(sink, conn, csv)

    monkeypatch.setattr(PostgresSink, "_copy_csv", spy)
    await imported(env, "in/v.csv", "\n".join(lines).encode(), batch_size=2)

    assert copied == [1]  # the quote-free batch; the one with quotes goes as converted rows
    columns = ("first_name", "last_name", "email_verified_at", "company_id")
    assert await stored(env.pool, uid(0), *columns) == (None, "b", None, None)
    assert await stored(env.pool, uid(1), *columns) == ("a", None, None, None)
    assert await stored(env.pool, uid(2), *columns) == ("", "b", None, None)
    monkeypatch.setattr(insert_csv, "verbatim_csv", lambda *args: None)
    await env.pool.execute("DELETE FROM contacts")
    await imported(env, "in/v.csv", "\n".join(lines).encode(), batch_size=2)
    assert await stored(env.pool, uid(0), *columns) == (None, "b", None, None)


async def test_elasticsearch_gets_the_same_empty_strings_and_nulls(es_env: Env) -> None:
    data = f'uuid,first_name,last_name,title\n{uid(0)},"",,x\n'.encode()
    await imported(es_env, "in/s.csv", data)

    assert es_env.search is not None
    index = f"{es_env.prefix}contacts"
    doc = (await es_env.search.get(index=index, id=uid(0)))["_source"]
    assert (doc["first_name"], doc["last_name"], doc["title"]) == ("", None, "x")
    assert await stored(es_env.pool, uid(0), "first_name", "last_name") == ("", None)


async def test_an_empty_string_replaces_null_on_a_second_import(env: Env) -> None:
    await imported(env, "in/a.csv", f"uuid,title\n{uid(0)},\n".encode())
    assert await stored(env.pool, uid(0), "title") == (None,)
    await imported(env, "in/b.csv", f'uuid,title\n{uid(0)},""\n'.encode())
    assert await stored(env.pool, uid(0), "title") == ("",)


# -- the failed-rows file --------------------------------------------------------------------


async def test_failed_rows_keep_their_columns_or_their_raw_text(env: Env) -> None:
    lines = [
        "uuid,first_name,email_verified_at",
        f"{uid(0)},Ada,",
        f"{uid(1)},only two",
        f'{uid(2)},"Bad, time",yesterday',
        f"{uid(3)},a,b,c",
    ]
    data = "\n".join(lines).encode() + b"\n" + f"{uid(4)},\xff\xfe,\n".encode("latin-1")
    data += f'{uid(5)},"open\n'.encode()

    result = await imported(env, "in/f.csv", data)

    assert result["number_records_failed"] == 5
    body = await read_object(env.objects, env.bucket, "in/f.failed.csv")
    assert body.decode().split("\n") == [
        "line,error,uuid,first_name,email_verified_at,raw",
        f'3,"expected 3 fields, found 2",,,,"{uid(1)},only two"',
        f"4,column email_verified_at: not an ISO 8601 timestamp: 'yesterday',"
        f'{uid(2)},"Bad, time",yesterday,',
        f'5,"expected 3 fields, found 4",,,,"{uid(3)},a,b,c"',
        f'6,invalid UTF-8,,,,"{uid(4)},\ufffd\ufffd,"',
        f'7,unterminated quoted field,,,,"{uid(5)},""open"',
        "",
    ]


async def test_a_raw_text_with_a_carriage_return_is_quoted(env: Env) -> None:
    data = f"uuid,first_name\n{uid(0)},a\rb\n{uid(1)},c\n".encode()
    result = await imported(env, "in/r.csv", data)

    assert result["runtime_errors"] == ["line 2: carriage return inside an unquoted field"]
    body = await read_object(env.objects, env.bucket, "in/r.failed.csv")
    assert body == (
        b"line,error,uuid,first_name,raw\n"
        + f'2,carriage return inside an unquoted field,,,"{uid(0)},a\rb"\n'.encode()
    )


async def test_the_failed_rows_file_and_exports_end_lines_in_lf(env: Env) -> None:
    lines = [
        CONTACT_HEADER,
        contact_line(0, first_name="TWO", email_verified_at="nope"),
        contact_line(1, first_name="TWO"),
        contact_line(2),
    ]
    source = "\r\n".join(lines).replace("TWO", '"two\r\nlines"') + "\r\n"
    await imported(env, "in/l.csv", source.encode())
    failed = await read_object(env.objects, env.bucket, "in/l.failed.csv")
    job_data = {"service": "contact", "vql": {"select_columns": ["id", "first_name"]}}
    _, exported = await run_export(env.pool, env.objects, env.bucket, job_data)

    assert exported == (f'id,first_name\n{uid(1)},"two\r\nlines"\n{uid(2)},First2\n'.encode())
    assert failed.startswith(b"line,error,uuid,")
    assert failed.endswith(b",engineering,00000000-0000-0000-0000-000000002711,,US,,City0,,nope,\n")
    assert b"\r" not in failed.replace(b'"two\r\nlines"', b"")
    assert failed.count(b"\n") == 3  # the header, the bad row, and the one inside its field
