"""Blocks of CSV records: the one-call parse agrees with the per-record parse, and batches."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from connectra.processors.importing import blocks as import_blocks
from connectra.processors.importing.batches import BatchCutter, RecordBatch
from connectra.processors.importing.reader import CsvRecord, CsvRecordReader, RecordBlock

INPUTS = [
    b"id,name\n1,a\n2,b\n3,c\n",
    b"id,name\r\n1,a\r\n2,b\r\n3,c",
    b'id,name\n1,"a, b"\n2,"say ""hi"""\n3,\xc3\xbc\n',
    b'id,name\n1,"multi\nline"\n2,b\n',
    b'id,name\r\n1,"multi\r\nline"\r\n2,b\r\n',
    b"id,name\n1,a\r\n2,b\n",  # mixed line ends
    b"id,name\n1,a\rb\n2,c\n",  # a stray carriage return
    b"id,name\n\n1,a\n\n\n2,b\n\n",  # blank lines
    b"id,name\n1,a\x00b\n2,\\.\n3,c",  # NUL, end-of-data marker, no final line end
    b'id,name\n1,"open\n2,b\n',  # a quote left open
    b"id,name\n1,\xff\xfe\n2,b\n",  # invalid UTF-8
    b'id,name\n1,ab"c\n2,"x"y\n',  # stray quotes
    b'id,a,b\n"",,""\n2,"""","x"""\n3,"a"",""b",""\n',  # quoted empty fields
    b'id,a,b\r\n1,"",\r\n2,"x\r\n""",""\r\n"",,x\r\n',  # the same across lines
    b'id,a\n1,"",\xff\n2,"",\n',  # beside invalid UTF-8
    b'"id","a"\r\n"1",""\r\n"2","x ""y"""\r\n"",""\r\n',  # every field quoted
]


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """`data` cut into pieces of `size` bytes."""
    return (data[i : i + size] for i in range(0, len(data), size))


def blocks_of(data: bytes, size: int) -> list[RecordBlock]:
    """Every block of `data`, fed in chunks of `size` bytes."""
    reader = CsvRecordReader()
    blocks = [block for chunk in chunked(data, size) for block in reader.feed_blocks(chunk)]
    return blocks + reader.finish_blocks()


def records_of(data: bytes, size: int) -> list[CsvRecord]:
    """Every record of `data`, fed in chunks of `size` bytes."""
    reader = CsvRecordReader()
    return [r for chunk in chunked(data, size) for r in reader.feed(chunk)] + reader.finish()


@pytest.mark.parametrize("data", INPUTS)
@pytest.mark.parametrize("size", [1, 5, 16, 1 << 20])
def test_the_one_call_parse_gives_the_records_of_the_per_record_parse(
    data: bytes, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = records_of(data, size)
    monkeypatch.setattr(import_blocks, "_one_line_records", lambda *args: None)
    assert fast == records_of(data, size)


@pytest.mark.parametrize(
    ("data", "plain", "line_end"),
    [
        (b"id,name\n1,a\n", True, "\n"),
        (b"id,name\r\n1,a\r\n", True, "\r\n"),
        (b"id,name\r\n1,a", True, "\r\n"),  # the last line comes in a block of its own
        (b'id,name\n1,"a"\n', False, "\n"),
        (b"id,name\n1,a\x00\n", False, "\n"),
        (b"id,name\n1,\\.\n", False, "\n"),
        (b"id,name\n1,back\\slash\n", True, "\n"),
    ],
)
def test_blocks_say_whether_their_bytes_can_be_copied_as_they_are(
    data: bytes, plain: bool, line_end: str
) -> None:
    block = blocks_of(data, len(data))[0]
    assert (block.dense, block.plain, block.line_end) == (True, plain, line_end)


def test_blocks_with_blank_lines_or_bad_records_are_parsed_record_by_record() -> None:
    (block,) = blocks_of(b"id\n\n1\n\xff\n2\n", 100)
    assert (block.dense, block.plain) == (False, False)
    assert block.rows == [["id"], ["1"], [], ["2"]]
    assert list(block.lines) == [1, 3, 4, 5]
    assert block.errors == {2: ("invalid UTF-8", "\ufffd\n")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"",,""', (0, 2)),
        ('a,"",b', (1,)),
        (',"""",""""""', ()),
        ('"a,"",b","",x""', (1,)),  # a quoted comma and doubled quotes before the empty one
        ('"x"y,"",', (1,)),  # a quoted field running on as text (non-strict)
        ('ab"",""', (1,)),  # quotes inside an unquoted field are text
        ('"two\nlines","",""\r\n', (1, 2)),
    ],
)
def test_empty_fields_written_between_quotes_are_found(
    text: str, expected: tuple[int, ...]
) -> None:
    fields = next(iter(import_blocks._CSV.reader(io.StringIO(text, newline=""))))
    assert import_blocks.quoted_empty_fields(text, fields) == expected


@pytest.mark.parametrize("size", [1, 7, 1 << 20])
def test_records_say_which_empty_fields_were_quoted(size: int) -> None:
    data = b'id,a,b\n1,"",\n2,,""\n3,"x\n",""\n4,,\n"",,\n'
    records = records_of(data, size)
    assert [r.fields for r in records][1:] == [
        ["1", "", ""],
        ["2", "", ""],
        ["3", "x\n", ""],
        ["4", "", ""],
        ["", "", ""],
    ]
    assert [r.quoted_empty for r in records] == [(), (1,), (2,), (2,), (), (0,)]


@pytest.mark.parametrize(
    ("data", "every_field_quoted"),
    [
        (b'"id","a"\n"1",""\n"2","say ""hi"""\n', True),
        (b'"id","a"\n"1",""\n2,""\n', False),  # one bare field
        (b'"id","a"\n"1",""\n"2","x"y\n', True),  # text after a closing quote: still quoted
        (b'"id","a"\n"1",""\n"2","x"y"\n', False),  # with a quote: fewer quotes than counted
        (b'"id","a"\n"1",""\n"2",x""\n', False),  # quotes inside a bare field
        (b"id,a\n1,\n", False),
    ],
)
def test_a_block_knows_when_every_field_is_quoted(data: bytes, every_field_quoted: bool) -> None:
    (block,) = blocks_of(data, len(data))
    assert block.every_field_quoted is every_field_quoted
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as patched:
        patched.setattr(import_blocks, "_one_line_records", lambda *args: None)
        (reference,) = blocks_of(data, len(data))
    assert [block.quoted_empty_of(i) for i in range(len(block))] == [
        reference.quoted_empty_of(i) for i in range(len(reference))
    ]


def test_a_batch_of_blocks_quoted_every_way_gives_each_records_quoted_empty_fields() -> None:
    quoted_all, _, _ = import_blocks.parse_block(
        b'"1","",""\n"2","x",""\n', 0, 2, 1 << 20, 99, False
    )
    some, _, _ = import_blocks.parse_block(b'3,"",\n4,,\n', 22, 4, 1 << 20, 99, False)
    assert (quoted_all.every_field_quoted, some.every_field_quoted) == (True, False)
    cutter = BatchCutter(4)
    (batch,) = cutter.add(quoted_all) + cutter.add(some)
    assert batch.quoted_empties() == {0: (1, 2), 1: (2,), 2: (1,)}
    assert not batch.every_field_quoted()


def test_a_batch_gives_the_quoted_empty_fields_of_its_records() -> None:
    blocks = blocks_of(b'id,a\n1,""\n2,\n3,""\n', 8)
    cutter = BatchCutter(2)
    batches = [b for i, block in enumerate(blocks) for b in cutter.add(block, 1 if i == 0 else 0)]
    batches += cutter.finish()
    assert [b.quoted_empties() for b in batches] == [{0: (1,)}, {0: (1,)}]


def test_batches_cut_across_blocks_and_know_their_bytes_lines_and_end() -> None:
    data = b"id\n" + b"".join(b"%d\n" % i for i in range(10))
    blocks = blocks_of(data, 7)  # a block every few lines
    cutter = BatchCutter(4)
    batches = cutter.add(blocks[0], 1)
    for block in blocks[1:]:
        batches += cutter.add(block)
    batches += cutter.finish()

    assert [len(b) for b in batches] == [4, 4, 2]
    assert [[row[0] for row in b.rows()] for b in batches][1] == ["4", "5", "6", "7"]
    assert b"".join(batches[1].raw() or []) == b"4\n5\n6\n7\n"
    assert b"".join(batches[1].raw([0, 3]) or []) == b"4\n7\n"
    assert batches[1].line(0) == 6
    assert batches[1].end() == (data.index(b"8\n"), 10)
    assert batches[-1].end() == (len(data), 12)


def test_a_batch_of_records_built_one_by_one_has_no_bytes() -> None:
    batch = RecordBatch.of_records([CsvRecord(2, 10, 3, ["a"])])
    assert (batch.rows(), batch.line(0), batch.raw()) == ([["a"]], 2, None)
