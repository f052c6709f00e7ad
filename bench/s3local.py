"""A private `moto_server` process on 127.0.0.1 standing in for S3."""

from __future__ import annotations

import contextlib
import shutil
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
from common import children, free_port, start, wait_for

BUCKET = "bench"


def _moto_binary() -> str:
    local = Path(sys.executable).with_name("moto_server")
    return str(local) if local.exists() else (shutil.which("moto_server") or "moto_server")


def client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )


@contextlib.asynccontextmanager
async def moto() -> AsyncIterator[str]:
    """Yield the endpoint URL of a fresh moto_server with bucket `bench`."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with children() as procs:
        procs.append(start("moto_server", [_moto_binary(), "-H", "127.0.0.1", "-p", str(port)]))

        def up() -> bool:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                return True
            except OSError:
                return False

        await wait_for(up, 30, "moto_server", interval=0.2)
        client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "S3_ENDPOINT_URL": endpoint,
        "S3_BUCKET": BUCKET,
        "S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
