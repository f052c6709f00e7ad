"""Object storage (S3 and S3-compatible servers) through aioboto3: streamed reads, multipart writes.

One `ObjectStore` holds one client for its whole life. Every failure is an `ObjectStoreError`
with its `ERR_S3_...` code and whether it is transient, the driver's error in `__cause__`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore import exceptions as boto_errors

from connectra.errors import (
    AccessDenied,
    BucketNotFound,
    InvalidRange,
    ObjectChanged,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStoreUnavailable,
)
from connectra.shielding import run_to_the_end

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
READ_CHUNK_SIZE = 256 * 1024


_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidToken",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
    }
)
_TRANSIENT_ERRORS = (
    boto_errors.HTTPClientError,
    boto_errors.ConnectionError,
    boto_errors.IncompleteReadError,
    aiohttp.ClientError,
    OSError,
)
_REQUEST_FAILURES = (
    boto_errors.BotoCoreError,
    boto_errors.ClientError,
    aiohttp.ClientError,
    OSError,
)
_CREDENTIAL_ERRORS = (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError)


def _map_client_error(exc: boto_errors.ClientError, where: str) -> ObjectStoreError:
    """The project error for an error response of the S3 API."""
    code = _error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    message = f"{where}: {code} {exc.response.get('Error', {}).get('Message', '')}".rstrip()
    if code == "NoSuchBucket":
        return BucketNotFound(message)
    if code in _NOT_FOUND_CODES:
        return ObjectNotFound(message)
    if code in _ACCESS_CODES:
        return AccessDenied(message)
    if code == "InvalidRange":
        return InvalidRange(message)
    if code == "PreconditionFailed" or status == 412:
        return ObjectChanged(message)
    if code in _TRANSIENT_CODES or status >= 500:
        return ObjectStoreUnavailable(message)
    return ObjectStoreError(message)


def _map_error(exc: Exception, where: str) -> ObjectStoreError:
    """The project error for any failure of a request."""
    if isinstance(exc, boto_errors.ClientError):
        return _map_client_error(exc, where)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return AccessDenied(f"{where}: {exc}")
    if isinstance(exc, _TRANSIENT_ERRORS):
        return ObjectStoreUnavailable(f"{where}: {exc}")
    return ObjectStoreError(f"{where}: {exc}")


@contextlib.contextmanager
def _mapped_errors(bucket: str, key: str | None = None) -> Iterator[None]:
    """Raise failures of the requests inside as `ObjectStoreError`s."""
    try:
        yield
    except _REQUEST_FAILURES as exc:
        where = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
        raise _map_error(exc, where) from exc


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What a HEAD request tells about an object."""

    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A multipart upload neither completed nor aborted, as ListMultipartUploads tells it."""

    key: str
    upload_id: str
    initiated: datetime


# Called with the id of a multipart upload as soon as it is created, before any part is sent.
UploadStarted = Callable[[str], Awaitable[None]]


class MultipartWriter:
    """Buffers writes into parts and uploads each part as it fills; made by `multipart_upload`.

    Memory holds at most one part plus the last write. The multipart upload is only created when
    the first part fills, so a small or empty object is written with one plain PUT.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        content_type: str,
        part_size: int,
        on_start: UploadStarted | None = None,
    ) -> None:
        self._client = client
        self._on_start = on_start
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._part_size = part_size
        self._buf = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self.bytes_written = 0

    async def write(self, data: bytes) -> None:
        """Add bytes to the object, uploading every part that fills."""
        self._buf += data
        self.bytes_written += len(data)
        while len(self._buf) >= self._part_size:
            await self._upload_part(self._part_size)

    async def complete(self) -> None:
        """Upload what is buffered and make the object visible."""
        if self._upload_id is None:
            with _mapped_errors(self._bucket, self._key):
                await self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=bytes(self._buf),
                    ContentType=self._content_type,
                )
            self._buf.clear()
            return
        if self._buf:
            await self._upload_part(len(self._buf))
        with _mapped_errors(self._bucket, self._key):
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    async def abort(self) -> None:
        """Drop the multipart upload and its parts; failures are logged, not raised."""
        self._buf.clear()
        if self._upload_id is None:
            return
        try:
            with _mapped_errors(self._bucket, self._key):
                await self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
        except ObjectStoreError:
            logger.warning(
                "multipart upload abort failed",
                extra={"action": "s3_abort", "bucket": self._bucket, "key": self._key},
                exc_info=True,
            )

    async def _start(self) -> None:
        """Create the multipart upload, keep its id and hand it to `on_start`."""
        with _mapped_errors(self._bucket, self._key):
            response = await self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type
            )
        self._upload_id = str(response["UploadId"])
        if self._on_start is not None:
            await self._on_start(self._upload_id)

    async def _upload_part(self, size: int) -> None:
        """Upload the first `size` buffered bytes as the next part."""
        if self._upload_id is None:
            # Shielded: an upload created but not recorded could not be aborted.
            await run_to_the_end(self._start())
        if len(self._parts) >= MAX_PARTS:
            raise ObjectStoreError(f"s3://{self._bucket}/{self._key}: more than {MAX_PARTS} parts")
        number = len(self._parts) + 1
        body = bytes(self._buf[:size])
        with _mapped_errors(self._bucket, self._key):
            response = await self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        del self._buf[:size]
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})


class ObjectStore:
    """An S3 client opened once (`async with`) and shared by every call."""

    def __init__(
        self,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        path_style: bool = False,
        max_attempts: int = 5,
        presign_endpoint_url: str | None = None,
    ) -> None:
        self._endpoint_url = endpoint_url
        # Presigned URLs name the endpoint their user reaches, which may not be the one this
        # process reaches (compose: `http://minio:9000` inside, `http://localhost:9000` outside).
        # The host is signed, so they are signed by a client of that endpoint (no request made).
        self._presign_endpoint_url = presign_endpoint_url
        self._region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=60,
            # S3-compatible servers often reject the newer default checksum headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._presigner: Any = None

    async def __aenter__(self) -> Self:
        """Open the client, and the presigning one when presigned URLs use another endpoint."""
        session = aioboto3.Session()
        async with contextlib.AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(self._open(session, self._endpoint_url))
            if self._presign_endpoint_url:
                opening = self._open(session, self._presign_endpoint_url)
                self._presigner = await stack.enter_async_context(opening)
            self._stack = stack.pop_all()
        return self

    def _open(self, session: aioboto3.Session, endpoint_url: str | None) -> Any:
        """A client of this endpoint, to enter."""
        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=self._region,
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            config=self._config,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the clients."""
        stack, self._stack, self._client, self._presigner = self._stack, None, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> Any:
        """The open aiobotocore S3 client."""
        if self._client is None:
            raise RuntimeError("ObjectStore is not open; use `async with ObjectStore(...)`")
        return self._client

    async def iter_object(
        self, bucket: str, key: str, start: int = 0, if_match: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The object's bytes from `start` to its end, chunk by chunk, never whole.

        With `if_match` (an ETag), an object replaced since that ETag was read fails with
        `ObjectChanged` instead of mixing two versions' bytes.
        """
        with _mapped_errors(bucket, key):
            try:
                response = await self._get(bucket, key, start, if_match)
            except boto_errors.ClientError as exc:
                if not _is_invalid_range(exc) or await self.head(bucket, key) != start:
                    raise
                return  # resuming exactly at the end: nothing left to read
        body = response["Body"]
        try:
            while True:
                with _mapped_errors(bucket, key):
                    chunk = await body.read(READ_CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def _get(self, bucket: str, key: str, start: int, if_match: str | None) -> Any:
        """The GetObject response, ranged from `start` when it is past the beginning."""
        params: dict[str, str] = {"Bucket": bucket, "Key": key}
        if start > 0:
            params["Range"] = f"bytes={start}-"
        if if_match:
            params["IfMatch"] = if_match
        return await self.client.get_object(**params)

    async def head(self, bucket: str, key: str) -> int:
        """The object's size in bytes."""
        return (await self.stat(bucket, key)).size

    async def stat(self, bucket: str, key: str) -> ObjectStat:
        """The object's size and ETag (which changes whenever the content is replaced)."""
        try:
            with _mapped_errors(bucket, key):
                response = await self.client.head_object(Bucket=bucket, Key=key)
        except ObjectNotFound:
            await self._check_bucket(bucket)
            raise
        return ObjectStat(int(response["ContentLength"]), str(response.get("ETag", "")))

    async def _check_bucket(self, bucket: str) -> None:
        """Raise `BucketNotFound` when the bucket is missing (HEAD answers a bare 404)."""
        try:
            with _mapped_errors(bucket):
                await self.client.head_bucket(Bucket=bucket)
        except ObjectNotFound as exc:
            raise BucketNotFound(f"s3://{bucket}: the bucket does not exist") from exc

    @contextlib.asynccontextmanager
    async def multipart_upload(
        self,
        bucket: str,
        key: str,
        content_type: str = "text/csv",
        part_size: int = DEFAULT_PART_SIZE,
        on_start: UploadStarted | None = None,
    ) -> AsyncIterator[MultipartWriter]:
        """A writer whose bytes become the object on a clean exit; any failure aborts it.

        `on_start` is awaited with the upload's id once it is created, before its first part
        is sent, so that a process killed outright leaves the id recorded for someone to abort.
        """
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        writer = MultipartWriter(self.client, bucket, key, content_type, part_size, on_start)
        try:
            yield writer
            await writer.complete()
        except BaseException:
            await run_to_the_end(writer.abort())
            raise

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort a multipart upload left by someone else; False when it is already gone."""
        try:
            with _mapped_errors(bucket, key):
                await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ObjectStoreError as exc:
            if _error_code(exc.__cause__) == "NoSuchUpload":
                return False
            raise
        return True

    async def pending_uploads(self, bucket: str, prefix: str) -> AsyncIterator[PendingUpload]:
        """The multipart uploads under `prefix` neither completed nor aborted, page by page."""
        pages = self.client.get_paginator("list_multipart_uploads")
        with _mapped_errors(bucket):
            async for page in pages.paginate(Bucket=bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    yield PendingUpload(upload["Key"], upload["UploadId"], upload["Initiated"])

    async def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "text/csv"
    ) -> None:
        """Write a small object in one request."""
        with _mapped_errors(bucket, key):
            await self.client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )

    async def delete(self, bucket: str, key: str) -> None:
        """Delete the object; deleting a missing object succeeds."""
        with _mapped_errors(bucket, key):
            await self.client.delete_object(Bucket=bucket, Key=key)

    async def presign_put(
        self, bucket: str, key: str, expires_s: int, content_type: str | None = None
    ) -> str:
        """A URL that lets anyone PUT this object until it expires."""
        params = {"Bucket": bucket, "Key": key}
        if content_type is not None:
            params["ContentType"] = content_type
        return await self._presign("put_object", params, expires_s)

    async def presign_get(self, bucket: str, key: str, expires_s: int) -> str:
        """A URL that lets anyone GET this object until it expires."""
        return await self._presign("get_object", {"Bucket": bucket, "Key": key}, expires_s)

    async def _presign(self, method: str, params: dict[str, str], expires_s: int) -> str:
        """A presigned URL for one S3 operation."""
        with _mapped_errors(params["Bucket"], params["Key"]):
            url = await (self._presigner or self.client).generate_presigned_url(
                method, Params=params, ExpiresIn=expires_s
            )
        return str(url)


def _is_invalid_range(exc: boto_errors.ClientError) -> bool:
    """True for the 416 answer to a range that starts at or past the object's end."""
    return _error_code(exc) == "InvalidRange"


def _error_code(exc: BaseException | None) -> str:
    """The S3 error code of a botocore error response; empty for anything else."""
    if not isinstance(exc, boto_errors.ClientError):
        return ""
    return str(exc.response.get("Error", {}).get("Code", ""))
