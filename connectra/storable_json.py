"""What PostgreSQL's jsonb can hold, checked before a value reaches the database. Pure.

jsonb refuses `NaN` and infinities, text holding NUL or an unpaired surrogate, and very deep
nesting; and only JSON's own types encode at all.
"""

from __future__ import annotations

import math
import re

MAX_JSON_DEPTH = 64

_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


class UnstorableJsonError(ValueError):
    """The value cannot be stored as jsonb; the message says why."""


def check_storable(value: object, depth: int = 1) -> None:
    """Raise `UnstorableJsonError` unless jsonb can store `value` as it is."""
    if depth > MAX_JSON_DEPTH:
        raise UnstorableJsonError(f"it is nested more than {MAX_JSON_DEPTH} levels deep")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableJsonError(f"it holds the number {value}, which JSON cannot")
    elif isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnstorableJsonError(f"it has a key that is not a string: {key!r:.40}")
            _check_text(key)
            check_storable(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(item, depth + 1)
    else:
        raise UnstorableJsonError(f"it holds a {type(value).__name__}, which is not JSON")


def _check_text(text: str) -> None:
    """PostgreSQL text holds neither NUL nor unpaired surrogates."""
    if _UNSTORABLE_TEXT.search(text):
        raise UnstorableJsonError(
            "it contains a NUL character or an unpaired surrogate, which cannot be stored"
        )
