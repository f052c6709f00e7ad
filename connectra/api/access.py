"""Who is calling and what they may do: API keys, their scopes, and which jobs they see.

`KeyRing` checks admin keys (`API_KEYS`) in memory and managed keys (hashed in PostgreSQL)
through a short cache; `ROUTE_SCOPES` names the scope each route needs, and a key without the
admin scope finds only the jobs it created.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from aiohttp import web

from connectra.api.payloads import parse_uuid
from connectra.api.state import STORE
from connectra.api_keys import KEY_ID, Scope, env_key_name, key_id_of, secret_digest
from connectra.db.api_key_store import ApiKeyStore, StoredKey
from connectra.db.store import JobStore
from connectra.errors import ScopeRequiredError
from connectra.jobs import Job
from connectra.settings import Settings

# The key id a dashboard session of an API_KEYS key names (managed ids are 12 hex digits).
ENV_KEY_ID = "env"
# Past this many cached lookups (unknown key ids included), expired ones are dropped, and
# then all if that is not enough: a flood of made-up ids cannot grow the cache.
MAX_CACHED = 4096

# The scope each route needs; a /common route missing here needs admin.
ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/common/jobs"): Scope.READ,
    ("GET", "/common/jobs/{uuid}"): Scope.READ,
    ("GET", "/common/jobs/{uuid}/download-url"): Scope.READ,
    ("POST", "/common/jobs/create"): Scope.WRITE,
    ("POST", "/common/jobs/{uuid}/cancel"): Scope.WRITE,
    ("PATCH", "/common/jobs/{uuid}"): Scope.WRITE,
    ("POST", "/common/jobs/{uuid}/retry"): Scope.WRITE,
    ("GET", "/common/upload-url"): Scope.WRITE,
    ("GET", "/common/schedules"): Scope.ADMIN,
    ("POST", "/common/schedules"): Scope.ADMIN,
    ("DELETE", "/common/schedules/{name}"): Scope.ADMIN,
    ("POST", "/common/schedules/{name}/pause"): Scope.ADMIN,
    ("POST", "/common/schedules/{name}/resume"): Scope.ADMIN,
}


def required_scope(method: str, path: str) -> Scope:
    """The scope a route needs (HEAD as GET); admin for any route not listed."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    return ROUTE_SCOPES.get((method, path), Scope.ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """An accepted key: its name, scope, and what signs its dashboard sessions."""

    name: str
    scope: Scope
    key_id: str
    session_key: bytes = field(repr=False)  # the SHA-256 of its secret: never shown

    @property
    def owner(self) -> str | None:
        """Whose jobs this key sees: its own, or everyone's (None) with the admin scope."""
        return None if self.scope is Scope.ADMIN else self.name

    def may(self, needed: Scope) -> bool:
        """Whether this key's scope covers `needed`."""
        return self.scope.allows(needed)


@dataclass(slots=True)
class _Cached:
    """A lookup of a key id and when it stops being trusted."""

    key: StoredKey | None
    expires: float


class KeyRing:
    """Turns a presented key, or a dashboard session's key id, into a Principal."""

    def __init__(
        self,
        env_keys: tuple[str, ...],
        store: ApiKeyStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env = tuple(secret_digest(key) for key in env_keys)
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    async def authenticate(self, given: str | None) -> Principal | None:
        """The principal of a presented key; None when it is not accepted."""
        if given is None:
            return None
        digest = secret_digest(given)
        position = self._env_position(digest)
        if position is not None:
            return self._env_principal(position)
        key_id = key_id_of(given)
        if key_id is None:
            return None
        key, fresh = await self._lookup(key_id)
        if key is None or not hmac.compare_digest(digest, key.secret_hash):
            return None
        if fresh and key.touch_due(datetime.now(UTC)):
            await self._store.touch(key_id)
        return _principal(key)

    def _env_position(self, digest: bytes) -> int | None:
        """Which key of API_KEYS this is, comparing with every one in constant time."""
        found = None
        for position, env in enumerate(self._env, start=1):
            if hmac.compare_digest(digest, env):
                found = position
        return found

    def _env_principal(self, position: int) -> Principal:
        """The admin principal of the `position`-th key of API_KEYS."""
        return Principal(env_key_name(position), Scope.ADMIN, ENV_KEY_ID, self._env[position - 1])

    async def candidates(self, key_id: str) -> tuple[Principal, ...]:
        """The principals a dashboard session naming this key id may belong to: every key of
        API_KEYS for `env`, else the active managed key with that id (none if revoked)."""
        if key_id == ENV_KEY_ID:
            return tuple(self._env_principal(n) for n in range(1, len(self._env) + 1))
        if not KEY_ID.fullmatch(key_id):
            return ()
        key, _ = await self._lookup(key_id)
        return () if key is None else (_principal(key),)

    async def _lookup(self, key_id: str) -> tuple[StoredKey | None, bool]:
        """The active key with this id, from the cache while it is trusted; and whether it
        was read from the database now."""
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached is not None and cached.expires > now:
            return cached.key, False
        key = await self._store.active(key_id)
        if self._ttl > 0:
            self._remember(key_id, _Cached(key, now + self._ttl), now)
        return key, True

    def _remember(self, key_id: str, entry: _Cached, now: float) -> None:
        """Cache a lookup, keeping the cache bounded."""
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[key_id] = entry


def _principal(key: StoredKey) -> Principal:
    """The principal of an active managed key."""
    return Principal(key.name, key.scope, key.key_id, key.secret_hash)


def check_scope(request: web.Request, principal: Principal) -> None:
    """Refuse (403) a matched route the key's scope does not cover; unknown routes and
    methods are left to the router's 404 and 405."""
    match = request.match_info
    resource = match.route.resource
    if match.http_exception is not None or resource is None:
        return
    needed = required_scope(request.method, resource.canonical)
    if not principal.may(needed):
        raise ScopeRequiredError(
            f"this API key has the {principal.scope} scope; this request needs {needed}"
        )


KEYRING = web.AppKey("keyring", KeyRing)
PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal:
    """The key that made this request (set by the auth middleware on every /common route)."""
    return request[PRINCIPAL]


async def visible_job(request: web.Request) -> Job:
    """The job in the path, if the caller may see it; another key's job is not found."""
    uuid = parse_uuid(request.match_info["uuid"])
    return await request.app[STORE].get(uuid, owner=principal_of(request).owner)


async def visible_uuid(request: web.Request) -> UUID:
    """The job uuid in the path, checked visible to the caller (404 otherwise) before it
    acts; a job's creator never changes, so the check cannot go stale."""
    uuid = parse_uuid(request.match_info["uuid"])
    owner = principal_of(request).owner
    if owner is not None:
        await request.app[STORE].get(uuid, owner=owner)
    return uuid


def keyring(settings: Settings, store: JobStore) -> KeyRing:
    """The keys an API with these settings accepts: API_KEYS and the managed keys."""
    env_keys = tuple(key.get_secret_value() for key in settings.api_keys)
    return KeyRing(env_keys, ApiKeyStore(store.pool), settings.api_key_cache_seconds)
