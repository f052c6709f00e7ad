"""The web dashboard at /ui: server-rendered pages of counts, jobs and one job.

Pages are read with a session cookie (see `dashboard_session`); the page's script asks for
their live parts again every few seconds, and sends actions to /common with the API key.
Every template is autoescaped: job data is user input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import jinja2
from aiohttp import web

from connectra.api.access import KEYRING, Principal
from connectra.api.dashboard_session import (
    SESSION_COOKIE,
    clear_session_cookie,
    new_session,
    read_session,
    same_origin,
    set_session_cookie,
    signed_by,
)
from connectra.api.dashboard_views import (
    UI,
    Counts,
    Filters,
    counts_of,
    job_view,
    parse_filters,
    progress_bar,
    status_options,
    template_globals,
    type_options,
)
from connectra.api.state import REGISTRY, STORE
from connectra.api_keys import Scope
from connectra.db.monitor_store import MonitorStore
from connectra.errors import JobNotFoundError
from connectra.jobs import FINISHED_STATUSES, Job

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGE_SIZE = 25
# Each finished state is counted up to this many jobs, so the counts stay cheap on any table.
COUNT_CAP = 10_000
LIST_REFRESH_SECONDS = 3
JOB_REFRESH_SECONDS = 1
SECURITY_HEADERS = {
    # No inline script or style at all: an injected tag could not run even if it got through.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.globals.update(template_globals())


def add_dashboard(app: web.Application) -> None:
    """Serve the dashboard's pages and files under /ui."""
    app.add_routes(
        [
            web.get(UI, jobs_page),
            web.get(f"{UI}/", to_jobs_page),
            web.get(f"{UI}/live", jobs_live),
            web.get(f"{UI}/signin", sign_in_page),
            web.post(f"{UI}/signin", sign_in),
            web.post(f"{UI}/signout", sign_out),
            web.get(f"{UI}/jobs/{{uuid}}", job_page),
            web.get(f"{UI}/jobs/{{uuid}}/live", job_live),
            web.static(f"{UI}/static", HERE / "static"),
        ]
    )
    app.on_response_prepare.append(_add_security_headers)


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Lock down every /ui response; pages and fragments hold job data, so are not cached."""
    if request.path != UI and not request.path.startswith(f"{UI}/"):
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith(f"{UI}/static/"):
        response.headers["Cache-Control"] = "no-store"


def render(template: str, status: int = 200, **context: Any) -> web.Response:
    """A rendered template as an HTML answer."""
    html = TEMPLATES.get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html")


async def signed_in(request: web.Request) -> Principal | None:
    """The key whose valid dashboard session the request carries, if any."""
    token = read_session(request.cookies.get(SESSION_COOKIE), time.time())
    if token is None:
        return None
    found = None
    for candidate in await request.app[KEYRING].candidates(token.key_id):
        if signed_by(token, candidate.session_key):  # every candidate: constant time
            found = candidate
    return found


def _to_sign_in(request: web.Request) -> web.HTTPSeeOther:
    """A redirect to the sign-in page that comes back here afterwards."""
    return web.HTTPSeeOther(f"{UI}/signin?next={quote(request.path_qs, safe='')}")


def _return_path(raw: object) -> str:
    """Where to go after signing in: a dashboard path, never another site."""
    if isinstance(raw, str) and (raw == UI or raw.startswith((f"{UI}/", f"{UI}?"))):
        return raw
    return UI


async def to_jobs_page(request: web.Request) -> web.StreamResponse:
    """`GET /ui/`: the list lives at /ui."""
    raise web.HTTPPermanentRedirect(UI)


async def sign_in_page(request: web.Request) -> web.Response:
    """`GET /ui/signin`: the sign-in form."""
    return render(
        "signin.html", signed_in=False, error=None, next=_return_path(request.query.get("next"))
    )


async def sign_in(request: web.Request) -> web.StreamResponse:
    """`POST /ui/signin`: check the key once, answer with a session cookie."""
    if not same_origin(request):
        return render("signin.html", 403, signed_in=False, error="Sign in from this page.", next=UI)
    form = await request.post()
    next_path = _return_path(form.get("next"))
    key = form.get("api_key")
    principal = await request.app[KEYRING].authenticate(key if isinstance(key, str) else None)
    if principal is None:
        logger.warning("dashboard sign-in refused", extra={"action": "ui_sign_in_refused"})
        error = "This key is not accepted."
        return render("signin.html", 401, signed_in=False, error=error, next=next_path)
    logger.info("dashboard sign-in", extra={"action": "ui_sign_in", "api_key": principal.name})
    response = web.Response(status=303, headers={"Location": next_path})
    token = new_session(principal.key_id, principal.session_key, time.time())
    set_session_cookie(response, request, token)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """`POST /ui/signout`: drop the cookie (the page's script drops the key)."""
    response = web.Response(status=303, headers={"Location": f"{UI}/signin"})
    clear_session_cookie(response)
    return response


async def jobs_page(request: web.Request) -> web.Response:
    """`GET /ui`: counts by status and queue, and a page of jobs."""
    principal = await signed_in(request)
    if principal is None:
        raise _to_sign_in(request)
    return render("jobs.html", **await _jobs_context(request, principal))


async def jobs_live(request: web.Request) -> web.Response:
    """`GET /ui/live`: the list page's counts and table, for the script to swap in."""
    principal = await signed_in(request)
    if principal is None:
        return web.Response(status=401)
    return render("jobs_live.html", **await _jobs_context(request, principal))


async def _jobs_context(request: web.Request, principal: Principal) -> dict[str, Any]:
    """What the list page shows for the request's filters (a key without the admin scope:
    of its own jobs)."""
    filters = parse_filters(request.query)
    jobs = await _jobs(request, filters, principal.owner)
    next_after = jobs[-1].id if len(jobs) == PAGE_SIZE and filters.uuid is None else None
    counts = await _counts(request, principal.owner)
    return {
        "signed_in": True,
        "filters": filters,
        "raw_uuid": request.query.get("uuid", "")[:100],
        "jobs": jobs,
        "bars": {job.id: progress_bar(job) for job in jobs},
        "next_link": filters.link(after=next_after) if next_after else None,
        "first_link": filters.link() if filters.after else None,
        "live_link": filters.link(after=filters.after, live=True),
        # Later pages stay put; the first one follows new jobs as they come.
        "refresh_seconds": 0 if filters.after else LIST_REFRESH_SECONDS,
        "counts": counts,
        "owner": principal.owner,
        "statuses": status_options(),
        "job_types": type_options(request.app[REGISTRY].names, filters.job_type),
    }


async def _counts(request: web.Request, owner: str | None) -> Counts:
    """Jobs by status and queue: exact for waiting and running states (the counts /metrics
    reads), up to COUNT_CAP for each finished state, estimated beyond that. For a key
    without the admin scope, its newest COUNT_CAP jobs."""
    store = request.app[STORE]
    if owner is not None:
        return Counts(await store.count_owned_by_status_and_queue(owner, COUNT_CAP), COUNT_CAP)
    live = await MonitorStore(store.pool).job_counts()
    finished = await store.count_by_status_and_queue(FINISHED_STATUSES, COUNT_CAP)
    return counts_of(live.unfinished, finished, live.finished_estimate, COUNT_CAP)


async def _jobs(request: web.Request, filters: Filters, owner: str | None) -> list[Job]:
    """The page of jobs the filters select (none when a filter was refused)."""
    if filters.problems:
        return []
    store = request.app[STORE]
    if filters.uuid is not None:
        try:
            job = await store.get(filters.uuid, owner=owner)
        except JobNotFoundError:
            return []
        return [job] if filters.matches(job) else []
    return await store.find(
        job_type=filters.job_type,
        statuses=[filters.status] if filters.status else None,
        queues=[filters.queue] if filters.queue else None,
        limit=PAGE_SIZE,
        after=filters.after,
        owner=owner,
    )


async def job_page(request: web.Request) -> web.Response:
    """`GET /ui/jobs/{uuid}`: one job, its progress and its actions."""
    principal = await signed_in(request)
    if principal is None:
        raise _to_sign_in(request)
    job = await _job(request, principal.owner)
    if job is None:
        return render("missing.html", 404, signed_in=True, uuid=request.match_info["uuid"])
    return render("job.html", **_job_context(job, principal))


async def job_live(request: web.Request) -> web.Response:
    """`GET /ui/jobs/{uuid}/live`: the job page's changing parts, for the script."""
    principal = await signed_in(request)
    if principal is None:
        return web.Response(status=401)
    job = await _job(request, principal.owner)
    if job is None:
        return web.Response(status=404)
    return render("job_live.html", **_job_context(job, principal))


async def _job(request: web.Request, owner: str | None) -> Job | None:
    """The job named in the path, or None when there is no such job (or the key, without
    the admin scope, did not create it)."""
    try:
        uuid = UUID(request.match_info["uuid"])
        return await request.app[STORE].get(uuid, owner=owner)
    except (ValueError, JobNotFoundError):
        return None


def _job_context(job: Job, principal: Principal) -> dict[str, Any]:
    """What the job page shows; a read-only key is offered no cancel or retry."""
    view = job_view(job)
    if not principal.may(Scope.WRITE):
        view = replace(view, actions=replace(view.actions, cancel=False, retry=False))
    return {
        "signed_in": True,
        "view": view,
        "refresh_seconds": JOB_REFRESH_SECONDS,
    }
