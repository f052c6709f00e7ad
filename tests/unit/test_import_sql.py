"""The import's SQL: only catalog identifiers, and an upsert that skips unchanged rows."""

from __future__ import annotations

import pytest

from connectra.catalog import COMPANY, CONTACT
from connectra.processors.importing.sql import identifier, staging_create, staging_upsert


def test_identifiers_come_only_from_the_catalog() -> None:
    assert identifier(CONTACT, "email") == '"email"'
    with pytest.raises(ValueError, match="not a field"):
        identifier(CONTACT, 'email"; DROP TABLE contacts; --')
    with pytest.raises(ValueError, match="not a field"):
        staging_upsert(CONTACT, ("uuid", "name"))


def test_the_upsert_writes_only_the_file_columns_and_only_when_they_differ() -> None:
    sql = " ".join(staging_upsert(COMPANY, ("uuid", "name", "industries")).split())
    assert 'INSERT INTO companies AS target ("uuid", "name", "industries")' in sql
    assert "ON CONFLICT (uuid) DO UPDATE" in sql
    assert (
        'SET "name" = EXCLUDED."name", "industries" = EXCLUDED."industries", updated_at = now()'
        in sql
    )
    assert (
        'WHERE (target."name", target."industries") IS DISTINCT FROM '
        '(EXCLUDED."name", EXCLUDED."industries")'
    ) in sql


def test_a_uuid_only_file_inserts_new_rows_and_updates_nothing() -> None:
    sql = " ".join(staging_upsert(CONTACT, ("uuid",)).split())
    assert sql.endswith("ON CONFLICT (uuid) DO NOTHING")


def test_the_staging_table_has_every_field_and_empties_on_commit() -> None:
    sql = " ".join(staging_create(CONTACT).split())
    assert sql.startswith("CREATE TEMP TABLE import_staging_contact ON COMMIT DELETE ROWS AS")
    assert sql.endswith("FROM contacts WITH NO DATA")
