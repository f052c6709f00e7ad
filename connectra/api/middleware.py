"""The two middlewares: API-key auth on /common, and the one place errors become HTTP."""

from __future__ import annotations

import logging
import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from connectra.api.access import KEYRING, PRINCIPAL, check_scope
from connectra.api.payloads import body_too_large
from connectra.api.server_limits import error_response
from connectra.db.driver_errors import DATABASE_DOWN
from connectra.errors import (
    ConnectraError,
    DatabaseUnavailableError,
    MethodNotAllowedError,
    RequestError,
    RouteNotFoundError,
    UnauthorizedError,
)
from connectra.logs import REQUEST_ID

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
PROTECTED_PREFIX = "/common"


REQUEST_ID_HEADER = "X-Request-ID"
# What a caller's request id may be; anything else is replaced by a fresh one.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the caller's `X-Request-ID` (or make one), log it on every line of the request,
    hand it to jobs created here, and echo it on the answer, errors included."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    token = REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
    finally:
        REQUEST_ID.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the error shape; never leak a traceback."""
    try:
        return await handler(request)
    except ConnectraError as exc:
        if exc.http_status >= 500:
            logger.error("request failed: %s", exc.render(), extra=_fields(request, "api_error"))
        return error_response(exc)
    except web.HTTPException as exc:
        return _http_exception_response(request, exc)
    except DATABASE_DOWN:
        logger.warning("database unavailable", exc_info=True, extra=_fields(request, "api_db"))
        return error_response(DatabaseUnavailableError())
    except Exception:
        logger.exception("unexpected error", extra=_fields(request, "api_error"))
        return error_response(ConnectraError("an unexpected error occurred"))


def _fields(request: web.Request, action: str) -> dict[str, str]:
    """Structured log fields naming the request."""
    return {"action": action, "method": request.method, "path": request.path}


def _http_exception_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own 404, 405, 413 and the like, in the error shape."""
    if exc.status < 400:
        raise exc
    response = error_response(_error_for(request, exc), exc.status)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _error_for(request: web.Request, exc: web.HTTPException) -> ConnectraError:
    """The product error matching an aiohttp HTTP exception."""
    if isinstance(exc, web.HTTPNotFound):
        return RouteNotFoundError()
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowedError(f"{exc.method} is not allowed here; use {allowed}")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return body_too_large(request.client_max_size)
    if exc.status < 500:
        return RequestError(exc.reason.lower())
    return ConnectraError("an unexpected error occurred")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a valid `X-API-Key` on everything under /common, before the body is read,
    and a scope that covers the route (see `access.py`)."""
    if _is_protected(request.path):
        given = request.headers.get(API_KEY_HEADER)
        principal = await request.app[KEYRING].authenticate(given)
        if principal is None:
            raise UnauthorizedError()
        check_scope(request, principal)
        request[PRINCIPAL] = principal
    return await handler(request)


def _is_protected(path: str) -> bool:
    """Whether a path needs an API key (unknown /common paths too, so 401 comes before 404)."""
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")
