"""Dashboard sessions: a browser-session cookie that lets /ui render pages, and never act.

The cookie holds `<issued>.<nonce>.<mac>` with mac = HMAC-SHA256(API key, issued.nonce): the
key never leaves the sign-in request, every API process with the same `API_KEYS` accepts the
cookie, and removing a key from `API_KEYS` ends the sessions it opened. Actions (cancel,
retry, download) are sent by the page's script to /common with the key in `X-API-Key`, which
it keeps in the tab's sessionStorage; a cookie alone cannot act, so a forged request cannot.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from aiohttp import web

SESSION_COOKIE = "connectra_ui"
# A browser restoring its tabs may keep a session cookie for days; the server does not.
SESSION_MAX_SECONDS = 12 * 3600
CLOCK_SKEW_SECONDS = 60
_PURPOSE = "connectra-dashboard-session-v1"


def new_session(key: str, now: float) -> str:
    """A session token for an accepted key, issued at `now` (Unix seconds)."""
    issued = str(int(now))
    nonce = secrets.token_hex(16)
    return f"{issued}.{nonce}.{_mac(_key_bytes(key), issued, nonce)}"


def session_valid(token: str | None, keys: tuple[bytes, ...], now: float) -> bool:
    """Whether a token was issued for one of `keys` and has not expired."""
    parts = (token or "").split(".")
    # ASCII digits, bounded: `str.isdigit` also takes '²', which `int` refuses.
    if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 12):
        return False
    issued, nonce, mac = parts
    age = now - int(issued)
    if not -CLOCK_SKEW_SECONDS <= age <= SESSION_MAX_SECONDS:
        return False
    given = mac.encode("ascii", "replace")
    accepted = False
    for key in keys:  # every key, so the time taken does not say which one matched
        accepted |= hmac.compare_digest(given, _mac(key, issued, nonce).encode("ascii"))
    return accepted


def _mac(key: bytes, issued: str, nonce: str) -> str:
    """The token's signature under one API key."""
    message = f"{_PURPOSE}|{issued}|{nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _key_bytes(key: str) -> bytes:
    """A key as `Settings.api_key_values` encodes it."""
    return key.encode("utf-8", "surrogatepass")


def set_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    """No Expires or Max-Age: the browser forgets it when its session ends."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/ui",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    """Tell the browser to drop the session cookie."""
    response.del_cookie(SESSION_COOKIE, path="/ui", httponly=True, samesite="Strict")


def same_origin(request: web.Request) -> bool:
    """False when a browser says the form was posted from another site (sign-in forgery)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site POST: those always carry Origin
    return urlsplit(origin).netloc == request.host
