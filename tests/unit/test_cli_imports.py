"""`connectra --version`, `--help` and `healthcheck` start without the product: no runner,
processor or driver is imported (a container's HEALTHCHECK runs one every 30 s)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "asyncpg",
    "boto3",
    "botocore",
    "elasticsearch",
    "connectra.db",
    "connectra.processors",
    "connectra.runners",
)
# Imports the command line and, given arguments, runs it in this interpreter; prints its exit
# code and the heavy modules loaded.
PROBE = """
import json, sys
from connectra.cli import app
heavy, args, code = tuple(json.loads(sys.argv[1])), sys.argv[2:], None
try:
    if args:
        app(args, prog_name="connectra")
except SystemExit as exc:
    code = exc.code
loaded = [name for name in sys.modules
          if any(name == prefix or name.startswith(prefix + ".") for prefix in heavy)]
print(json.dumps([code, sorted(loaded)]), file=sys.stderr)
"""


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def run(*args: str, **env: str) -> tuple[int | None, list[str]]:
    """`connectra ARGS` (with only `env` set): its exit code and the heavy modules it loaded;
    with no ARGS, only `import connectra.cli` (no exit code)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), *args],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    code, loaded = json.loads(done.stderr.splitlines()[-1])
    return code, loaded


@pytest.mark.parametrize(
    ("args", "code"),
    [((), None), (("--version",), 0), (("--help",), 0), (("healthcheck", "--help"), 0)],
)
def test_the_cli_imports_no_runner_processor_or_driver_to_start(
    args: tuple[str, ...], code: int | None
) -> None:
    assert run(*args) == (code, [])


def test_healthcheck_imports_no_runner_processor_or_driver(refusing_port: int) -> None:
    # With no --url it reads API_PORT and METRICS_PORT from the settings, as in the image.
    assert run("healthcheck", API_PORT=str(refusing_port), METRICS_PORT="0") == (1, [])
    assert run("healthcheck", "--url", f"http://127.0.0.1:{refusing_port}/readyz") == (1, [])
