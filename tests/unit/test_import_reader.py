"""Incremental CSV reading: encodings, quoting, bad records, chunking and resuming."""

from __future__ import annotations

import csv
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Iterator

import pytest

from connectra.processors.importing.reader import (
    INVALID_UTF8,
    RECORD_TOO_LARGE,
    STRAY_CARRIAGE_RETURN,
    UNTERMINATED_QUOTE,
    CsvRecord,
    CsvRecordReader,
    iter_record_batches,
    iter_records,
)

SAMPLE = (
    b"\xef\xbb\xbf"
    b"id,name,note\r\n"
    b'1,"Smith, J","line one\r\nline two"\r\n'
    b"\n"
    b'2,Z\xc3\xbcrich,"say ""hi"""\n'
    b"3,bad \xff byte,x\n"
    b'4,\xe6\x97\xa5\xe6\x9c\xac,"multi\n\nline"\n'
    b"5,last,no newline"
)


def parse(data: bytes, chunk_size: int | None = None, **options: int) -> list[CsvRecord]:
    """All records of `data`, fed in chunks of `chunk_size` bytes (all at once by default)."""
    return parse_chunks(chunked(data, chunk_size or max(len(data), 1)), **options)


def parse_chunks(chunks: Iterable[bytes], **options: int) -> list[CsvRecord]:
    """All records of the chunks, fed in order."""
    reader = CsvRecordReader(**options)
    records = [record for chunk in chunks for record in reader.feed(chunk)]
    return records + reader.finish()


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """`data` cut into pieces of `size` bytes."""
    return (data[i : i + size] for i in range(0, len(data), size))


def fields(records: list[CsvRecord]) -> list[list[str]]:
    """The fields of each record."""
    return [record.fields for record in records]


async def stream(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` as an async stream of chunks."""
    for chunk in chunked(data, size):
        yield chunk


def test_sample_records_have_start_lines_end_offsets_and_fields() -> None:
    records = parse(SAMPLE)
    assert [(r.line, r.next_line, r.error) for r in records] == [
        (1, 2, None),
        (2, 4, None),
        (5, 6, None),
        (6, 7, INVALID_UTF8),
        (7, 10, None),
        (10, 11, None),
    ]
    assert fields(records)[:3] == [
        ["id", "name", "note"],
        ["1", "Smith, J", "line one\r\nline two"],
        ["2", "Zürich", 'say "hi"'],
    ]
    assert fields(records)[4:] == [["4", "日本", "multi\n\nline"], ["5", "last", "no newline"]]
    ends = [r.end_offset for r in records]
    assert ends[-1] == len(SAMPLE)
    assert all(SAMPLE[end - 1 : end] == b"\n" for end in ends[:-1])
    assert SAMPLE[ends[2] : ends[3]] == b"3,bad \xff byte,x\n"


def test_leading_bom_is_stripped_but_counted_in_offsets() -> None:
    records = parse(b"\xef\xbb\xbfa,b\n1,2\n")
    assert fields(records) == [["a", "b"], ["1", "2"]]
    assert records[0].end_offset == 3 + 4


def test_crlf_and_lf_line_endings_give_the_same_fields() -> None:
    lf = parse(b'a,b\n1,"x\ny"\n2,3\n')
    crlf = parse(b'a,b\r\n1,"x\ny"\r\n2,3\r\n')
    assert fields(lf) == fields(crlf) == [["a", "b"], ["1", "x\ny"], ["2", "3"]]
    assert [r.line for r in lf] == [r.line for r in crlf] == [1, 2, 4]


def test_quoted_newlines_stay_in_the_field_and_lines_count_physically() -> None:
    records = parse(b'h\n"one\ntwo\nthree"\nnext\n')
    assert fields(records) == [["h"], ["one\ntwo\nthree"], ["next"]]
    assert [(r.line, r.next_line) for r in records] == [(1, 2), (2, 5), (5, 6)]


def test_doubled_quotes_become_one_quote() -> None:
    assert fields(parse(b'"a ""quoted"" word",""""\n')) == [['a "quoted" word', '"']]


def test_invalid_utf8_row_is_reported_and_the_rows_around_it_still_come() -> None:
    records = parse(b"h1,h2\nok,1\nbad,\xc3\x28\nok,2\n")
    assert [(r.line, r.error) for r in records] == [
        (1, None),
        (2, None),
        (3, INVALID_UTF8),
        (4, None),
    ]
    bad = records[2]
    assert bad.is_bad
    assert bad.fields == []
    assert bad.raw == "bad,\ufffd(\n"
    assert fields(records)[3] == ["ok", "2"]


def test_unbalanced_quote_is_one_bad_record_from_its_start_line() -> None:
    records = parse(b'h\nok\n"never closed\nmore\nrows\n')
    assert [(r.line, r.error) for r in records] == [(1, None), (2, None), (3, UNTERMINATED_QUOTE)]
    assert records[-1].raw == '"never closed\nmore\nrows\n'
    assert records[-1].end_offset == len(b'h\nok\n"never closed\nmore\nrows\n')


def test_stray_carriage_return_is_a_bad_record_and_the_stream_goes_on() -> None:
    records = parse(b"h\na\rb\nc\n")
    assert [(r.line, r.error) for r in records] == [
        (1, None),
        (2, STRAY_CARRIAGE_RETURN),
        (3, None),
    ]


def test_empty_file_yields_nothing() -> None:
    assert parse(b"") == []
    assert parse(b"\xef\xbb\xbf") == []


def test_header_only_yields_the_header() -> None:
    assert fields(parse(b"a,b,c\n")) == [["a", "b", "c"]]
    assert fields(parse(b"a,b,c")) == [["a", "b", "c"]]


def test_blank_lines_are_counted_but_not_yielded() -> None:
    records = parse(b"h\n\n\r\nx\n\n")
    assert [(r.line, r.fields) for r in records] == [(1, ["h"]), (4, ["x"])]


def test_one_megabyte_field_is_read_without_touching_the_global_csv_limit() -> None:
    limit = csv.field_size_limit()
    big = "é" * (512 * 1024)  # 1 MiB of UTF-8, far over the csv module's 128 KiB default
    data = f'id,blob\n1,"{big}"\n2,small\n'.encode()
    records = parse(data, chunk_size=64 * 1024)
    assert fields(records) == [["id", "blob"], ["1", big], ["2", "small"]]
    assert csv.field_size_limit() == limit


def test_record_over_the_default_max_is_one_bad_record_and_the_stream_goes_on() -> None:
    data = b'h\n1,"' + b"x" * (17 * 1024 * 1024) + b'"\n2,after\n'
    records = parse(data, chunk_size=256 * 1024)
    assert [(r.line, r.error) for r in records] == [(1, None), (2, RECORD_TOO_LARGE), (3, None)]
    assert records[1].raw == '1,"' + "x" * 4093
    assert records[1].end_offset == len(data) - len(b"2,after\n")
    assert fields(records)[2] == ["2", "after"]


def test_oversized_record_memory_stays_bounded_by_the_max() -> None:
    line = b"x" * 1023 + b"\n"

    def chunks() -> Iterator[bytes]:
        yield b'h\n"'
        for _ in range(16 * 1024):  # a 16 MiB quoted field of short lines
            yield line
        yield b'"\nafter\n'

    tracemalloc.start()
    try:
        records = parse_chunks(chunks(), max_record_bytes=256 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(r.line, r.error) for r in records] == [
        (1, None),
        (2, RECORD_TOO_LARGE),
        (16 * 1024 + 3, None),
    ]
    assert peak < 4 * 1024 * 1024


def test_unterminated_quote_in_an_oversized_record_is_reported_at_the_end() -> None:
    data = b'h\n"open' + b"\nabc" * 100
    records = parse(data, chunk_size=7, max_record_bytes=64)
    assert [(r.line, r.error, r.end_offset) for r in records] == [
        (1, None, 2),
        (2, UNTERMINATED_QUOTE, len(data)),
    ]


@pytest.mark.parametrize("max_record_bytes", [None, 40])
def test_records_do_not_depend_on_how_the_bytes_are_chunked(max_record_bytes: int | None) -> None:
    data = SAMPLE + b'\n"a long record, ' + b"padded " * 8 + b'"\n6,end\n'
    options = {} if max_record_bytes is None else {"max_record_bytes": max_record_bytes}
    whole = parse(data, **options)
    if max_record_bytes is not None:
        assert RECORD_TOO_LARGE in [r.error for r in whole]
    for split in range(len(data) + 1):
        assert parse_chunks([data[:split], data[split:]], **options) == whole, split
    for size in (1, 2, 3, 5, 7, 11, 64):
        assert parse(data, chunk_size=size, **options) == whole, size


def test_resuming_at_any_record_end_gives_the_same_tail() -> None:
    whole = parse(SAMPLE)
    for index, record in enumerate(whole):
        tail = parse(
            SAMPLE[record.end_offset :],
            chunk_size=5,
            start_offset=record.end_offset,
            start_line=record.next_line,
        )
        assert tail == whole[index + 1 :], index


def test_resumed_stream_does_not_strip_a_bom_like_prefix() -> None:
    records = parse(b"\xef\xbb\xbfx\n", start_offset=10, start_line=3)
    assert [(r.line, r.error) for r in records] == [(3, None)]
    assert records[0].fields == ["\ufeffx"]


async def test_iter_records_streams_an_async_iterator_of_chunks() -> None:
    records = [record async for record in iter_records(stream(SAMPLE, 4))]
    assert records == parse(SAMPLE)


async def test_iter_record_batches_groups_records_by_chunk_and_resumes() -> None:
    whole = parse(SAMPLE)
    start = whole[1]
    batches = [
        batch
        async for batch in iter_record_batches(
            stream(SAMPLE[start.end_offset :], 16),
            start_offset=start.end_offset,
            start_line=start.next_line,
        )
    ]
    assert all(batches)
    assert [record for batch in batches for record in batch] == whole[2:]
