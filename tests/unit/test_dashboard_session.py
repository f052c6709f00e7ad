"""Dashboard session tokens: signed with a key's session key, never holding it, naming the key
by its public id, and short-lived."""

from __future__ import annotations

import hashlib

import pytest

from connectra.api.dashboard_session import (
    SESSION_MAX_SECONDS,
    new_session,
    read_session,
    signed_by,
)

NOW = 1_800_000_000.0
K1 = hashlib.sha256(b"k1").digest()
K2 = hashlib.sha256(b"k2").digest()
KEY_ID = "0123456789ab"


def valid(token: str | None, session_key: bytes, now: float = NOW) -> bool:
    """Whether the token reads as unexpired and was signed with this session key."""
    parsed = read_session(token, now)
    return parsed is not None and signed_by(parsed, session_key)


def test_a_token_is_valid_for_the_key_that_opened_it_and_does_not_hold_it() -> None:
    token = new_session(KEY_ID, K2, NOW)
    assert K2.hex() not in token
    assert token.startswith(f"{KEY_ID}.")
    assert valid(token, K2, NOW + 10)
    assert not valid(token, K1)


def test_two_sign_ins_get_two_tokens() -> None:
    assert new_session("env", K1, NOW) != new_session("env", K1, NOW)


def test_the_key_id_is_signed_too() -> None:
    token = new_session(KEY_ID, K1, NOW)
    assert not valid("env" + token.removeprefix(KEY_ID), K1)
    assert not valid("ba9876543210" + token.removeprefix(KEY_ID), K1)


@pytest.mark.parametrize(
    ("age", "ok"),
    [(0, True), (SESSION_MAX_SECONDS, True), (SESSION_MAX_SECONDS + 1, False), (-30, True),
     (-3600, False)],
)  # fmt: skip
def test_a_token_expires_on_the_server_whatever_the_browser_keeps(age: int, ok: bool) -> None:
    assert valid(new_session("env", K1, NOW), K1, NOW + age) is ok


def test_a_tampered_or_malformed_token_is_refused() -> None:
    key_id, issued, nonce, mac = new_session("env", K1, NOW).split(".")
    flipped = f"{mac[:-1]}0" if mac[-1] != "0" else f"{mac[:-1]}1"
    for token in [
        f"{key_id}.{int(issued) + 1}.{nonce}.{mac}",
        f"{key_id}.{issued}.{nonce[::-1]}.{mac}",
        f"{key_id}.{issued}.{nonce}.{flipped}",
        f"{key_id}.{issued}.{nonce}",
        f"{issued}.{nonce}.{mac}",
        "",
        None,
        f"{key_id}.x{issued}.{nonce}.{mac}",
        f"{key_id}.{issued}.{nonce}.{mac}é",
        f"ENV.{issued}.{nonce}.{mac}",
        f"{key_id}.²{issued}.{nonce}.{mac}",
    ]:
        assert not valid(token, K1), token
