"""The export checkpoint: the open multipart upload through JSON; nothing else read as one."""

from __future__ import annotations

import json

import pytest

from connectra.processors.exporting.checkpoint import OpenUpload
from connectra.processors.importing.checkpoint import Checkpoint

UPLOAD = OpenUpload("bucket-one", "exports/1.csv", "upload-1")


def test_an_open_upload_survives_the_jobs_table() -> None:
    stored = json.loads(json.dumps(UPLOAD.to_checkpoint()))
    assert OpenUpload.from_checkpoint(stored) == UPLOAD


@pytest.mark.parametrize(
    "stored",
    [
        None,
        [],
        {},
        {"offset": 10, "line": 2},  # an import's
        {"multipart_upload": "upload-1"},
        {"multipart_upload": {"bucket": "bucket-one", "key": "exports/1.csv"}},
        {"multipart_upload": {"bucket": "bucket-one", "key": "k", "upload_id": ""}},
        {"multipart_upload": {"bucket": "bucket-one", "key": "k", "upload_id": 7}},
    ],
)
def test_anything_else_names_no_upload(stored: object) -> None:
    assert OpenUpload.from_checkpoint(stored) is None


def test_an_upload_checkpoint_is_not_taken_for_an_imports() -> None:
    assert Checkpoint.from_json(UPLOAD.to_checkpoint()) is None
