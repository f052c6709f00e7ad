"""CSV text to typed rows: header layouts, per-type converters, bad rows, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectra.catalog import COMPANY, CONTACT
from connectra.errors import DuplicateColumnsError, MissingColumnsError
from connectra.processors.importing.batches import RecordBatch, Segment
from connectra.processors.importing.blocks import parse_block
from connectra.processors.importing.failed_rows import failed_rows_csv, failed_rows_key
from connectra.processors.importing.reader import CsvRecord
from connectra.processors.importing.rows import (
    MAX_INDEXED_TEXT_CHARS,
    BadRow,
    RowConverter,
    all_canonical_uuids,
    converter_for,
    integer_parser,
    parse_text_array,
    parse_timestamp,
    parse_uuid,
    read_header,
)

U1 = "6f1c2a8e-0d1b-4c7e-9a55-1f0e2d3c4b5a"
U2 = "00000000-0000-0000-0000-000000000002"


def record(line: int, *fields: str) -> CsvRecord:
    """A well-formed record."""
    return CsvRecord(line=line, end_offset=0, next_line=line + 1, fields=list(fields))


def bad_record(line: int, error: str, raw: str) -> CsvRecord:
    """A record the reader could not split."""
    return CsvRecord(line=line, end_offset=0, next_line=line + 1, fields=[], error=error, raw=raw)


# -- converters ------------------------------------------------------------------------------


def test_uuids_are_stored_in_canonical_form() -> None:
    assert parse_uuid(U1) is U1
    assert parse_uuid(U1.upper()) == U1
    assert parse_uuid("{" + U1 + "}") == U1
    assert parse_uuid(U1.replace("-", "")) == U1
    assert parse_uuid(f" {U1} ") == U1
    with pytest.raises(ValueError, match="not a valid UUID: 'nope'"):
        parse_uuid("nope")


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([U1, U2], True),
        ([U1, U2.upper().replace("0", "A")], False),
        ([U1, ""], False),
        ([U1, U1[:-1]], False),
        ([U1, U1[:-1] + "g"], False),
        ([U1, U1[:-2] + " a"], False),
        ([U1, U1.replace("-", "0", 1)], False),
        ([U1[:8] + U1[9] + "-" + U1[10:], U1], False),
        ([], False),
    ],
)
def test_the_whole_column_uuid_check_agrees_with_the_strict_form(
    texts: list[str], expected: bool
) -> None:
    assert all_canonical_uuids(texts) is expected


def test_integers_are_checked_against_their_range() -> None:
    parse = integer_parser(0, 10)
    assert parse("7") == 7
    assert parse(" 10 ") == 10
    with pytest.raises(ValueError, match=r"not an integer: '1\.5'"):
        parse("1.5")
    with pytest.raises(ValueError, match=r"-1 is out of range \(0 to 10\)"):
        parse("-1")


def test_integer_bounds_follow_the_column_types_and_checks() -> None:
    year = converter_for(COMPANY, COMPANY.field("founded_year"))
    assert year is not None
    with pytest.raises(ValueError, match=r"\(1000 to 3000\)"):
        year("999")
    employees = converter_for(COMPANY, COMPANY.field("employees_count"))
    assert employees is not None
    with pytest.raises(ValueError, match="out of range"):
        employees(str(2**31))
    assert converter_for(CONTACT, CONTACT.field("email")) is None


def test_timestamps_are_iso_8601_and_naive_means_utc() -> None:
    assert parse_timestamp("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_timestamp("2024-05-01 10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    plus2 = parse_timestamp("2024-05-01T12:00:00+02:00")
    assert plus2.utcoffset() == timedelta(hours=2)
    assert plus2 == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_timestamp("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an ISO 8601 timestamp: 'May 1st'"):
        parse_timestamp("May 1st")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["Software","SaaS"]', ["Software", "SaaS"]),
        ('[" Software ", "", "  "]', ["Software"]),
        ("Software;SaaS", ["Software", "SaaS"]),
        (" Software ; ;SaaS; ", ["Software", "SaaS"]),
        ("[]", []),
    ],
)
def test_text_arrays_are_json_or_semicolon_separated(text: str, expected: list[str]) -> None:
    assert parse_text_array(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must hold only strings"),
        ('["a", ', "not a JSON array"),
        ("[" * 100_000, "not a JSON array"),
        ('[["a"]]', "must hold only strings"),
    ],
)
def test_bad_text_arrays_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_text_array(text)


# -- the header ------------------------------------------------------------------------------


def test_headers_match_fields_trimmed_case_insensitively_with_id_for_uuid() -> None:
    layout = read_header(CONTACT, [" Email", "ID", "Shoe Size", "CITY ", ""])
    assert layout.names == ("email", "uuid", "city")
    assert layout.positions == (0, 1, 3)
    assert layout.ignored_columns == ("Shoe Size", "")
    assert not layout.has_every_field


def test_a_missing_required_column_is_named() -> None:
    with pytest.raises(MissingColumnsError, match="uuid, name"):
        read_header(COMPANY, ["website"])


def test_repeated_columns_are_refused_but_blank_ones_are_not() -> None:
    with pytest.raises(DuplicateColumnsError, match="'uuid' and 'id'"):
        read_header(CONTACT, ["uuid", "id"])
    assert read_header(CONTACT, ["uuid", "", " "]).ignored_columns == ("", " ")


# -- whole batches ---------------------------------------------------------------------------


def company_converter() -> RowConverter:
    """A converter for a company file with a few columns in its own order."""
    return RowConverter(read_header(COMPANY, ["name", "id", "industries", "employees_count", "x"]))


def test_a_batch_converts_to_typed_rows_in_field_order() -> None:
    converter = company_converter()
    out = converter.convert(
        [record(2, "Acme", U1.upper(), "A;B", "5", "ignored"), record(3, "Beta", U2, "", "", "")],
        check_nul=False,
    )
    assert list(out.rows()) == [("Acme", U1, ["A", "B"], 5), ("Beta", U2, [], None)]
    assert (out.good, out.bad) == (2, [])


def test_bad_rows_are_reported_in_line_order_with_their_first_reason() -> None:
    converter = company_converter()
    records = [
        record(2, "Acme", U1, "", "5", ""),
        bad_record(3, "invalid UTF-8", "raw,text\r\n"),
        record(4, "", "bad", "", "x", ""),  # three problems: the first column's is reported
        record(5, "short"),
        record(6, "Gamma", U2, "[1]", "", ""),
    ]
    out = converter.convert(records, check_nul=False)
    assert list(out.rows()) == [("Acme", U1, [], 5)]
    assert out.bad == [
        BadRow(3, "invalid UTF-8", [], "raw,text"),
        BadRow(4, "column name: a value is required", ["", "bad", "", "x", ""]),
        BadRow(5, "expected 5 fields, found 1", [], "short"),
        BadRow(
            6, "column industries: a JSON array must hold only strings: '[1]'", records[4].fields
        ),
    ]
    assert out.bad[1].message == "line 4: column name: a value is required"


def test_a_quoted_empty_field_is_an_empty_string_for_text_and_null_for_other_types() -> None:
    converter = RowConverter(
        read_header(COMPANY, ["uuid", "name", "website", "industries", "employees_count"])
    )
    records = [
        CsvRecord(2, 0, 3, [U1, "Acme", "", "", ""], quoted_empty=(2, 3, 4)),
        CsvRecord(3, 0, 4, [U2, "", "", "", ""], quoted_empty=(1,)),
        CsvRecord(4, 0, 5, ["", "Beta", "", "", ""], quoted_empty=(0,)),
    ]
    out = converter.convert(records, check_nul=False)
    assert list(out.rows()) == [(U1, "Acme", "", [], None)]
    assert [bad.reason for bad in out.bad] == [
        "column name: a value is required",
        "column uuid: a value is required",
    ]


def test_a_batch_quoting_every_field_keeps_every_empty_text_as_an_empty_string() -> None:
    converter = RowConverter(read_header(COMPANY, ["uuid", "name", "website", "founded_year"]))
    data = f'"{U1}","Acme","",""\n"{U2}","Beta","x",""\n'.encode()
    block, _, _ = parse_block(data, 0, 2, 1 << 20, 99, final=False)
    batch = RecordBatch([Segment(block, 0, len(block))])
    assert batch.every_field_quoted()
    out = converter.convert(batch, check_nul=False)
    assert list(out.rows()) == [(U1, "Acme", "", None), (U2, "Beta", "x", None)]


def test_quoted_empty_fields_stay_with_their_rows_when_rows_are_dropped() -> None:
    converter = RowConverter(read_header(COMPANY, ["uuid", "name", "website", "city"]))
    U3 = U2.replace("2", "3")
    records = [
        CsvRecord(2, 0, 3, [U1, "first", "", ""], quoted_empty=(2,)),
        CsvRecord(3, 0, 4, [U2, "short"]),
        CsvRecord(4, 0, 5, [U2, "other", "", ""]),
        CsvRecord(5, 0, 6, [U1, "second", "", ""], quoted_empty=(3,)),
        CsvRecord(6, 0, 7, [U3, "third", "", ""], quoted_empty=(2, 3)),
    ]
    out = converter.convert(records, check_nul=False)
    assert list(out.rows()) == [
        (U2, "other", None, None),
        (U1, "second", None, ""),
        (U3, "third", "", ""),
    ]


def test_the_last_of_duplicate_uuids_wins_and_every_row_counts() -> None:
    converter = company_converter()
    records = [
        record(2, "first", U1, "", "", ""),
        record(3, "other", U2, "", "", ""),
        record(4, "second", U1.upper(), "", "", ""),
    ]
    out = converter.convert(records, check_nul=False)
    assert list(out.rows()) == [("other", U2, [], None), ("second", U1, [], None)]
    assert (out.good, out.size) == (3, 2)


def test_nul_characters_are_only_looked_for_when_the_stream_had_one() -> None:
    converter = company_converter()
    records = [record(2, "A\x00cme", U1, "", "", "")]
    assert converter.convert(records, check_nul=True).bad[0].reason == (
        "a field contains a NUL character"
    )
    assert converter.convert(records, check_nul=False).size == 1


def test_indexed_text_is_limited_in_length_but_other_text_is_not() -> None:
    converter = RowConverter(read_header(COMPANY, ["uuid", "name", "industries", "city"]))
    long = "x" * (MAX_INDEXED_TEXT_CHARS + 1)
    records = [
        record(2, U1, long, "", ""),
        record(3, U2, "n", "", long),
        record(4, U2.replace("2", "3"), "n", f"ok;{long}", ""),
        record(5, U2.replace("2", "4"), "n", "a" * MAX_INDEXED_TEXT_CHARS, ""),
    ]
    out = converter.convert(records, check_nul=False)
    assert [row[0] for row in out.rows()] == [U1, U2.replace("2", "4")]
    assert [bad.reason for bad in out.bad] == [
        f"column city: longer than {MAX_INDEXED_TEXT_CHARS} characters",
        f"column industries: longer than {MAX_INDEXED_TEXT_CHARS} characters",
    ]


# -- the failed-rows file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("uploads/contacts.csv", "uploads/contacts.failed.csv"),
        ("uploads/CONTACTS.CSV", "uploads/CONTACTS.failed.csv"),
        ("uploads/contacts", "uploads/contacts.failed.csv"),
    ],
)
def test_the_failed_rows_file_sits_next_to_the_source(key: str, expected: str) -> None:
    assert failed_rows_key(key) == expected


def test_failed_rows_are_csv_lines_with_line_and_reason_first_and_raw_text_last() -> None:
    rows = [BadRow(3, "bad, really", ["a", 'b"c']), BadRow(9, "invalid UTF-8", [], "x\ry")]
    assert failed_rows_csv(rows, 2) == (b'3,"bad, really",a,"b""c",\n9,invalid UTF-8,,,"x\ry"\n')
