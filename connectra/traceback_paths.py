"""Tracebacks for `job_response`, naming files by where Python imports them from. Pure.

API clients see which module failed, never where the server keeps its files.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Iterable

# Where the `connectra` package sits: the project's root, or site-packages when installed.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FILE = re.compile(r'(File ")([^"\n]+)(", line )')


def short_traceback(exc: BaseException, frames: int = 3) -> list[str]:
    """The exception's last `frames` frames and its own line(s), with paths shortened."""
    roots = _import_roots()
    lines = traceback.format_exception(exc, limit=-frames)[-(frames + 1) :]
    return [_FILE.sub(lambda m: m[1] + shown_path(m[2], roots) + m[3], line) for line in lines]


def shown_path(filename: str, roots: Iterable[str]) -> str:
    """A file's path relative to the longest of `roots` holding it; its name alone otherwise."""
    if not os.path.isabs(filename):
        return filename
    path = os.path.normpath(filename)
    holding = [root for root in roots if path.startswith(root + os.sep)]
    if not holding:
        return os.path.basename(path)
    return os.path.relpath(path, max(holding, key=len)).replace(os.sep, "/")


def _import_roots() -> set[str]:
    """The folders modules are imported from, the file system's root excepted."""
    entries = [_PACKAGE_ROOT, *(entry for entry in sys.path if entry)]
    roots = {os.path.normpath(os.path.abspath(entry)) for entry in entries}
    return {root for root in roots if os.path.dirname(root) != root}
