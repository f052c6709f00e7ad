"""A Python client for the HTTP API (async, aiohttp): jobs, files, and waiting for a job.

`ConnectraClient` answers with typed values (`JobInfo`, `JobPage`, `UploadedFile`) and raises
`ConnectraApiError`, with its `ERR_...` code and HTTP status, for an error answer. Of the
server's modules it imports only `connectra.jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar
from urllib.parse import quote
from uuid import UUID

import aiohttp
from yarl import URL

from connectra.jobs import FINISHED_STATUSES, JobStatus

__all__ = [
    "ConnectraApiError",
    "ConnectraClient",
    "JobInfo",
    "JobPage",
    "ProgressCallback",
    "UploadedFile",
    "backoff_delays",
]

T = TypeVar("T")

API_KEY_HEADER = "X-API-Key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT = 30.0
CHUNK_SIZE = 1 << 16
INVALID_RESPONSE = "ERR_INVALID_RESPONSE"
_ERROR_CODE = re.compile(r"^ERR_[A-Z0-9_]+$")
_MAX_MESSAGE = 500
# What a success answer that is not in the API's shape raises while being read.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


class ConnectraApiError(Exception):
    """The API (or the object store behind a presigned URL) answered with an error."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        """The seed's error string, with the HTTP status."""
        return f"{self.code}: {self.message} (HTTP {self.status})"


def api_error(status: int, raw: bytes) -> ConnectraApiError:
    """The error an error answer stands for; a body not in the API's shape is ERR_HTTP_<status>."""
    rendered = _error_string(raw)
    if rendered is not None:
        code, sep, message = rendered.partition(": ")
        if sep and _ERROR_CODE.match(code):
            return ConnectraApiError(code, message, status)
    text = rendered if rendered is not None else raw.decode("utf-8", "replace").strip()
    return ConnectraApiError(f"ERR_HTTP_{status}", text[:_MAX_MESSAGE] or _reason(status), status)


def _error_string(raw: bytes) -> str | None:
    """The `error` field of a JSON error body, if the body is one."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def _reason(status: int) -> str:
    """The standard phrase of an HTTP status."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as the API shows it; fields a newer server adds are kept in `extra`."""

    id: int
    uuid: UUID
    job_type: str
    data: dict[str, Any]
    queue: str
    priority: int
    status: JobStatus
    job_response: dict[str, Any]
    retry_count: int
    retry_interval: int
    run_after: datetime | None
    created_at: datetime
    updated_at: datetime
    attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    runner_id: str | None
    cancel_requested_at: datetime | None
    rescue_count: int
    run_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> JobInfo:
        """A job from its JSON; fields the seed did not have are optional."""
        return cls(
            id=int(raw["id"]),
            uuid=UUID(raw["uuid"]),
            job_type=str(raw["job_type"]),
            data=dict(raw.get("data") or {}),
            queue=str(raw.get("queue") or "default"),
            priority=int(raw.get("priority") or 0),
            status=JobStatus(raw["status"]),
            job_response=dict(raw.get("job_response") or {}),
            retry_count=int(raw.get("retry_count") or 0),
            retry_interval=int(raw.get("retry_interval") or 0),
            run_after=_time(raw.get("run_after")),
            created_at=_required_time(raw["created_at"]),
            updated_at=_required_time(raw["updated_at"]),
            attempts=int(raw.get("attempts") or 0),
            started_at=_time(raw.get("started_at")),
            completed_at=_time(raw.get("completed_at")),
            runner_id=raw.get("runner_id"),
            cancel_requested_at=_time(raw.get("cancel_requested_at")),
            rescue_count=int(raw.get("rescue_count") or 0),
            run_at=_time(raw.get("run_at")),
            extra={key: value for key, value in raw.items() if key not in _JOB_FIELDS},
        )

    @property
    def finished(self) -> bool:
        """No runner will touch the job again: completed, failed_final or aborted."""
        return self.status in FINISHED_STATUSES

    @property
    def records_processed(self) -> int | None:
        """An import's or export's `number_records_processed`, once reported."""
        return _count(self.job_response.get("number_records_processed"))

    @property
    def records_failed(self) -> int | None:
        """An import's `number_records_failed`, once reported."""
        return _count(self.job_response.get("number_records_failed"))

    @property
    def error_code(self) -> str | None:
        """The `ERR_...` code of the last failed attempt, if any."""
        error = self.job_response.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return code if isinstance(code, str) else None


_JOB_FIELDS = frozenset(item.name for item in fields(JobInfo)) - {"extra"}


def _time(value: object) -> datetime | None:
    """An ISO 8601 time of the API as an aware datetime (UTC when it names no offset)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"a time must be a string, not {type(value).__name__}")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _required_time(value: object) -> datetime:
    """A time that every job has."""
    moment = _time(value)
    if moment is None:
        raise ValueError("a required time is null")
    return moment


def _count(value: object) -> int | None:
    """A counter of `job_response`, if it is one."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a job listing; `next_after` goes in the next request's `after`."""

    jobs: tuple[JobInfo, ...]
    next_after: int | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> JobPage:
        """A page from the list endpoint's answer."""
        after = body.get("next_after")
        jobs = tuple(JobInfo.from_json(item) for item in body["data"])
        return cls(jobs=jobs, next_after=None if after is None else int(after))


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """Where an uploaded file is: what an `insert_csv_file` job's data names."""

    s3_key: str
    s3_bucket: str


ProgressCallback = Callable[[JobInfo], Awaitable[None] | None]


def backoff_delays(
    initial: float, maximum: float, rng: random.Random | None = None
) -> Iterator[float]:
    """Endless polling delays: a step doubling from `initial` up to `maximum`, each delay
    drawn between half the step and the whole step (equal jitter: spread out, never 0)."""
    if initial <= 0 or maximum < initial:
        raise ValueError("the delays need 0 < initial_delay <= max_delay")
    return _jittered(initial, maximum, rng or random.Random())


def _jittered(initial: float, maximum: float, rng: random.Random) -> Iterator[float]:
    """The delays of `backoff_delays`, once checked."""
    step = initial
    while True:
        yield step / 2 + rng.random() * step / 2
        step = min(maximum, step * 2)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A success answer of the API: its status and JSON object."""

    status: int
    body: dict[str, Any]

    def build(self, make: Callable[[dict[str, Any]], T]) -> T:
        """A typed result from the body; a body not in the API's shape is ERR_INVALID_RESPONSE."""
        try:
            return make(self.body)
        except _SHAPE_ERRORS as exc:
            message = f"the answer is not what the API sends: {exc!r}"[:_MAX_MESSAGE]
            raise ConnectraApiError(INVALID_RESPONSE, message, self.status) from exc

    def job(self, key: str) -> JobInfo:
        """The job the body holds under `key`."""
        return self.build(lambda body: JobInfo.from_json(body[key]))


class ConnectraClient:
    """The HTTP API of one Connectra Jobs deployment; use it as `async with`.

    `timeout` bounds each API request, in seconds; file transfers are bounded per read and
    connect instead, so a big file is never cut short. A `session` given is used and left
    open; otherwise the client opens its own and closes it on exit.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._transfer_timeout = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)
        self._rng = random.Random()

    async def __aenter__(self) -> Self:
        """Open the session (if the client owns one)."""
        self._http()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the session the client owns."""
        await self.close()

    async def close(self) -> None:
        """Close the session the client owns; a session given to it stays open."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def create(
        self,
        job_type: str,
        data: Mapping[str, Any],
        *,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        retry_count: int | None = None,
        retry_interval: int | None = None,
        idempotency_key: str | None = None,
    ) -> JobInfo:
        """Create a job; options left None take the job type's defaults.

        With an `idempotency_key`, repeating the same request answers the job the first one
        created; the same key with another request raises ERR_IDEMPOTENCY_KEY_REUSED (409).
        """
        body = _without_none(
            {
                "job_type": job_type,
                "job_data": dict(data),
                "queue": queue,
                "priority": priority,
                "run_at": _iso(run_at),
                "delay_seconds": delay_seconds,
                "retry_count": retry_count,
                "retry_interval": retry_interval,
            }
        )
        headers = {} if idempotency_key is None else {IDEMPOTENCY_HEADER: idempotency_key}
        answer = await self._call("POST", "/common/jobs/create", body=body, headers=headers)
        return answer.job("job")

    async def get(self, uuid: UUID | str) -> JobInfo:
        """One job."""
        return (await self._call("GET", _job_path(uuid))).job("data")

    async def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        job_type: str | None = None,
        queue: str | Iterable[str] | None = None,
        limit: int = 25,
        after: int | None = None,
    ) -> JobPage:
        """One page of jobs, newest first, by states, type and queues (None: any)."""
        body = _without_none(
            {
                "status": _names(status),
                "job_type": job_type,
                "queue": _names(queue),
                "limit": limit,
                "after": after,
            }
        )
        answer = await self._call("POST", "/common/jobs", body=body)
        return answer.build(JobPage.from_json)

    async def iterate(
        self,
        *,
        status: str | Iterable[str] | None = None,
        job_type: str | None = None,
        queue: str | Iterable[str] | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[JobInfo]:
        """Every matching job, newest first, fetched a page at a time."""
        statuses, queues = _names(status), _names(queue)
        after: int | None = None
        while True:
            page = await self.list(
                status=statuses, job_type=job_type, queue=queues, limit=page_size, after=after
            )
            for job in page.jobs:
                yield job
            if page.next_after is None:
                return
            after = page.next_after

    async def cancel(self, uuid: UUID | str) -> JobInfo:
        """Abort a waiting job, or ask a running one to stop (its status says which)."""
        return (await self._call("POST", f"{_job_path(uuid)}/cancel")).job("data")

    async def retry(self, uuid: UUID | str) -> JobInfo:
        """Reopen a failed or failed_final job with a fresh attempt budget."""
        return (await self._call("POST", f"{_job_path(uuid)}/retry")).job("data")

    async def upload_file(
        self, source: str | os.PathLike[str] | bytes, filename: str | None = None
    ) -> UploadedFile:
        """Upload a CSV to import: get an upload URL, then PUT the bytes (a path streams)."""
        name = filename or _default_filename(source)
        async with _opened(source) as data:
            answer = await self._call("GET", "/common/upload-url", params={"filename": name})
            url = answer.build(lambda body: str(body["upload_url"]))
            await self._put(url, data)
        return answer.build(lambda body: UploadedFile(str(body["s3_key"]), str(body["s3_bucket"])))

    async def download_export(self, uuid: UUID | str, destination: str | os.PathLike[str]) -> Path:
        """Save a completed export's CSV at `destination`, streamed in chunks.

        The file is written beside the destination as `<name>.part` and renamed when complete,
        so a failed download never leaves a truncated CSV under the wanted name.
        """
        answer = await self._call("GET", f"{_job_path(uuid)}/download-url")
        url = answer.build(lambda body: str(body["download_url"]))
        target = Path(destination)
        partial = target.with_name(target.name + ".part")
        try:
            await self._download(url, partial)
            await asyncio.to_thread(partial.replace, target)
        except BaseException:
            _discard(partial)  # at once, even when cancelled
            raise
        return target

    async def wait(
        self,
        uuid: UUID | str,
        *,
        on_progress: ProgressCallback | None = None,
        # A deadline for the whole wait, applied with asyncio.timeout (like asyncio.wait_for's).
        timeout: float | None = None,  # noqa: ASYNC109
        initial_delay: float = 0.2,
        max_delay: float = 5.0,
    ) -> JobInfo:
        """Poll until the job is finished (completed, failed_final or aborted) and return it.

        A `failed` job due for a retry is not finished. Polls back off exponentially from
        `initial_delay` to `max_delay`, with jitter. `on_progress` (a function or coroutine
        function) gets the job at the first poll and whenever its status or `job_response`
        changed. After `timeout` seconds it raises `TimeoutError`.
        """
        delays = backoff_delays(initial_delay, max_delay, self._rng)
        async with asyncio.timeout(timeout):
            return await self._poll(uuid, delays, on_progress)

    async def _poll(
        self, uuid: UUID | str, delays: Iterator[float], on_progress: ProgressCallback | None
    ) -> JobInfo:
        """The polling loop of `wait`."""
        seen: JobInfo | None = None
        while True:
            job = await self.get(uuid)
            if on_progress is not None and (seen is None or _changed(seen, job)):
                await _notify(on_progress, job)
            if job.finished:
                return job
            seen = job
            await asyncio.sleep(next(delays))

    def _http(self) -> aiohttp.ClientSession:
        """The session, opened on first use (aiohttp wants it opened inside the loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Answer:
        """One API request; an error answer raises `ConnectraApiError`."""
        sent = {API_KEY_HEADER: self._api_key, **(headers or {})}
        async with self._http().request(
            method,
            self._base_url + path,
            json=body,
            params=params,
            headers=sent,
            timeout=self._timeout,
        ) as response:
            raw = await response.read()
            status = response.status
        if status >= 400:
            raise api_error(status, raw)
        return _Answer(status, _json_object(status, raw))

    async def _put(self, url: str, data: bytes | IO[bytes]) -> None:
        """PUT a file to a presigned URL (without the API key: it is not the API's)."""
        async with self._http().put(
            URL(url, encoded=True),
            data=data,
            headers={"Content-Type": "text/csv"},
            timeout=self._transfer_timeout,
        ) as response:
            if response.status >= 300:
                raise api_error(response.status, await response.read())

    async def _download(self, url: str, path: Path) -> None:
        """GET a presigned URL into `path`, a chunk at a time."""
        async with self._http().get(
            URL(url, encoded=True), timeout=self._transfer_timeout
        ) as response:
            if response.status >= 300:
                raise api_error(response.status, await response.read())
            file = await asyncio.to_thread(path.open, "wb")
            with file:
                async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                    await asyncio.to_thread(file.write, chunk)


def _json_object(status: int, raw: bytes) -> dict[str, Any]:
    """A success answer's body, which must be a JSON object."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        excerpt = raw[:200].decode("utf-8", "replace")
        raise ConnectraApiError(INVALID_RESPONSE, f"not a JSON object: {excerpt!r}", status)
    return body


def _job_path(uuid: UUID | str) -> str:
    """The path of one job; the server checks the uuid, the client only escapes it."""
    return f"/common/jobs/{quote(str(uuid), safe='')}"


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    """A request body without the options left out."""
    return {key: value for key, value in body.items() if value is not None}


def _names(value: str | Iterable[str] | None) -> list[str] | None:
    """A filter of one name or several, as the list endpoint takes it (a list)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def _iso(moment: datetime | None) -> str | None:
    """An aware datetime as ISO 8601; a naive one is refused rather than guessed."""
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
    return moment.isoformat()


@contextlib.asynccontextmanager
async def _opened(source: str | os.PathLike[str] | bytes) -> AsyncIterator[bytes | IO[bytes]]:
    """The bytes to upload, or the file opened for reading (before any request is made)."""
    if isinstance(source, bytes):
        yield source
        return
    file = await asyncio.to_thread(Path(source).open, "rb")
    with file:
        yield file


def _discard(path: Path) -> None:
    """Remove a partial download, if there is one."""
    path.unlink(missing_ok=True)


def _default_filename(source: str | os.PathLike[str] | bytes) -> str:
    """The file's own name, or `upload.csv` for bytes."""
    return "upload.csv" if isinstance(source, bytes) else Path(source).name


def _changed(before: JobInfo, after: JobInfo) -> bool:
    """Whether a poll shows progress: another status or another `job_response`."""
    return before.status != after.status or before.job_response != after.job_response


async def _notify(on_progress: ProgressCallback, job: JobInfo) -> None:
    """Call the progress callback, awaiting it if it is a coroutine function."""
    result = on_progress(job)
    if inspect.isawaitable(result):
        await result
