"""Managed API keys without a database: the secret format, names, scopes, the route table, the
key ring's cache (a stand-in store and clock), and where the local development key applies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from connectra.api.access import MAX_CACHED, ROUTE_SCOPES, KeyRing, required_scope
from connectra.api_keys import Scope, check_key_name, key_id_of, new_secret, secret_digest
from connectra.db.api_key_store import StoredKey
from connectra.errors import InvalidKeyNameError
from connectra.settings import ConfigError, load_settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_new_secret_shows_its_key_id_and_is_stored_only_as_its_sha256() -> None:
    made = new_secret()
    assert made.secret.startswith(f"cj_{made.key_id}_")
    assert len(made.secret) == len("cj_") + 12 + 1 + 43  # 256 random bits, URL-safe
    assert made.digest == hashlib.sha256(made.secret.encode()).digest()
    assert key_id_of(made.secret) == made.key_id
    assert new_secret().secret != made.secret


@pytest.mark.parametrize(
    "given",
    ["", "cj_", "cj_0123456789ab", "cj_0123456789ab_", "cj_0123456789AB_x", "cj_0123_x",
     "xx_0123456789ab_x", "local-dev-key", "cj_0123456789abc_x"],
)  # fmt: skip
def test_what_is_not_a_managed_secret_names_no_key_id(given: str) -> None:
    assert key_id_of(given) is None


def test_a_secret_holding_underscores_still_names_its_key_id() -> None:
    assert key_id_of("cj_0123456789ab_a_b-c") == "0123456789ab"


@pytest.mark.parametrize("name", ["billing", "ci.deploy-2", "A_b", "x" * 63])
def test_key_names_that_are_accepted(name: str) -> None:
    assert check_key_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a b", "a:b", "x" * 64, "env-1", "env-x", "é"])
def test_key_names_that_are_refused(name: str) -> None:
    with pytest.raises(InvalidKeyNameError):
        check_key_name(name)


def test_each_scope_includes_the_ones_before_it() -> None:
    assert Scope.ADMIN.allows(Scope.WRITE)
    assert Scope.ADMIN.allows(Scope.READ)
    assert Scope.WRITE.allows(Scope.READ)
    assert not Scope.WRITE.allows(Scope.ADMIN)
    assert not Scope.READ.allows(Scope.WRITE)


def test_routes_not_listed_need_admin_and_head_is_read_as_get() -> None:
    assert required_scope("GET", "/common/something-new") is Scope.ADMIN
    assert required_scope("HEAD", "/common/jobs/{uuid}") is Scope.READ
    assert required_scope("post", "/common/jobs/create") is Scope.WRITE
    assert {scope for _, scope in ROUTE_SCOPES.items()} == set(Scope)
    assert all(path.startswith("/common/") for _, path in ROUTE_SCOPES)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("LOCALHOST", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", False),
     ("::", False), ("10.0.0.5", False), ("example.com", False), ("localhost.example", False)],
)  # fmt: skip
def test_the_api_is_on_loopback_only_for_loopback_addresses(host: str, loopback: bool) -> None:
    assert load_settings(API_HOST=host).api_on_loopback is loopback


def test_api_key_cache_seconds_defaults_to_five_and_is_bounded() -> None:
    assert load_settings().api_key_cache_seconds == 5
    assert load_settings(API_KEY_CACHE_SECONDS=0).api_key_cache_seconds == 0
    for wrong in (-1, 61):
        with pytest.raises(ConfigError, match="API_KEY_CACHE_SECONDS"):
            load_settings(API_KEY_CACHE_SECONDS=wrong)


@dataclass
class FakeKeys:
    """A stand-in for ApiKeyStore: the active keys by key id, and the calls made."""

    active_keys: dict[str, StoredKey] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)

    async def active(self, key_id: str) -> StoredKey | None:
        self.lookups.append(key_id)
        return self.active_keys.get(key_id)

    async def touch(self, key_id: str) -> None:
        self.touched.append(key_id)

    def add(self, name: str, scope: Scope) -> str:
        made = new_secret()
        self.active_keys[made.key_id] = StoredKey(
            name, made.key_id, scope, made.digest, NOW, None, None, None
        )
        return made.secret


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ring(keys: FakeKeys, clock: Clock, env: tuple[str, ...] = ("e1", "e2")) -> KeyRing:
    return KeyRing(env, keys, ttl=5, clock=clock)  # type: ignore[arg-type]


async def test_keys_of_api_keys_are_admins_named_by_position_and_need_no_lookup() -> None:
    keys, clock = FakeKeys(), Clock()
    keyring = ring(keys, clock)
    first, second = await keyring.authenticate("e1"), await keyring.authenticate("e2")
    assert first is not None
    assert second is not None
    assert (first.name, first.scope, first.owner) == ("env-1", Scope.ADMIN, None)
    assert second.name == "env-2"
    assert first.session_key == secret_digest("e1")
    assert await keyring.authenticate("e3") is None
    assert await keyring.authenticate(None) is None
    assert keys.lookups == []


async def test_a_managed_key_is_looked_up_once_per_cache_time_and_touched_then() -> None:
    keys, clock = FakeKeys(), Clock()
    secret = keys.add("billing", Scope.WRITE)
    keyring = ring(keys, clock)
    for _ in range(3):
        principal = await keyring.authenticate(secret)
        assert principal is not None
        assert (principal.name, principal.scope, principal.owner) == ("billing", "write", "billing")
    assert len(keys.lookups) == 1
    assert len(keys.touched) == 1
    clock.now += 5.01
    assert await keyring.authenticate(secret) is not None
    assert len(keys.lookups) == 2
    assert len(keys.touched) == 2


async def test_a_revoked_key_is_refused_once_the_cache_time_has_passed() -> None:
    keys, clock = FakeKeys(), Clock()
    secret = keys.add("billing", Scope.READ)
    keyring = ring(keys, clock)
    assert await keyring.authenticate(secret) is not None
    keys.active_keys.clear()  # revoked
    clock.now += 4.9
    assert await keyring.authenticate(secret) is not None, "still trusted from the cache"
    clock.now += 0.2
    assert await keyring.authenticate(secret) is None
    assert await keyring.candidates(key_id_of(secret) or "") == ()


async def test_a_wrong_secret_with_a_real_key_id_is_refused_and_never_touches() -> None:
    keys, clock = FakeKeys(), Clock()
    secret = keys.add("billing", Scope.ADMIN)
    keyring = ring(keys, clock)
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert await keyring.authenticate(forged) is None
    assert await keyring.authenticate("cj_ffffffffffff_nothing") is None
    assert keys.touched == []


async def test_with_no_cache_time_every_request_looks_the_key_up() -> None:
    keys, clock = FakeKeys(), Clock()
    secret = keys.add("billing", Scope.READ)
    keyring = KeyRing((), keys, ttl=0, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        assert await keyring.authenticate(secret) is not None
    assert len(keys.lookups) == 3


async def test_made_up_key_ids_cannot_grow_the_cache_without_bound() -> None:
    keys, clock = FakeKeys(), Clock()
    keyring = ring(keys, clock)
    for n in range(MAX_CACHED * 2 + 10):
        assert await keyring.authenticate(f"cj_{n:012x}_x") is None
    assert len(keyring._cache) <= MAX_CACHED


async def test_session_candidates_are_every_env_key_or_the_one_managed_key() -> None:
    keys, clock = FakeKeys(), Clock()
    secret = keys.add("billing", Scope.READ)
    keyring = ring(keys, clock)
    assert [p.name for p in await keyring.candidates("env")] == ["env-1", "env-2"]
    (only,) = await keyring.candidates(key_id_of(secret) or "")
    assert only.name == "billing"
    assert only.session_key == secret_digest(secret)
    assert await keyring.candidates("not-an-id") == ()
