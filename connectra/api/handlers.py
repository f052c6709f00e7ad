"""The endpoints: create, list and fetch jobs, and the liveness probe."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from aiohttp import web

from connectra.api.access import principal_of, visible_job
from connectra.api.payloads import (
    IDEMPOTENCY_HEADER,
    fingerprint,
    idempotency_key,
    parse_create,
    parse_list,
    read_json_object,
)
from connectra.api.state import ON_JOB_CREATED, REGISTRY, SETTINGS, STORE
from connectra.jobs import Job, job_to_json

logger = logging.getLogger(__name__)


async def create_job(request: web.Request) -> web.Response:
    """`POST /common/jobs/create`: validate the job, store it open, wake the runner.

    With an `Idempotency-Key` header, a repeat of the same request answers the job the first
    one created (header `Idempotent-Replayed: true`); the same key with another body is 409.
    """
    key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
    wanted = parse_create(await read_json_object(request))
    settings = request.app[SETTINGS]
    new = request.app[REGISTRY].new_job(
        wanted.job_type, wanted.job_data, settings=settings, **wanted.options()
    )
    principal = principal_of(request)
    new = replace(new, created_by=principal.name)
    store = request.app[STORE]
    created = True
    if key is None:
        job = await store.create(new)
    else:
        ttl = timedelta(hours=settings.idempotency_key_ttl_hours)
        owned_key = key if principal.owner is None else f"{principal.owner}:{key}"
        job, created = await store.create_once(owned_key, fingerprint(new), ttl, new)
    if created:
        logger.info(
            "job created",
            extra={
                "action": "job_created",
                "job_uuid": str(job.uuid),
                "job_type": job.job_type,
                "api_key": principal.name,
            },
        )
        _announce(request.app, job)
    body = {
        "message": "Job created successfully",
        "success": True,
        "uuid": str(job.uuid),
        "job": job_to_json(job),
    }
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return web.json_response(body, status=201, headers=headers)


def _announce(app: web.Application, job: Job) -> None:
    """Tell the in-process runner; the job is stored already, so a failing callback is logged."""
    callback = app[ON_JOB_CREATED]
    if callback is None:
        return
    try:
        callback(job)
    except Exception:
        logger.exception(
            "on_job_created failed", extra={"action": "job_announce", "job_uuid": str(job.uuid)}
        )


async def list_jobs(request: web.Request) -> web.Response:
    """`POST /common/jobs`: jobs newest first, optionally by type, state and queue, a page at
    a time: a full page's `next_after` goes in the next request's `after`."""
    wanted = parse_list(await read_json_object(request))
    jobs = await request.app[STORE].find(
        job_type=wanted.job_type,
        statuses=wanted.statuses,
        queues=wanted.queues,
        limit=wanted.limit,
        after=wanted.after,
        owner=principal_of(request).owner,
    )
    next_after = jobs[-1].id if len(jobs) == wanted.limit else None
    body = {"data": [job_to_json(job) for job in jobs], "next_after": next_after, "success": True}
    return web.json_response(body)


async def get_job(request: web.Request) -> web.Response:
    """`GET /common/jobs/{uuid}`: one job (another key's job is not found, but by admins)."""
    job = await visible_job(request)
    return web.json_response({"data": job_to_json(job), "success": True})


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: the process answers; says nothing about the database."""
    return web.json_response({"status": "ok"})
