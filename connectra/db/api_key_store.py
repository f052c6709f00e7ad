"""Managed API keys in PostgreSQL: create, list, rotate, revoke, and the API's lookups.

Only a secret's SHA-256 is stored; the secret itself is returned once, by `create` and
`rotate`, and never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from connectra.api_keys import SECRET_PREFIX, NewSecret, Scope, check_key_name, new_secret
from connectra.db import queries as q
from connectra.errors import ApiKeyExistsError, ApiKeyNotFoundError
from connectra.jobs import iso_utc

# Two random 48-bit key ids colliding is all but impossible; a collision only means a retry.
KEY_ID_ATTEMPTS = 3
# `last_used_at` is written at most once per this interval: `touch` is skipped while it is
# fresher, and API_KEY_TOUCH's own guard (`interval '1 minute'`) must say the same.
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One row of api_keys (its secret's digest is kept out of `repr`)."""

    name: str
    key_id: str
    scope: Scope
    secret_hash: bytes
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def __repr__(self) -> str:
        """Name, key id and scope only."""
        return f"StoredKey(name={self.name!r}, key_id={self.key_id!r}, scope={self.scope!s})"

    @property
    def prefix(self) -> str:
        """The start every secret of this key has, `cj_<key id>_`: not secret, and enough to
        tell which key a secret belongs to."""
        return f"{SECRET_PREFIX}{self.key_id}_"

    def touch_due(self, now: datetime) -> bool:
        """Whether `touch` would write `last_used_at` (never set, or set TOUCH_INTERVAL ago)."""
        return self.last_used_at is None or self.last_used_at < now - TOUCH_INTERVAL


def key_from_row(row: Mapping[str, Any]) -> StoredKey:
    """Turn an api_keys row into a StoredKey."""
    return StoredKey(
        name=row["name"],
        key_id=row["key_id"],
        scope=Scope(row["scope"]),
        secret_hash=bytes(row["secret_hash"]),
        created_at=row["created_at"],
        rotated_at=row["rotated_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def key_to_json(key: StoredKey) -> dict[str, Any]:
    """What `connectra keys list --json` shows of a key: never its secret or digest."""
    return {
        "name": key.name,
        "scope": str(key.scope),
        "prefix": key.prefix,
        "created_at": iso_utc(key.created_at),
        "rotated_at": iso_utc(key.rotated_at),
        "last_used_at": iso_utc(key.last_used_at),
        "revoked_at": iso_utc(key.revoked_at),
    }


class ApiKeyStore:
    """Reads and writes the api_keys table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, name: str, scope: Scope) -> tuple[StoredKey, str]:
        """A new key and its secret (shown once); a taken name is refused."""
        check_key_name(name)
        row, secret = await self._with_new_secret(
            lambda made: self.pool.fetchrow(
                q.API_KEY_INSERT, name, made.key_id, made.digest, str(scope)
            )
        )
        if row is None:
            raise ApiKeyExistsError(f"a key named {name!r} exists already")
        return key_from_row(row), secret

    async def rotate(self, name: str) -> tuple[StoredKey, str]:
        """A new secret (and key id) for an active key; the old secret stops working."""
        row, secret = await self._with_new_secret(
            lambda made: self.pool.fetchrow(q.API_KEY_ROTATE, name, made.key_id, made.digest)
        )
        if row is None:
            raise ApiKeyNotFoundError(f"no active key is named {name[:70]!r}")
        return key_from_row(row), secret

    @staticmethod
    async def _with_new_secret(
        write: Callable[[NewSecret], Awaitable[asyncpg.Record | None]],
    ) -> tuple[asyncpg.Record | None, str]:
        """Write a key with a freshly drawn secret, drawing again while its key id is taken:
        the row written (None when `write` found no row to write) and the secret."""
        for _ in range(KEY_ID_ATTEMPTS):
            made = new_secret()
            try:
                return await write(made), made.secret
            except asyncpg.UniqueViolationError:
                continue  # the key id was taken: draw another
        raise ApiKeyExistsError("could not draw an unused key id; try again")

    async def revoke(self, name: str) -> StoredKey:
        """Revoke an active key for good; its name stays taken."""
        row = await self.pool.fetchrow(q.API_KEY_REVOKE, name)
        if row is None:
            raise ApiKeyNotFoundError(f"no active key is named {name[:70]!r}")
        return key_from_row(row)

    async def all(self) -> list[StoredKey]:
        """Every key, revoked ones too, by name."""
        return [key_from_row(row) for row in await self.pool.fetch(q.API_KEY_LIST)]

    async def active(self, key_id: str) -> StoredKey | None:
        """The active key with this key id, if any."""
        row = await self.pool.fetchrow(q.API_KEY_GET_ACTIVE, key_id)
        return None if row is None else key_from_row(row)

    async def any_active(self) -> bool:
        """Whether at least one key is active."""
        return bool(await self.pool.fetchval(q.API_KEY_ANY_ACTIVE))

    async def touch(self, key_id: str) -> None:
        """Record that the key was accepted (at most once per TOUCH_INTERVAL)."""
        await self.pool.execute(q.API_KEY_TOUCH, key_id)
