"""Which batches are COPYed as the file's own bytes, and which as converted rows."""

from __future__ import annotations

import pytest

from connectra.catalog import COMPANY, CONTACT, ServiceSchema
from connectra.processors.importing.batches import BatchCutter, RecordBatch
from connectra.processors.importing.reader import CsvRecordReader
from connectra.processors.importing.rows import RowConverter, read_header
from connectra.processors.importing.verbatim_copy import verbatim_csv

U1 = "6f1c2a8e-0d1b-4c7e-9a55-1f0e2d3c4b5a"
U2 = "00000000-0000-0000-0000-000000000002"
HEADER = "uuid,first_name,company_id,email_verified_at"


def verbatim(source: str, service: ServiceSchema = CONTACT, chunk: int = 1 << 20) -> bytes | None:
    """The bytes the first batch of `source` is COPYed as, or None for converted rows."""
    data = source.encode()
    reader = CsvRecordReader()
    blocks = [
        b for i in range(0, len(data), chunk) for b in reader.feed_blocks(data[i : i + chunk])
    ]
    blocks += reader.finish_blocks()
    header = blocks[0].rows[0]
    cutter = BatchCutter(1000)
    batches = cutter.add(blocks[0], 1)
    for block in blocks[1:]:
        batches += cutter.add(block)
    batch: RecordBatch = (batches + cutter.finish())[0]
    layout = read_header(service, header)
    converted = RowConverter(layout).convert(batch, check_nul=False)
    pieces = verbatim_csv(layout, batch, converted)
    return None if pieces is None else b"".join(pieces)


def test_plain_rows_are_copied_as_they_are_across_chunks_and_line_ends() -> None:
    rows = [f"{U1},Ann,,2024-01-02T10:00:00Z", f"{U2}, Bob ,{U1},2024-01-02 10:00:00.123+05:30"]
    for end in ("\n", "\r\n"):
        source = end.join([HEADER, *rows]) + end
        expected = (end.join(rows) + end).encode()
        assert verbatim(source, chunk=7) == verbatim(source) == expected


def test_a_last_line_without_its_line_end_is_copied() -> None:
    assert verbatim(f"{HEADER}\r\n{U1},Ann,,\r\n{U2},Bob,,") == f"{U1},Ann,,\r\n{U2},Bob,,".encode()


def test_bad_rows_and_earlier_duplicates_are_left_out() -> None:
    source = "\n".join(
        [HEADER, f"{U1},first,,", f"{U2},bad,,yesterday", f"{U2},short", f"{U1},last,,", ""]
    )
    assert verbatim(source) == f"{U1},last,,\n".encode()


@pytest.mark.parametrize(
    "row",
    [
        f'{U1},"quoted",,',  # quotes: PostgreSQL and the csv module differ on stray ones
        f"{U1},a\\.b,,",  # the end-of-data marker
        f"{U1.upper()},Ann,,",  # a uuid PostgreSQL would also accept, but not canonical
        f"{U1},Ann,{{{U2}}},",
        f"{U1},Ann,,2024-01-02T10:00:00.1234567Z",  # rounded by one, cut by the other
        f"{U1},Ann,,2024-01-02T10:00:00+20:00",  # an offset PostgreSQL refuses
        f"{U1},Ann,,20240102T100000",  # basic ISO 8601
    ],
)
def test_rows_postgresql_could_read_differently_are_sent_converted(row: str) -> None:
    assert verbatim(f"{HEADER}\n{row}\n") is None


def test_mixed_line_ends_are_sent_converted() -> None:
    assert verbatim(f"{HEADER}\n{U1},Ann,,\r\n{U2},Bob,,\n") is None


def test_layouts_with_ignored_or_reordered_columns_or_arrays_are_sent_converted() -> None:
    assert verbatim(f"uuid,first_name,colour\n{U1},Ann,blue\n") is None
    assert verbatim(f"first_name,uuid\nAnn,{U1}\n") is not None  # any order: COPY names them
    assert verbatim(f"uuid,name,industries\n{U1},Acme,\n", COMPANY) is None
    assert verbatim(f"uuid,name,employees_count\n{U1},Acme,-12\n", COMPANY) is None  # no row
    assert verbatim(f"uuid,name,employees_count\n{U1},Acme,0012\n", COMPANY) is not None
    assert verbatim(f"uuid,name,employees_count\n{U1},Acme,+12\n", COMPANY) is None
