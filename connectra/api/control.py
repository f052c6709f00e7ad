"""Job control endpoints: cancel and manual retry."""

from __future__ import annotations

from aiohttp import web

from connectra import metrics
from connectra.api.access import visible_uuid
from connectra.api.payloads import read_json_object
from connectra.api.state import ON_JOB_CREATED, STORE
from connectra.errors import InvalidStatusFilterError
from connectra.jobs import JobStatus, job_to_json


async def cancel_job(request: web.Request) -> web.Response:
    """`POST /common/jobs/{uuid}/cancel`: abort a waiting job, or ask a running one to stop.

    200 when the job is aborted now; 202 when it is running and its runner will stop it
    (within one heartbeat interval, at once with LISTEN/NOTIFY).
    """
    job = await request.app[STORE].cancel(await visible_uuid(request))
    status = 200 if job.status is JobStatus.ABORTED else 202
    if job.status is JobStatus.ABORTED:
        metrics.JOBS_ABORTED.labels(job.job_type).inc()
    return web.json_response({"data": job_to_json(job), "success": True}, status=status)


async def patch_job(request: web.Request) -> web.Response:
    """`PATCH /common/jobs/{uuid}` with `{"status": "aborted"}`: the seed's form of cancel."""
    body = await read_json_object(request)
    if body.get("status") != JobStatus.ABORTED:
        raise InvalidStatusFilterError("the only status a job can be set to is 'aborted'")
    return await cancel_job(request)


async def retry_job(request: web.Request) -> web.Response:
    """`POST /common/jobs/{uuid}/retry`: reopen a failed job with a fresh attempt budget."""
    job = await request.app[STORE].reopen(await visible_uuid(request))
    callback = request.app[ON_JOB_CREATED]
    if callback is not None:
        callback(job)
    return web.json_response({"data": job_to_json(job), "success": True})
