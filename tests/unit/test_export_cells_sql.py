"""The COPY select list and the one fix-up of COPY's CSV output (the database side is tested in
tests/integration/test_export_csv.py)."""

from __future__ import annotations

import pytest

from connectra.catalog import CONTACT
from connectra.processors.exporting.cells_sql import copy_cells, restore_end_marker
from connectra.processors.exporting.vql import Column


def test_several_columns_turn_empty_text_into_null_and_one_column_null_into_empty() -> None:
    columns = [Column("id", CONTACT.field("uuid")), Column("email", CONTACT.field("email"))]
    assert copy_cells(columns, ['"uuid"', '"email"']) == (
        '"uuid", nullif("email" COLLATE "C", \'\')'
    )
    single = copy_cells([Column("email", CONTACT.field("email"))], ['"email"'])
    assert single == "coalesce((nullif(\"email\" COLLATE \"C\", ''))::text, '')"


@pytest.mark.parametrize(
    ("copied", "written"),
    [
        (b'"\\."\n', b"\\.\n"),
        (b'a\n"\\."\n"\\."\n""\n', b'a\n\\.\n\\.\n""\n'),
        (b'"""\\."""\n', b'"""\\."""\n'),  # the value "\." with its quotes
        (b'"x\n""\\.""\ny"\n', b'"x\n""\\.""\ny"\n'),  # a quoted line inside a value
        (b'"\\.\n"\n', b'"\\.\n"\n'),  # "\.<LF>"
        (b"\\.x\n", b"\\.x\n"),
        (b"", b""),
    ],
)
def test_only_whole_rows_holding_the_end_marker_are_unquoted(copied: bytes, written: bytes) -> None:
    assert restore_end_marker(copied) == written
    assert restore_end_marker(bytearray(copied)) == written
