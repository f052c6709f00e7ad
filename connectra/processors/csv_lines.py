"""CSV lines as both directions write them: the exported file and an import's failed-rows file.

Lines end in "\\n"; a field is quoted (RFC 4180) only when it must be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LINE_TERMINATOR = "\n"

_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def csv_field(text: str) -> str:
    """The field, quoted if it holds a delimiter, a quote or a line break."""
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(fields: Sequence[str]) -> str:
    """One CSV line, without its end."""
    if len(fields) == 1 and not fields[0]:
        return '""'
    return ",".join([csv_field(field) for field in fields])


def join_lines(lines: Sequence[str]) -> bytes:
    """Lines, each ended, as UTF-8."""
    if not lines:
        return b""
    return (LINE_TERMINATOR.join(lines) + LINE_TERMINATOR).encode()
