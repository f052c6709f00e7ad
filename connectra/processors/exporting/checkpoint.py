"""The multipart upload an export has open, kept in `jobs.checkpoint`. Pure.

Saved before the first part is sent, so that a later attempt, or the rescuer, can abort it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

UPLOAD_FIELD = "multipart_upload"


@dataclass(frozen=True, slots=True)
class OpenUpload:
    """A multipart upload a job started and may not have finished."""

    bucket: str
    key: str
    upload_id: str

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint that names this upload."""
        return {UPLOAD_FIELD: asdict(self)}

    @classmethod
    def from_checkpoint(cls, checkpoint: object) -> OpenUpload | None:
        """The upload a stored checkpoint names, or None when it names none."""
        if not isinstance(checkpoint, dict):
            return None
        fields = checkpoint.get(UPLOAD_FIELD)
        if not isinstance(fields, dict):
            return None
        values = [fields.get(name) for name in ("bucket", "key", "upload_id")]
        strings = [value for value in values if isinstance(value, str) and value]
        return cls(*strings) if len(strings) == len(values) else None
