"""VQL: its shapes, its checks against the catalog, the errors it answers, and the SQL it makes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from connectra.catalog import COMPANY, CONTACT
from connectra.errors import (
    ConnectraError,
    InvalidJobDataError,
    InvalidVqlError,
    MissingSelectColumnsError,
    UnknownFieldError,
    UnknownServiceError,
)
from connectra.processors.exporting.job_type import EXPORT_CSV_FILE, ExportCsvData, export_key
from connectra.processors.exporting.sql import quote_identifier, range_end, range_rows
from connectra.processors.exporting.vql import RangeOp, parse_vql, resolve_vql

SEED_MESSAGE = (
    "ERR_MISSING_SELECT_COLUMNS: 'select_columns' is required for export operations; "
    "specify at least one column to include in the output"
)
SEED_COMPANY_VQL: dict[str, Any] = {
    "where": {
        "keyword_match": {"must": {"industries": ["Software", "SaaS"], "country": ["USA"]}},
        "range_query": {
            "must": {
                "employees_count": {"gte": 50, "lte": 1000},
                "annual_revenue": {"gte": 1000000},
            }
        },
    },
    "select_columns": [
        "id",
        "name",
        "employees_count",
        "annual_revenue",
        "industries",
        "country",
        "website",
    ],
    "order_by": [{"order_by": "uuid", "order_direction": "desc"}],
    "limit": 500,
}
INJECTIONS = [
    'name"; DROP TABLE companies; --',
    "name) OR 1=1 --",
    'name COLLATE "C"',
    "Name",
    "name ",
    "uuid::text",
    "companies.name",
    "",
]


def resolve(vql: dict[str, Any], service: Any = CONTACT) -> Any:
    """Parse and resolve in one step."""
    return resolve_vql(parse_vql(vql), service)


def contact_vql(**parts: Any) -> dict[str, Any]:
    """A minimal valid contact VQL with some parts replaced."""
    return {"select_columns": ["email"], **parts}


def test_the_seed_company_example_resolves_to_typed_filters_and_sort_keys() -> None:
    query = resolve(SEED_COMPANY_VQL, COMPANY)
    assert query.headers == SEED_COMPANY_VQL["select_columns"]
    assert query.columns[0].field.name == "uuid"
    must = {f.field.name: (f.values, f.negated) for f in query.keyword_filters}
    assert must == {"industries": (("Software", "SaaS"), False), "country": (("USA",), False)}
    ranges = {f.field.name: f.bounds for f in query.range_filters}
    assert ranges == {
        "employees_count": ((RangeOp.GTE, 50), (RangeOp.LTE, 1000)),
        "annual_revenue": ((RangeOp.GTE, 1000000),),
    }
    assert [(k.field.name, k.descending) for k in query.sort_keys] == [("uuid", True)]
    assert query.page_size == 500


def test_defaults_are_uuid_ascending_and_pages_of_500() -> None:
    query = resolve(contact_vql())
    assert [(k.field.name, k.descending) for k in query.sort_keys] == [("uuid", False)]
    assert query.page_size == 500
    assert (query.keyword_filters, query.range_filters) == ((), ())


def test_a_single_keyword_value_counts_as_a_list_and_must_not_is_negated() -> None:
    where = {"keyword_match": {"must": {"country": "US"}, "must_not": {"title": ["CEO", "CTO"]}}}
    query = resolve(contact_vql(where=where))
    filters = [(f.field.name, f.values, f.negated) for f in query.keyword_filters]
    assert filters == [("country", ("US",), False), ("title", ("CEO", "CTO"), True)]


def test_uuid_and_integer_keyword_values_are_typed() -> None:
    company_id = "1B4E28BA-2FA1-11D2-883F-0016D3CCA427"
    query = resolve(contact_vql(where={"keyword_match": {"must": {"company_id": company_id}}}))
    assert query.keyword_filters[0].values == (UUID(company_id),)
    years = {"keyword_match": {"must_not": {"founded_year": [1999, 2000]}}}
    query = resolve({"select_columns": ["name"], "where": years}, COMPANY)
    assert query.keyword_filters[0].values == (1999, 2000)


def test_order_by_keeps_directions_and_appends_the_uuid_tiebreak() -> None:
    order = [{"order_by": "country"}, {"order_by": "email_verified_at", "order_direction": "DESC"}]
    query = resolve(contact_vql(order_by=order))
    keys = [(k.field.name, k.descending) for k in query.sort_keys]
    assert keys == [("country", False), ("email_verified_at", True), ("uuid", False)]


def test_ordering_by_id_is_ordering_by_uuid_without_a_second_tiebreak() -> None:
    query = resolve(contact_vql(order_by=[{"order_by": "id", "order_direction": "desc"}]))
    assert [(k.field.name, k.descending) for k in query.sort_keys] == [("uuid", True)]


def test_select_id_keeps_the_header_id_and_reads_uuid() -> None:
    query = resolve({"select_columns": ["id", "uuid", "email"]})
    assert query.headers == ["id", "uuid", "email"]
    assert [c.field.name for c in query.columns] == ["uuid", "uuid", "email"]


def test_timestamp_bounds_become_utc_truncated_to_milliseconds() -> None:
    bounds = {
        "gte": "2024-01-01T02:00:00.123456+02:00",
        "lt": "2024-02-01",
        "gt": "2024-01-01T00:00:00Z",
        "lte": "2025-01-01T00:00:00.999999Z",
    }
    where = {"range_query": {"must_not": {"email_verified_at": bounds}}}
    query = resolve(contact_vql(where=where))
    assert query.range_filters[0].negated
    assert dict(query.range_filters[0].bounds) == {
        RangeOp.GTE: datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC),
        RangeOp.LTE: datetime(2025, 1, 1, 0, 0, 0, 999000, tzinfo=UTC),
        RangeOp.GT: datetime(2024, 1, 1, tzinfo=UTC),
        RangeOp.LT: datetime(2024, 2, 1, tzinfo=UTC),
    }


@pytest.mark.parametrize("vql", [{}, {"select_columns": []}, {"select_columns": None}])
def test_missing_select_columns_answers_the_seed_error(vql: dict[str, Any]) -> None:
    with pytest.raises(MissingSelectColumnsError) as caught:
        parse_vql(vql)
    assert caught.value.render() == SEED_MESSAGE
    assert caught.value.http_status == 400


def test_missing_select_columns_wins_over_other_problems() -> None:
    with pytest.raises(MissingSelectColumnsError):
        parse_vql({"where": "nonsense", "limit": -1})


def test_job_data_parsing_raises_the_vql_codes_not_invalid_job_data() -> None:
    data = {"service": "contact", "vql": {"where": {}}}
    with pytest.raises(MissingSelectColumnsError):
        EXPORT_CSV_FILE.parse(data)
    bad_field = {"service": "contact", "vql": {"select_columns": ["salary"]}}
    with pytest.raises(UnknownFieldError):
        EXPORT_CSV_FILE.parse(bad_field)
    bad_limit = {"service": "contact", "vql": {"select_columns": ["email"], "limit": 0}}
    with pytest.raises(InvalidVqlError, match=r"vql\.limit"):
        EXPORT_CSV_FILE.parse(bad_limit)


def test_job_data_refuses_an_unknown_service_extra_keys_and_a_missing_vql() -> None:
    with pytest.raises(UnknownServiceError):
        EXPORT_CSV_FILE.parse({"service": "people", "vql": contact_vql()})
    with pytest.raises(InvalidJobDataError, match="s3_key"):
        EXPORT_CSV_FILE.parse({"service": "contact", "vql": contact_vql(), "s3_key": "x"})
    with pytest.raises(InvalidJobDataError, match="vql"):
        EXPORT_CSV_FILE.parse({"service": "contact"})


def test_job_data_survives_the_storage_round_trip() -> None:
    data = EXPORT_CSV_FILE.parse(
        {"service": "company", "vql": SEED_COMPANY_VQL, "s3_bucket": "b-1"}
    )
    stored = data.model_dump(mode="json")
    again = ExportCsvData.model_validate(stored)
    assert again == data
    assert again.query() == data.query()


@pytest.mark.parametrize(
    "vql",
    [
        {"select_columns": ["salary"]},
        contact_vql(where={"keyword_match": {"must": {"salary": ["1"]}}}),
        contact_vql(where={"keyword_match": {"must_not": {"salary": ["1"]}}}),
        contact_vql(where={"range_query": {"must": {"salary": {"gte": 1}}}}),
        contact_vql(where={"range_query": {"must_not": {"salary": {"gte": 1}}}}),
        contact_vql(order_by=[{"order_by": "salary"}]),
        {"select_columns": ["employees_count"]},  # a company field, not a contact one
    ],
)
def test_unknown_fields_anywhere_answer_err_unknown_field(vql: dict[str, Any]) -> None:
    with pytest.raises(UnknownFieldError) as caught:
        resolve(vql)
    assert caught.value.code == "ERR_UNKNOWN_FIELD"


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_attempts_in_field_names_are_unknown_fields(name: str) -> None:
    attempts = [
        {"select_columns": [name]},
        contact_vql(where={"keyword_match": {"must": {name: ["x"]}}}),
        contact_vql(where={"range_query": {"must": {name: {"gt": 1}}}}),
        contact_vql(order_by=[{"order_by": name}]),
    ]
    for vql in attempts:
        with pytest.raises(UnknownFieldError):
            resolve(vql, COMPANY)


@pytest.mark.parametrize("name", [*INJECTIONS, "Uuid"])
def test_sql_identifiers_outside_the_catalog_shape_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="catalog identifier"):
        quote_identifier(name)


def test_values_only_travel_as_bind_parameters() -> None:
    hostile = "x'; DROP TABLE contacts; --"
    where = {
        "keyword_match": {"must": {"country": [hostile]}, "must_not": {"title": hostile}},
        "range_query": {"must": {"email_verified_at": {"gte": "2024-01-01T00:00:00Z"}}},
    }
    query = resolve(
        {"select_columns": ["id", "email"], "where": where, "order_by": [{"order_by": "city"}]}
    )
    statements = [
        range_rows(query, start=[hostile, UUID(int=1)], end=[hostile + "z", UUID(int=2)]),
        range_end(query, start=[hostile, UUID(int=1)], size=1000),
    ]
    for sql, args in statements:
        assert hostile not in sql
        assert "DROP" not in sql
        assert [hostile] in args
        assert hostile in args
        placeholders = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert placeholders == set(range(1, len(args) + 1))


@pytest.mark.parametrize(
    ("vql", "where"),
    [
        (contact_vql(where={"range_query": {"must": {"email": {"gte": "a"}}}}), "range_query"),
        (contact_vql(where={"range_query": {"must": {"company_id": {"gte": "a"}}}}), "range"),
        (contact_vql(where={"range_query": {"must": {"id": {"gte": "a"}}}}), "range"),
        (contact_vql(where={"range_query": {"must": {"email_verified_at": {}}}}), "at least"),
        (contact_vql(where={"range_query": {"must": {"email_verified_at": {"ge": 1}}}}), "ge"),
        (contact_vql(where={"range_query": {"must": {"email_verified_at": {"gt": 1}}}}), "ISO"),
        (contact_vql(where={"range_query": {"must": {"email_verified_at": {"gt": "x"}}}}), "ISO"),
        (contact_vql(where={"range_query": {"must": {"email_verified_at": 5}}}), "range_query"),
        (contact_vql(where={"range_query": {"should": {}}}), "should"),
        (contact_vql(where={"keyword_match": {"must": {"email_verified_at": "x"}}}), "range"),
        (contact_vql(where={"keyword_match": {"must": {"country": []}}}), "at least one"),
        (contact_vql(where={"keyword_match": {"must": {"country": 5}}}), "strings"),
        (contact_vql(where={"keyword_match": {"must": {"country": True}}}), "country"),
        (contact_vql(where={"keyword_match": {"must": {"country": {"a": 1}}}}), "country"),
        (contact_vql(where={"keyword_match": {"must": {"company_id": "nope"}}}), "UUID"),
        (contact_vql(where={"keyword_match": {"must": ["country"]}}), "must"),
        (contact_vql(where={"text_matches": {}}), "text_matches"),
        (contact_vql(where=[]), "where"),
        (contact_vql(order_by=[{"order_by": "email", "order_direction": "up"}]), "direction"),
        (contact_vql(order_by=[{"order_by": "email"}, {"order_by": "email"}]), "already"),
        (contact_vql(order_by={"order_by": "email"}), "order_by"),
        (contact_vql(limit=0), "limit"),
        (contact_vql(limit=10_001), "limit"),
        (contact_vql(limit="500"), "limit"),
        (contact_vql(limit=True), "limit"),
        (contact_vql(page=2), "page"),
        ({"select_columns": "email"}, "select_columns"),
        ({"select_columns": [1]}, "select_columns"),
        ("select everything", "vql"),
    ],
)
def test_malformed_vql_answers_err_invalid_vql(vql: Any, where: str) -> None:
    with pytest.raises(InvalidVqlError, match=where) as caught:
        resolve(vql)
    assert caught.value.code == "ERR_INVALID_VQL"
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    ("field", "value"),
    [("employees_count", 2**31), ("employees_count", -(2**31) - 1), ("annual_revenue", 2**63)],
)
def test_integers_must_fit_the_column_type(field: str, value: int) -> None:
    where = {"range_query": {"must": {field: {"lte": value}}}}
    with pytest.raises(InvalidVqlError, match=field):
        resolve({"select_columns": ["name"], "where": where}, COMPANY)


def test_text_arrays_cannot_be_sort_keys_or_ranges() -> None:
    vql = {"select_columns": ["name"], "order_by": [{"order_by": "industries"}]}
    with pytest.raises(InvalidVqlError, match="sorted"):
        resolve(vql, COMPANY)
    where = {"range_query": {"must": {"industries": {"gte": "a"}}}}
    with pytest.raises(InvalidVqlError, match="integer and timestamp"):
        resolve({"select_columns": ["name"], "where": where}, COMPANY)


def test_vql_errors_are_request_errors_rendered_with_their_code() -> None:
    with pytest.raises(ConnectraError) as caught:
        resolve(contact_vql(limit=0))
    assert caught.value.render().startswith("ERR_INVALID_VQL: vql.limit:")


@pytest.mark.parametrize(
    ("prefix", "key"),
    [("uploads", "uploads/{u}.csv"), ("exports/", "exports/{u}.csv"), ("", "{u}.csv")],
)
def test_the_export_key_is_the_prefix_then_the_job_uuid(prefix: str, key: str) -> None:
    job_uuid = UUID(int=42)
    assert export_key(prefix, job_uuid) == key.format(u=job_uuid)
