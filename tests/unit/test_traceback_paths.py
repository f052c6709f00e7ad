"""Tracebacks in `job_response` name files relative to where Python imports them from."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable

import pydantic
import pytest

from connectra.failure_policy import failure_response
from connectra.processors.importing.rows import parse_uuid
from connectra.traceback_paths import shown_path

FILE = re.compile(r'File "([^"]+)", line \d+')


def traceback_of(exc: BaseException) -> list[str]:
    """The traceback a failed attempt records for `exc`."""
    details = failure_response({}, exc, retry_in=None)["error"]["details"]
    lines: list[str] = details["traceback"]
    return lines


def files_in(lines: list[str]) -> list[str]:
    """The file of every frame shown."""
    return [path for line in lines for path in FILE.findall(line)]


def raised(call: Callable[[], object]) -> BaseException:
    """The error a call raises."""
    try:
        call()
    except ValueError as exc:
        return exc
    raise AssertionError("no error raised")


def test_project_frames_are_relative_to_the_package_root() -> None:
    exc = raised(lambda: parse_uuid("nope"))
    assert files_in(traceback_of(exc)) == [
        "tests/unit/test_traceback_paths.py",  # raised()
        "tests/unit/test_traceback_paths.py",  # the lambda
        "connectra/processors/importing/rows.py",
    ]


def test_third_party_and_standard_library_frames_are_relative_to_their_import_root() -> None:
    adapter = pydantic.TypeAdapter(int)
    files = files_in(traceback_of(raised(lambda: adapter.validate_python("x"))))
    assert files[-1] == "pydantic/type_adapter.py"
    files = files_in(traceback_of(raised(lambda: json.loads("{"))))
    assert files[-1] == "json/decoder.py"


def test_no_frame_shows_an_absolute_path() -> None:
    lines = traceback_of(raised(lambda: json.loads("{")))
    assert len(lines) == 4  # three frames, then the exception's line
    assert lines[-1].startswith("json.decoder.JSONDecodeError: ")
    assert all(not os.path.isabs(path) for path in files_in(lines))
    assert not any(sys.prefix in line or os.getcwd() in line for line in lines)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("/srv/app/lib/site-packages/asyncpg/pool.py", "asyncpg/pool.py"),
        ("/srv/app/src/connectra/jobs.py", "connectra/jobs.py"),  # the longest root wins
        ("/elsewhere/secret/script.py", "script.py"),
        ("<frozen runpy>", "<frozen runpy>"),
    ],
)
def test_a_path_is_shown_relative_to_the_longest_root_holding_it(
    filename: str, expected: str
) -> None:
    roots = {"/srv/app", "/srv/app/lib/site-packages", "/srv/app/src"}
    assert shown_path(filename, roots) == expected
