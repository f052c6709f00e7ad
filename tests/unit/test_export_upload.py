"""The bounded buffer between an export's source and its upload."""

from __future__ import annotations

import asyncio

import pytest

from connectra.processors.exporting.upload import BLOCK_BYTES, BUFFERED_BLOCKS, _Blocks


async def test_bytes_come_out_in_blocks_in_order_with_their_rows() -> None:
    blocks = _Blocks()
    data = bytes(range(256)) * (BLOCK_BYTES // 256 * 2 + 3)
    await blocks.add(data[:1000], 0)
    await blocks.add(data[1000:], 7)
    await blocks.add(b"", 5)
    await blocks.close()
    received = []
    while (block := await blocks.get()) is not None:
        received.append(block)
    assert [len(b) for b, _ in received] == [BLOCK_BYTES, BLOCK_BYTES, len(data) - 2 * BLOCK_BYTES]
    assert b"".join(b for b, _ in received) == data
    assert sum(rows for _, rows in received) == 12


async def test_the_source_waits_while_every_block_is_queued() -> None:
    blocks = _Blocks()
    for _ in range(BUFFERED_BLOCKS):
        await asyncio.wait_for(blocks.add(b"x" * BLOCK_BYTES, 1), timeout=1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(blocks.add(b"x" * BLOCK_BYTES, 1), timeout=0.1)
    assert await blocks.get() is not None
