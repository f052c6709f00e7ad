"""The aiohttp application: state, middlewares and routes; the daemon runs it."""

from __future__ import annotations

from aiohttp import web

from connectra.api.access import KEYRING, keyring
from connectra.api.control import cancel_job, patch_job, retry_job
from connectra.api.dashboard import add_dashboard
from connectra.api.docs import add_api_docs
from connectra.api.files import download_url, upload_url
from connectra.api.handlers import create_job, get_job, healthz, list_jobs
from connectra.api.middleware import auth_middleware, error_middleware, request_id_middleware
from connectra.api.schedules import (
    add_schedule,
    list_schedules,
    pause_schedule,
    remove_schedule,
    resume_schedule,
)
from connectra.api.server_limits import ServerLimits, body_deadline
from connectra.api.state import (
    OBJECTS,
    ON_JOB_CREATED,
    REGISTRY,
    SETTINGS,
    STORE,
    JobCreatedCallback,
)
from connectra.db.store import JobStore
from connectra.monitoring.web import (
    Monitor,
    add_monitoring,
    api_monitor,
    readyz,
    request_metrics_middleware,
)
from connectra.objectstore import ObjectStore
from connectra.processors.base import JobTypeRegistry
from connectra.settings import Settings


def create_app(
    store: JobStore,
    registry: JobTypeRegistry,
    settings: Settings,
    on_job_created: JobCreatedCallback | None = None,
    objects: ObjectStore | None = None,
    monitor: Monitor | None = None,
) -> web.Application:
    """The API; it owns neither the pool nor the signals (run it with `AppRunner`).

    `monitor`: what `/readyz` checks and `/metrics` serves (the daemon's, with the runners of
    `connectra run`); by default the database and the runners table.
    """
    app = web.Application(
        # Errors outermost, so a refused key is rendered in the same shape.
        # The request id outermost, so that every answer and log line carries it.
        # The body's deadline innermost: what it raises is rendered like any error.
        middlewares=[
            request_id_middleware,
            error_middleware,
            auth_middleware,
            body_deadline(ServerLimits.of(settings).body_timeout),
        ],
        client_max_size=settings.api_max_body_bytes,
    )
    if settings.metrics_enabled:
        app.middlewares.insert(0, request_metrics_middleware)  # outermost: the final status
    app[STORE] = store
    app[REGISTRY] = registry
    app[SETTINGS] = settings
    app[ON_JOB_CREATED] = on_job_created
    app[OBJECTS] = objects
    app[KEYRING] = keyring(settings, store)
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.post("/common/jobs/create", create_job),
            web.post("/common/jobs", list_jobs),
            web.get("/common/jobs/{uuid}", get_job),
            web.get("/common/jobs/{uuid}/download-url", download_url),
            web.post("/common/jobs/{uuid}/cancel", cancel_job),
            web.post("/common/jobs/{uuid}/retry", retry_job),
            web.patch("/common/jobs/{uuid}", patch_job),
            web.get("/common/upload-url", upload_url),
        ]
    )
    app.add_routes(
        [
            web.get("/common/schedules", list_schedules),
            web.post("/common/schedules", add_schedule),
            web.delete("/common/schedules/{name}", remove_schedule),
            web.post("/common/schedules/{name}/pause", pause_schedule),
            web.post("/common/schedules/{name}/resume", resume_schedule),
        ]
    )
    add_dashboard(app)
    add_api_docs(app)
    add_monitoring(app, monitor or api_monitor(store.pool, settings.metrics_enabled))
    return app
