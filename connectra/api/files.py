"""Presigned URLs: where to upload a CSV for import, and where to download an export."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from connectra.api.access import visible_job
from connectra.api.payloads import whole_number
from connectra.api.state import OBJECTS, SETTINGS
from connectra.bucket_policy import BucketPolicy
from connectra.errors import (
    ExportNotReadyError,
    FileExpiredError,
    InvalidExpiryError,
    InvalidFilenameError,
    ObjectStoreNotConfiguredError,
)
from connectra.jobs import EXPORT_JOB_TYPE, Job, export_file, results_deleted
from connectra.objectstore import ObjectStore
from connectra.settings import Settings

SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


async def upload_url(request: web.Request) -> web.Response:
    """`GET /common/upload-url?filename=`: a presigned PUT for a new CSV, and its key."""
    settings = request.app[SETTINGS]
    filename = request.query.get("filename", "")
    if not SAFE_FILENAME.fullmatch(filename):
        raise InvalidFilenameError()
    policy = settings.bucket_policy()
    bucket = policy.bucket_for(None)
    key = f"{_prefix(settings)}/{uuid.uuid4()}/{filename}"
    policy.check_key(key)
    expires = _expires_in(request, settings)
    url = await _objects(request).presign_put(bucket, key, expires, content_type="text/csv")
    body = {"upload_url": url, "s3_key": key, "s3_bucket": bucket, "expires_in": expires}
    return web.json_response(body | {"success": True})


async def download_url(request: web.Request) -> web.Response:
    """`GET /common/jobs/{uuid}/download-url`: a presigned GET for a finished export."""
    settings = request.app[SETTINGS]
    job = await visible_job(request)
    bucket, key = _export_location(job, settings.bucket_policy())
    expires = _expires_in(request, settings)
    url = await _objects(request).presign_get(bucket, key, expires)
    body = {"download_url": url, "s3_key": key, "s3_bucket": bucket, "expires_in": expires}
    return web.json_response(body | {"success": True})


def _export_location(job: Job, policy: BucketPolicy) -> tuple[str, str]:
    """The bucket and key of a completed export's file that still exists, if jobs may use them.

    Retention marks the job when it deletes the file, so a deleted file is known without
    asking the object store.
    """
    found = export_file(job)
    if found is None:
        raise ExportNotReadyError(
            f"job {job.uuid} is a {job.job_type} job in state {job.status}; "
            f"only a completed {EXPORT_JOB_TYPE} job has a file to download"
        )
    if results_deleted(job.job_response):
        raise FileExpiredError(
            f"the file of export {job.uuid} was deleted by retention at "
            f"{job.job_response['results_deleted_at']}; run the export again"
        )
    named_bucket, key = found
    bucket = policy.bucket_for(named_bucket)
    policy.check_key(key)
    return bucket, key


def _expires_in(request: web.Request, settings: Settings) -> int:
    """The requested lifetime of the URL, or the configured one."""
    maximum = settings.presigned_url_expiry_seconds
    raw = request.query.get("expires_in")
    if raw is None:
        return maximum
    seconds = whole_number(raw, 1, maximum)
    if seconds is None:
        raise InvalidExpiryError(f"'expires_in' must be a whole number from 1 to {maximum}")
    return seconds


def _prefix(settings: Settings) -> str:
    """The upload prefix without a trailing slash."""
    return settings.s3_upload_file_path_prefix.strip("/") or "uploads"


def _objects(request: web.Request) -> ObjectStore:
    """The process's object store."""
    objects = request.app[OBJECTS]
    if objects is None:
        raise ObjectStoreNotConfiguredError()
    return objects
