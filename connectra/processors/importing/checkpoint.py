"""Where an import got to: saved on the job row after every committed batch, read on resume.

A checkpoint names the first byte and line after the last batch committed in every sink, the
totals so far, the file's header row (a resumed attempt starts mid-file and never sees it) and
the object's size and ETag: a checkpoint of an object since replaced is not used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from connectra.objectstore import ObjectStat


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far an import got, and in which version of the file."""

    offset: int
    line: int
    processed: int
    failed: int
    errors: list[str]
    header: list[str]
    size: int
    etag: str

    def to_json(self) -> dict[str, Any]:
        """The checkpoint as stored in `jobs.checkpoint`."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Checkpoint | None:
        """The stored checkpoint, or None when there is none or it is not one of ours."""
        if not isinstance(data, dict):
            return None
        try:
            checkpoint = cls(**data)
        except TypeError:
            return None
        return checkpoint if checkpoint.is_well_formed() else None

    def is_well_formed(self) -> bool:
        """True when every field has the type and range an import writes."""
        counts = (self.offset, self.line, self.processed, self.failed, self.size)
        return (
            all(isinstance(n, int) and n >= 0 for n in counts)
            and self.line >= 1
            and self.offset <= self.size
            and isinstance(self.etag, str)
            and _strings(self.header)
            and _strings(self.errors)
        )

    def matches(self, stat: ObjectStat) -> bool:
        """True when the object is still the one the checkpoint was taken on."""
        return (self.size, self.etag) == (stat.size, stat.etag)


def _strings(value: object) -> bool:
    """True for a list of strings."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
