"""What the HTTP server answers on its own, how many connections fit the open-file limit, and
the one reader of integers in query strings."""

from __future__ import annotations

import resource

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    InvalidHeader,
    LineTooLong,
)

from connectra.api.payloads import whole_number
from connectra.api.server_limits import (
    FD_RESERVE,
    ServerLimits,
    connection_cap,
    protocol_error,
    raw_answer,
)
from connectra.errors import RequestTimeoutError
from connectra.settings import load_settings

SECRET = b"key-0123456789abcdef" * 10


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (LineTooLong(SECRET[:100] + b"...", 8190), 400, "ERR_HEADER_TOO_LARGE"),
        (BadHttpMessage("Too many headers received"), 400, "ERR_HEADER_TOO_LARGE"),
        (BadHttpMethod(SECRET.decode()), 400, "ERR_MALFORMED_REQUEST"),
        (BadStatusLine(SECRET.decode()), 400, "ERR_MALFORMED_REQUEST"),
        (InvalidHeader(SECRET), 400, "ERR_MALFORMED_REQUEST"),
        (ContentLengthError("Not enough data to satisfy content length header."), 400,
         "ERR_MALFORMED_REQUEST"),
        (BadHttpMessage(f"Duplicate {SECRET.decode()!r} header found."), 400,
         "ERR_MALFORMED_REQUEST"),
        (RuntimeError(SECRET.decode()), 500, "ERR_INTERNAL"),
        (None, 504, "ERR_INTERNAL"),
    ],
)  # fmt: skip
def test_what_the_parser_refuses_becomes_an_error_quoting_nothing_of_the_request(
    exc: BaseException | None, status: int, code: str
) -> None:
    error = protocol_error(exc, status, 8190)
    assert error.code == code
    assert b"key-0123" not in error.render().encode()


def test_a_header_too_long_is_431_and_garbage_400() -> None:
    assert protocol_error(LineTooLong(b"x", 8190), 400, 8190).http_status == 431
    assert protocol_error(BadHttpMethod("\x16\x03"), 400, 8190).http_status == 400


def test_a_raw_answer_is_whole_http_in_the_error_shape() -> None:
    raw = raw_answer(RequestTimeoutError("too slow"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"Connection: close" in head
    assert body == b'{"error": "ERR_REQUEST_TIMEOUT: too slow", "success": false}'


def test_the_open_file_limit_is_raised_to_fit_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 65536))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: set_to.append(limits))
    assert connection_cap(2048) == 2048
    assert set_to == [(2048 + FD_RESERVE, 65536)]


def test_a_cap_over_the_hard_limit_is_lowered_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    monkeypatch.setattr(resource, "setrlimit", lambda *_: None)
    assert connection_cap(4096) == 1024 - FD_RESERVE
    monkeypatch.setattr(resource, "getrlimit", lambda _: (300, 300))
    assert connection_cap(4096) == 150  # half the limit at least


def test_limits_come_from_the_settings() -> None:
    settings = load_settings(
        API_HEADER_TIMEOUT_SECONDS="2.5",
        API_BODY_TIMEOUT_SECONDS="7",
        API_KEEPALIVE_TIMEOUT_SECONDS="9",
        API_MAX_CONNECTIONS="100",
    )
    assert ServerLimits.of(settings) == ServerLimits(2.5, 7, 9, 100)
    defaults = ServerLimits.of(load_settings())
    assert max(defaults.header_timeout, defaults.body_timeout, defaults.keepalive_timeout) <= 30


@pytest.mark.parametrize(
    "text",
    ["", "\u0663", "\u00b2", "\uff11", "1\u0663", "+5", "-5", " 5", "5 ", "5\n", "0x10", "1e3",
     "1_000", "5.0", "9" * 20, "9" * 4301],
)  # fmt: skip
def test_whole_number_takes_ascii_digits_only(text: str) -> None:
    assert whole_number(text, 0, 2**63 - 1) is None


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("060", 60), ("0" * 18 + "7", 7), ("9" * 18, 10**18 - 1)]
)
def test_whole_number_reads_ascii_digits(text: str, value: int) -> None:
    assert whole_number(text, 0, 2**63 - 1) == value


def test_whole_number_keeps_to_its_bounds() -> None:
    assert whole_number("0", 1, 10) is None
    assert whole_number("11", 1, 10) is None
    assert whole_number("10", 1, 10) == 10
