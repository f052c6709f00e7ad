"""Which S3 buckets and keys jobs may touch (`S3_BUCKET`, `S3_ALLOWED_BUCKETS`,
`S3_ALLOWED_PREFIXES`), checked by `BucketPolicy`. Pure: no I/O, no settings object.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from connectra.errors import (
    BucketNotAllowedError,
    BucketNotConfiguredError,
    ConnectraError,
    KeyNotAllowedError,
)

# A key with one of these segments could mean another object (or, in a path-style URL, another
# bucket) once a client or proxy normalises the URL, as yarl and browsers do.
DOT_SEGMENTS = frozenset({".", ".."})
SHOWN_CHARS = 100


@dataclass(frozen=True, slots=True)
class BucketPolicy:
    """The default bucket, the other buckets jobs may use, and the key prefixes (none: any)."""

    default_bucket: str | None = None
    buckets: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, default_bucket: str | None, buckets: Iterable[str] = (), prefixes: Iterable[str] = ()
    ) -> BucketPolicy:
        """The policy allowing `default_bucket` (when set), `buckets` and keys under `prefixes`."""
        return cls(
            default_bucket, frozenset(buckets), tuple(prefix for prefix in prefixes if prefix)
        )

    def bucket_for(self, named: str | None) -> str:
        """The bucket a job uses: the one it names, else the default; refused unless allowed."""
        bucket = named or self.default_bucket
        if not bucket:
            raise BucketNotConfiguredError()
        self.check_bucket(bucket)
        return bucket

    def check(self, bucket: str, key: str) -> None:
        """Refuse an object outside the allowed buckets and prefixes."""
        self.check_bucket(bucket)
        self.check_key(key)

    def check_bucket(self, bucket: str) -> None:
        """Refuse a bucket that is neither the default nor listed."""
        if bucket != self.default_bucket and bucket not in self.buckets:
            raise BucketNotAllowedError(
                f"bucket {_shown(bucket)} is not one jobs may use "
                "(S3_BUCKET or one of S3_ALLOWED_BUCKETS)"
            )

    def check_key(self, key: str) -> None:
        """Refuse a key outside the allowed prefixes, or with a '.' or '..' segment."""
        if DOT_SEGMENTS.intersection(key.split("/")):
            raise KeyNotAllowedError(f"key {_shown(key)} has a '.' or '..' segment")
        if self.prefixes and not key.startswith(self.prefixes):
            raise KeyNotAllowedError(
                f"key {_shown(key)} is not under one of the allowed prefixes (S3_ALLOWED_PREFIXES)"
            )

    def allows(self, bucket: str, key: str) -> bool:
        """Whether `check` would let this object through."""
        try:
            self.check(bucket, key)
        except ConnectraError:
            return False
        return True


def _shown(name: str) -> str:
    """A bucket or key from a request, quoted and cut short for a message."""
    return repr(name if len(name) <= SHOWN_CHARS else name[:SHOWN_CHARS] + "...")
