"""The import checkpoint: a round trip through JSON, and refusal of what an import never wrote."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectra.objectstore import ObjectStat
from connectra.processors.importing.checkpoint import Checkpoint

SAVED = Checkpoint(
    offset=120,
    line=7,
    processed=5,
    failed=1,
    errors=["line 3: expected 2 fields, found 1"],
    header=["uuid", "Email"],
    size=400,
    etag='"abc"',
)


def test_a_checkpoint_survives_the_jobs_table() -> None:
    assert Checkpoint.from_json(json.loads(json.dumps(SAVED.to_json()))) == SAVED


@pytest.mark.parametrize(
    "stored",
    [
        None,
        [],
        "checkpoint",
        {"offset": 1},
        SAVED.to_json() | {"extra": 1},
        SAVED.to_json() | {"offset": -1},
        SAVED.to_json() | {"offset": 401},
        SAVED.to_json() | {"line": 0},
        SAVED.to_json() | {"processed": "5"},
        SAVED.to_json() | {"header": "uuid,email"},
        SAVED.to_json() | {"errors": [1]},
        SAVED.to_json() | {"etag": None},
    ],
)
def test_anything_an_import_did_not_write_is_no_checkpoint(stored: Any) -> None:
    assert Checkpoint.from_json(stored) is None


def test_a_checkpoint_matches_only_the_same_object() -> None:
    assert SAVED.matches(ObjectStat(400, '"abc"'))
    assert not SAVED.matches(ObjectStat(400, '"abd"'))
    assert not SAVED.matches(ObjectStat(401, '"abc"'))
