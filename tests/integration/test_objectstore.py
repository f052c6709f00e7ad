"""ObjectStore against a moto S3 server: streaming, multipart upload and abort, errors, presign."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from connectra.errors import (
    BucketNotFound,
    InvalidRange,
    ObjectChanged,
    ObjectNotFound,
    ObjectStoreUnavailable,
)
from connectra.objectstore import MIN_PART_SIZE, ObjectStore
from tests.services import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY, bucket_keys

MIB = 1024 * 1024


async def read_all(
    store: ObjectStore, bucket: str, key: str, start: int = 0, if_match: str | None = None
) -> list[bytes]:
    """Every chunk `iter_object` yields."""
    async with contextlib.aclosing(store.iter_object(bucket, key, start, if_match)) as chunks:
        return [chunk async for chunk in chunks]


async def pending_uploads(store: ObjectStore, bucket: str) -> list[object]:
    """The multipart uploads started and neither completed nor aborted."""
    response = await store.client.list_multipart_uploads(Bucket=bucket)
    return list(response.get("Uploads", []))


async def test_iter_object_streams_a_large_object_in_several_chunks(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    data = os.urandom(3 * MIB)
    await object_store.put_bytes(s3_bucket, "big.bin", data)
    chunks = await read_all(object_store, s3_bucket, "big.bin")
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) <= 256 * 1024
    assert b"".join(chunks) == data


async def test_iter_object_from_an_offset_streams_only_the_tail(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    data = os.urandom(MIB + 123)
    await object_store.put_bytes(s3_bucket, "k", data)
    for start in (1, 4096, MIB, len(data) - 1):
        assert b"".join(await read_all(object_store, s3_bucket, "k", start)) == data[start:]


async def test_iter_object_from_the_exact_end_yields_nothing(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await object_store.put_bytes(s3_bucket, "k", b"0123456789")
    assert await read_all(object_store, s3_bucket, "k", 10) == []


async def test_iter_object_past_the_end_raises_invalid_range(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await object_store.put_bytes(s3_bucket, "k", b"0123456789")
    with pytest.raises(InvalidRange) as caught:
        await read_all(object_store, s3_bucket, "k", 11)
    assert caught.value.code == "ERR_S3_INVALID_RANGE"


async def test_head_returns_the_size(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await object_store.put_bytes(s3_bucket, "k", b"x" * 1234)
    assert await object_store.head(s3_bucket, "k") == 1234


async def test_multipart_upload_of_several_parts_reads_back_exactly(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    data = os.urandom(12 * MIB + 777)
    async with object_store.multipart_upload(
        s3_bucket, "out.csv", part_size=MIN_PART_SIZE
    ) as writer:
        for start in range(0, len(data), 300_001):  # writes that straddle part boundaries
            await writer.write(data[start : start + 300_001])
    head = await object_store.client.head_object(Bucket=s3_bucket, Key="out.csv")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 MiB, 5 MiB, the rest
    assert head["ContentType"] == "text/csv"
    assert b"".join(await read_all(object_store, s3_bucket, "out.csv")) == data
    assert await pending_uploads(object_store, s3_bucket) == []


async def test_multipart_upload_aborts_on_exception_leaving_no_object_nor_pending_upload(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:

    async def failing_export() -> None:
        async with object_store.multipart_upload(
            s3_bucket, "out.csv", part_size=MIN_PART_SIZE
        ) as writer:
            await writer.write(os.urandom(6 * MIB))  # one part already uploaded
            assert len(await pending_uploads(object_store, s3_bucket)) == 1
            raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        await failing_export()
    assert await pending_uploads(object_store, s3_bucket) == []
    assert await bucket_keys(object_store, s3_bucket) == []


async def test_multipart_upload_aborts_when_its_task_is_cancelled(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    part_uploaded = asyncio.Event()

    async def export() -> None:
        async with object_store.multipart_upload(
            s3_bucket, "out.csv", part_size=MIN_PART_SIZE
        ) as writer:
            await writer.write(os.urandom(6 * MIB))
            part_uploaded.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(export())
    await part_uploaded.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending_uploads(object_store, s3_bucket) == []
    assert await bucket_keys(object_store, s3_bucket) == []


async def test_abort_still_completes_when_the_task_is_cancelled_again_during_it(
    object_store: ObjectStore,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    part_uploaded, abort_started, release_abort = (asyncio.Event() for _ in range(3))
    real_abort = object_store.client.abort_multipart_upload

    async def slow_abort(**params: Any) -> Any:
        abort_started.set()
        await release_abort.wait()
        return await real_abort(**params)

    monkeypatch.setattr(object_store.client, "abort_multipart_upload", slow_abort)

    async def export() -> None:
        async with object_store.multipart_upload(
            s3_bucket, "out.csv", part_size=MIN_PART_SIZE
        ) as writer:
            await writer.write(os.urandom(6 * MIB))
            part_uploaded.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(export())
    await part_uploaded.wait()
    task.cancel()
    await abort_started.wait()
    task.cancel()
    await asyncio.sleep(0.01)  # the point: the second cancel does not end the held abort
    assert not task.done()
    release_abort.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending_uploads(object_store, s3_bucket) == []


async def test_the_upload_id_is_handed_over_before_the_first_part(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    parts_then: list[int] = []

    async def on_start(upload_id: str) -> None:
        parts = await object_store.client.list_parts(
            Bucket=s3_bucket, Key="exports/a.csv", UploadId=upload_id
        )
        parts_then.append(len(parts.get("Parts", [])))

    upload = object_store.multipart_upload(
        s3_bucket, "exports/a.csv", part_size=MIN_PART_SIZE, on_start=on_start
    )
    async with upload as writer:
        await writer.write(b"x" * (2 * MIN_PART_SIZE))
    assert parts_then == [0]
    assert await object_store.head(s3_bucket, "exports/a.csv") == 2 * MIN_PART_SIZE


async def test_a_left_upload_is_listed_under_its_prefix_and_aborted_once(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    client = object_store.client
    left = await client.create_multipart_upload(Bucket=s3_bucket, Key="exports/left.csv")
    await client.create_multipart_upload(Bucket=s3_bucket, Key="other/x.csv")
    listed = [upload async for upload in object_store.pending_uploads(s3_bucket, "exports/")]
    assert [(upload.key, upload.upload_id) for upload in listed] == [
        ("exports/left.csv", left["UploadId"])
    ]
    assert await object_store.abort_upload(s3_bucket, "exports/left.csv", left["UploadId"])
    assert not await object_store.abort_upload(s3_bucket, "exports/left.csv", left["UploadId"])
    assert [upload async for upload in object_store.pending_uploads(s3_bucket, "exports/")] == []


async def test_empty_upload_gives_an_empty_object(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    async with object_store.multipart_upload(s3_bucket, "empty.csv"):
        pass
    assert await object_store.head(s3_bucket, "empty.csv") == 0
    assert await read_all(object_store, s3_bucket, "empty.csv") == []


async def test_upload_smaller_than_a_part_gives_the_object(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    async with object_store.multipart_upload(s3_bucket, "small.csv") as writer:
        await writer.write(b"a,b\n")
        await writer.write(b"1,2\n")
    assert b"".join(await read_all(object_store, s3_bucket, "small.csv")) == b"a,b\n1,2\n"
    assert await pending_uploads(object_store, s3_bucket) == []


async def test_part_size_below_the_s3_minimum_is_refused(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    with pytest.raises(ValueError, match="part_size"):
        async with object_store.multipart_upload(s3_bucket, "k", part_size=MIN_PART_SIZE - 1):
            pass


async def test_missing_object_raises_object_not_found(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await read_all(object_store, s3_bucket, "missing.csv")
    assert caught.value.code == "ERR_S3_OBJECT_NOT_FOUND"
    assert caught.value.transient is False
    assert isinstance(caught.value.__cause__, ClientError)
    with pytest.raises(ObjectNotFound):
        await object_store.head(s3_bucket, "missing.csv")


async def test_missing_bucket_raises_bucket_not_found(
    object_store: ObjectStore,
) -> None:
    bucket = "no-such-bucket-here"
    with pytest.raises(BucketNotFound) as caught:
        await read_all(object_store, bucket, "k")
    assert caught.value.code == "ERR_S3_BUCKET_NOT_FOUND"
    assert isinstance(caught.value.__cause__, ClientError)
    with pytest.raises(BucketNotFound):
        await object_store.head(bucket, "k")
    with pytest.raises(BucketNotFound):
        await object_store.put_bytes(bucket, "k", b"x")
    with pytest.raises(BucketNotFound):
        async with object_store.multipart_upload(bucket, "k") as writer:
            await writer.write(b"x")


async def test_unreachable_endpoint_raises_a_transient_unavailable_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    store = ObjectStore(
        f"http://127.0.0.1:{port}",
        S3_REGION,
        S3_ACCESS_KEY_ID,
        S3_SECRET_ACCESS_KEY,
        max_attempts=1,
    )
    async with store:
        with pytest.raises(ObjectStoreUnavailable) as caught:
            await store.head("bucket-one", "k")
    assert caught.value.code == "ERR_S3_UNAVAILABLE"
    assert caught.value.transient is True
    assert isinstance(caught.value.__cause__, BotoCoreError)


async def test_delete_removes_the_object_and_tolerates_a_missing_one(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    await object_store.put_bytes(s3_bucket, "k", b"x")
    await object_store.delete(s3_bucket, "k")
    await object_store.delete(s3_bucket, "k")
    assert await bucket_keys(object_store, s3_bucket) == []


async def test_presigned_put_then_presigned_get_work_with_a_plain_http_client(
    object_store: ObjectStore,
    s3_bucket: str,
) -> None:
    body = b"first_name,last_name\nAda,Lovelace\n"
    put_url = await object_store.presign_put(s3_bucket, "uploads/c.csv", 300, "text/csv")
    get_url = await object_store.presign_get(s3_bucket, "uploads/c.csv", 300)
    async with aiohttp.ClientSession() as http:
        async with http.put(put_url, data=body, headers={"Content-Type": "text/csv"}) as put:
            assert put.status == 200, await put.text()
        async with http.get(get_url) as got:
            assert got.status == 200
            assert await got.read() == body
    assert "X-Amz-Signature=" in put_url  # signature version 4


async def test_a_read_for_an_old_etag_fails_once_the_object_is_replaced(
    object_store: ObjectStore, s3_bucket: str
) -> None:
    await object_store.put_bytes(s3_bucket, "f.csv", b"first version\n")
    checked = await object_store.stat(s3_bucket, "f.csv")
    assert await read_all(object_store, s3_bucket, "f.csv", if_match=checked.etag) == [
        b"first version\n"
    ]
    await object_store.put_bytes(s3_bucket, "f.csv", b"second version\n")
    for start in (0, 3):
        with pytest.raises(ObjectChanged):
            await read_all(object_store, s3_bucket, "f.csv", start, if_match=checked.etag)
