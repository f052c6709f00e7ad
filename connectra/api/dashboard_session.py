"""Dashboard sessions: a browser-session cookie that lets /ui render pages, and never act.

The cookie is an HMAC signed with the key's secret digest and names the key by its id only, so
revoking the key ends its sessions. Actions go to /common with the key in `X-API-Key`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from connectra.api.access import ENV_KEY_ID
from connectra.api.payloads import whole_number
from connectra.api_keys import KEY_ID

SESSION_COOKIE = "connectra_ui"
# A browser restoring its tabs may keep a session cookie for days; the server does not.
SESSION_MAX_SECONDS = 12 * 3600
CLOCK_SKEW_SECONDS = 60
_PURPOSE = "connectra-dashboard-session-v2"


@dataclass(frozen=True, slots=True)
class SessionToken:
    """A well-formed, unexpired session token, not yet checked against its key."""

    key_id: str
    issued: str
    nonce: str
    mac: str


def new_session(key_id: str, session_key: bytes, now: float) -> str:
    """A session token for an accepted key, issued at `now` (Unix seconds)."""
    issued = str(int(now))
    nonce = secrets.token_hex(16)
    return f"{key_id}.{issued}.{nonce}.{_mac(session_key, key_id, issued, nonce)}"


def read_session(token: str | None, now: float) -> SessionToken | None:
    """The parts of a token that is well formed and has not expired; None otherwise."""
    parts = (token or "").split(".")
    if len(parts) != 4 or not _names_a_key(parts[0]):
        return None
    issued_at = whole_number(parts[1], 0, 10**12 - 1)
    if issued_at is None or not -CLOCK_SKEW_SECONDS <= now - issued_at <= SESSION_MAX_SECONDS:
        return None
    return SessionToken(*parts)


def _names_a_key(key_id: str) -> bool:
    """Whether a token's key id is one a principal has: `env` or a managed key's id."""
    return key_id == ENV_KEY_ID or KEY_ID.fullmatch(key_id) is not None


def signed_by(token: SessionToken, session_key: bytes) -> bool:
    """Whether the token was signed with this key's session key (constant-time)."""
    expected = _mac(session_key, token.key_id, token.issued, token.nonce).encode("ascii")
    return hmac.compare_digest(token.mac.encode("ascii", "replace"), expected)


def _mac(session_key: bytes, key_id: str, issued: str, nonce: str) -> str:
    """The token's signature under one key."""
    message = f"{_PURPOSE}|{key_id}|{issued}|{nonce}".encode()
    return hmac.new(session_key, message, hashlib.sha256).hexdigest()


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
