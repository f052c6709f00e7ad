"""Dashboard session tokens: signed with an API key, never holding it, and short-lived."""

from __future__ import annotations

import pytest

from connectra.api.dashboard_session import SESSION_MAX_SECONDS, new_session, session_valid

NOW = 1_800_000_000.0
KEYS = (b"k1", b"k2")


def test_a_token_is_valid_for_the_key_that_opened_it_and_does_not_hold_it() -> None:
    token = new_session("k2", NOW)
    assert "k2" not in token
    assert session_valid(token, KEYS, NOW + 10)
    assert session_valid(token, (b"k2",), NOW)


def test_two_sign_ins_get_two_tokens() -> None:
    assert new_session("k1", NOW) != new_session("k1", NOW)


def test_removing_the_key_ends_its_sessions() -> None:
    token = new_session("k1", NOW)
    assert not session_valid(token, (b"k2",), NOW)
    assert not session_valid(token, (), NOW)


@pytest.mark.parametrize(
    ("age", "valid"),
    [(0, True), (SESSION_MAX_SECONDS, True), (SESSION_MAX_SECONDS + 1, False), (-30, True),
     (-3600, False)],
)  # fmt: skip
def test_a_token_expires_on_the_server_whatever_the_browser_keeps(age: int, valid: bool) -> None:
    assert session_valid(new_session("k1", NOW), KEYS, NOW + age) is valid


def test_a_tampered_or_malformed_token_is_refused() -> None:
    issued, nonce, mac = new_session("k1", NOW).split(".")
    for token in [
        f"{int(issued) + 1}.{nonce}.{mac}",
        f"{issued}.{nonce[::-1]}.{mac}",
        f"{issued}.{nonce}.{mac[:-1]}0" if mac[-1] != "0" else f"{issued}.{nonce}.{mac[:-1]}1",
        f"{issued}.{nonce}",
        "",
        None,
        f"x{issued}.{nonce}.{mac}",
        f"{issued}.{nonce}.{mac}é",
    ]:
        assert not session_valid(token, KEYS, NOW), token
