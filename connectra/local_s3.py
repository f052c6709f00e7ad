"""The local default's object storage: an in-memory S3-compatible server (moto) on loopback.

Only `connectra run` starts it, and only when no S3 endpoint or credentials are configured.
Objects live in memory and are gone when the process stops; point `S3_ENDPOINT_URL` (MinIO,
Ceph, ...) or AWS credentials at real storage for anything that must last.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from connectra.errors import LocalS3Error

log = logging.getLogger(__name__)

LOCAL_BUCKET = "connectra-local"
LOCAL_CREDENTIAL = "local"


@dataclass(frozen=True, slots=True)
class LocalS3:
    """Where the local server answers and the bucket it holds."""

    endpoint_url: str
    bucket: str


@contextlib.contextmanager
def local_s3(port: int, bucket: str) -> Iterator[LocalS3]:
    """Run the server (in a thread) with `bucket` created, until the block ends. Blocking."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise LocalS3Error() from exc
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        host, bound = server.get_host_and_port()
        endpoint = f"http://{host}:{bound}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=LOCAL_CREDENTIAL,
            aws_secret_access_key=LOCAL_CREDENTIAL,
        )
        client.create_bucket(Bucket=bucket)
        log.info(
            "local in-memory S3 ready",
            extra={"action": "local_s3", "endpoint_url": endpoint, "bucket": bucket},
        )
        yield LocalS3(endpoint, bucket)
    finally:
        server.stop()
