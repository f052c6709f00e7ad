"""CSV cells: one format per field type, the same from PostgreSQL values and Elasticsearch JSON."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from connectra.catalog import COMPANY, CONTACT, FieldType
from connectra.processors.csv_lines import csv_line
from connectra.processors.exporting.cells import (
    RowFormatter,
    format_array,
    format_timestamp,
    format_value,
    join_lines,
)
from connectra.processors.exporting.vql import Column
from connectra.processors.importing.rows import parse_text_array

T = FieldType


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2021, 12, 23, 20, 27, 13, tzinfo=UTC), "2021-12-23T20:27:13Z"),
        (datetime(2021, 12, 23, 20, 27, 13, 529903, tzinfo=UTC), "2021-12-23T20:27:13.529903Z"),
        (datetime(2021, 12, 23, 20, 27, 13, 500000, tzinfo=UTC), "2021-12-23T20:27:13.500000Z"),
        (
            datetime(2021, 12, 23, 22, 27, 13, tzinfo=timezone(timedelta(hours=2))),
            "2021-12-23T20:27:13Z",
        ),
        (datetime(2021, 12, 23, 20, 27, 13), "2021-12-23T20:27:13Z"),
    ],
)
def test_timestamps_are_iso_utc_z_with_microseconds_only_when_non_zero(
    value: datetime, text: str
) -> None:
    assert format_timestamp(value) == text


@pytest.mark.parametrize(
    ("field_type", "value", "cell"),
    [
        (T.TEXT, 'Ünïcode, "quoted"', 'Ünïcode, "quoted"'),
        (T.TEXT, "", ""),
        (T.TEXT, None, ""),
        (T.INTEGER, 42, "42"),
        (T.BIGINT, "9000000000", "9000000000"),
        (
            T.UUID,
            UUID("1B4E28BA-2FA1-11D2-883F-0016D3CCA427"),
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        ),
        (T.UUID, "1B4E28BA-2FA1-11D2-883F-0016D3CCA427", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
        (T.TEXT_ARRAY, ["Software", "SaaS"], "Software;SaaS"),
        (T.TEXT_ARRAY, ["R;D", "SaaS"], '["R;D","SaaS"]'),
        (T.TEXT_ARRAY, ["[beta]", None, 'say "hi"'], '["[beta]","say \\"hi\\""]'),
        (T.TEXT_ARRAY, [], ""),
        (T.TEXT_ARRAY, "Software", "Software"),
        (T.TEXT_ARRAY, None, ""),
        (T.TIMESTAMP, "2021-12-23T20:27:13.529903Z", "2021-12-23T20:27:13.529903Z"),
        (T.TIMESTAMP, "2021-12-23T21:27:13+01:00", "2021-12-23T20:27:13Z"),
        (T.TIMESTAMP, "2021-12-23", "2021-12-23T00:00:00Z"),
        (T.TIMESTAMP, 1640291233529, "2021-12-23T20:27:13.529000Z"),
        (T.TIMESTAMP, None, ""),
    ],
)
def test_each_field_type_has_one_cell_format(field_type: FieldType, value: Any, cell: Any) -> None:
    assert format_value(field_type, value) == cell


def columns(service: Any, *names: str) -> list[Column]:
    """Columns of a service, headers as given."""
    return [Column(name, service.field(name)) for name in names]


def test_python_values_and_search_json_give_the_same_bytes() -> None:
    formatter = RowFormatter(
        columns(CONTACT, "id", "email", "email_verified_at", "company_id", "title")
    )
    uid = UUID(int=0xABC)
    stamp = datetime(2024, 5, 6, 7, 8, 9, 120000, tzinfo=UTC)
    values = [
        {"uuid": uid, "email": "a@x.io", "email_verified_at": stamp, "title": "line\nbreak"},
        {"uuid": uid, "email": None, "company_id": uid, "title": ""},
    ]
    documents = [
        {
            "uuid": str(uid),
            "email": "a@x.io",
            "email_verified_at": "2024-05-06T07:08:09.12Z",
            "title": "line\nbreak",
        },
        {"uuid": str(uid).upper(), "email": None, "company_id": str(uid), "title": ""},
    ]
    from_values = formatter.search_rows(values)
    assert from_values == formatter.search_rows(documents)
    assert (
        from_values
        == (f'{uid},a@x.io,2024-05-06T07:08:09.120000Z,,"line\nbreak"\n{uid},,,{uid},\n').encode()
    )


def test_lines_are_joined_and_ended() -> None:
    assert join_lines(["a,b", '"x\ny",']) == b'a,b\n"x\ny",\n'
    assert join_lines([]) == b""


def test_the_header_is_select_columns_as_given() -> None:
    formatter = RowFormatter(columns(COMPANY, "id", "name", "industries"))
    assert formatter.header() == b"id,name,industries\n"


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (["a", "b"], "a,b"),
        (["", ""], ","),
        ([""], '""'),
        (
            ["a,b", 'say "hi"', "x\ny", "cr\ronly", " lead", "tab\tback\\"],
            '"a,b","say ""hi""","x\ny","cr\ronly", lead,tab\tback\\',
        ),
    ],
)
def test_fields_are_quoted_only_for_commas_quotes_and_line_breaks(
    fields: list[str], line: str
) -> None:
    assert csv_line(fields) == line


def test_a_row_of_one_empty_cell_is_written_quoted_so_it_is_not_a_blank_line() -> None:
    formatter = RowFormatter(columns(CONTACT, "email"))
    assert formatter.search_rows([{}]) == b'""\n'


def test_an_exported_list_is_read_back_by_the_import_as_the_same_list() -> None:
    # Elements as the import stores them: non-empty, no surrounding spaces; any may hold the
    # separator, brackets, quotes, commas or line breaks.
    rng = random.Random(5)
    alphabet = 'ab;[]",\n\\ é'
    for _ in range(2000):
        items = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))).strip() or "x"
            for _ in range(rng.randint(1, 4))
        ]
        assert parse_text_array(format_array(items)) == items, items
