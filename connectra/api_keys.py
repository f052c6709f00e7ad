"""Managed API keys: names, scopes and the secret format (`cj_<key id>_<random>`). Pure.

A secret is random, shown once, and stored only as its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from connectra.errors import InvalidKeyNameError

SECRET_PREFIX = "cj_"
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
# No ':' (it separates a key's name from its Idempotency-Keys); 'env-' names the API_KEYS.
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_KEY_PREFIX = "env-"
SECRET_BYTES = 32


class Scope(StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        """Whether a key of this scope may do what needs `needed`."""
        order = list(Scope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A freshly made secret: the id shown in it, the whole secret, and its stored digest."""

    key_id: str
    secret: str
    digest: bytes


def new_secret() -> NewSecret:
    """A new random secret, `cj_<12 hex digits>_<43 URL-safe characters>`."""
    key_id = secrets.token_hex(6)
    secret = f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewSecret(key_id, secret, secret_digest(secret))


def secret_digest(given: str) -> bytes:
    """The SHA-256 of a presented key, as stored and compared (any text, any length)."""
    return hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()


def key_id_of(given: str) -> str | None:
    """The key id a presented key names, or None when it is not a managed key's secret."""
    if not given.startswith(SECRET_PREFIX):
        return None
    key_id, separator, rest = given.removeprefix(SECRET_PREFIX).partition("_")
    if not separator or not rest or not KEY_ID.fullmatch(key_id):
        return None
    return key_id


def check_key_name(name: str) -> str:
    """A valid name for a new key."""
    if not KEY_NAME.fullmatch(name) or name.startswith(ENV_KEY_PREFIX):
        raise InvalidKeyNameError()
    return name


def env_key_name(position: int) -> str:
    """The name of the `position`-th key (from 1) of API_KEYS."""
    return f"{ENV_KEY_PREFIX}{position}"
