"""The local default's object storage: an in-memory S3 server (moto) in a child process that
never outlives the daemon. Only `connectra run` starts it, when no S3 is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from connectra.errors import LocalS3Error
from connectra.logs import configure_logging
from connectra.shielding import run_to_the_end

log = logging.getLogger(__name__)

LOCAL_BUCKET = "connectra-local"
LOCAL_CREDENTIAL = "local"
HOST = "127.0.0.1"
START_SECONDS = 30.0  # importing moto takes 1-2 s on a quiet machine
STOP_GRACE_SECONDS = 5.0
_ERROR = {"action": "local_s3_error"}

T = TypeVar("T")


class LocalS3:
    """The running server: where it answers, the bucket it holds and its child process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, bucket: str) -> None:
        self.process = process
        self.endpoint_url = f"http://{HOST}:{port}"
        self.bucket = bucket

    async def beside(self, main: Awaitable[T]) -> T:
        """Await `main` (the daemon) while the server runs; if the server exits first, `main`
        is cancelled and `LocalS3Error` raised (in an exception group)."""
        async with asyncio.TaskGroup() as tg:
            watch = tg.create_task(self._watch())
            try:
                return await main
            finally:
                watch.cancel()

    async def _watch(self) -> NoReturn:
        """Wait for the child to exit, which it must not do before it is asked to."""
        code = await self.process.wait()
        log.error(
            "local S3 server exited; stopping",
            extra={"action": "local_s3_exit", "pid": self.process.pid, "exit_code": code},
        )
        raise LocalS3Error(
            f"the local S3 server (pid {self.process.pid}) exited with code {code} while "
            "connectra run was running; the objects it held are lost"
        )


@contextlib.asynccontextmanager
async def local_s3(port: int, bucket: str, log_level: str) -> AsyncIterator[LocalS3]:
    """Start the server in a child process with `bucket` created; stop it when the block ends."""
    process = await _spawn(port, bucket, log_level)
    try:
        server = LocalS3(process, await _ready(process), bucket)
        log.info(
            "local in-memory S3 ready",
            extra={
                "action": "local_s3",
                "endpoint_url": server.endpoint_url,
                "bucket": bucket,
                "pid": process.pid,
            },
        )
        yield server
    finally:
        await run_to_the_end(_stop(process))


async def _spawn(port: int, bucket: str, log_level: str) -> asyncio.subprocess.Process:
    """Start the child; its stdout answers once, its stderr is ours (JSON lines). In a session
    of its own, so signals to the daemon's process group (Ctrl-C in a terminal, `kill -- -PGID`)
    reach the daemon only, which stops the server once it no longer needs it."""
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", __name__, str(port), bucket, log_level,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:  # not the database's: `connectra run` reports OSError as that
        raise LocalS3Error(f"the local S3 server could not be started: {exc}") from exc


async def _ready(process: asyncio.subprocess.Process) -> int:
    """The port the child listens on, once it answers with its bucket created."""
    try:
        async with asyncio.timeout(START_SECONDS):
            return await _answer_of(process)
    except TimeoutError:
        raise LocalS3Error(
            f"the local S3 server did not answer within {START_SECONDS:.0f}s"
        ) from None


async def _answer_of(process: asyncio.subprocess.Process) -> int:
    """Read the child's answer, past anything a library printed before it."""
    assert process.stdout is not None
    while line := await process.stdout.readline():
        with contextlib.suppress(ValueError):
            answer = json.loads(line)
            if isinstance(answer, dict) and "error" in answer:
                raise LocalS3Error(str(answer["error"]))
            if isinstance(answer, dict) and "port" in answer:
                return int(answer["port"])
    code = await process.wait()
    raise LocalS3Error(f"the local S3 server exited with code {code} before it answered")


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Stop the child if it still runs; either way, log how it ended."""
    if process.returncode is None:
        await _terminate(process)
    log.info(
        "local S3 server stopped",
        extra={"action": "local_s3_stop", "pid": process.pid, "exit_code": process.returncode},
    )


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (and end of its stdin), then SIGKILL if it is still there after the grace."""
    assert process.stdin is not None
    process.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
    except TimeoutError:
        log.warning(
            "local S3 server ignored SIGTERM; killing it",
            extra={"action": "local_s3_kill", "pid": process.pid},
        )
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


# The child: `python -m connectra.local_s3 PORT BUCKET LOG_LEVEL`.


def main(argv: list[str]) -> None:
    """Serve until stdin ends or SIGTERM comes; answer `{"port": N}` or `{"error": "..."}`
    on stdout once, when ready or when it cannot start."""
    port, bucket, log_level = int(argv[0]), argv[1], argv[2]
    # Only the daemon stops us: it may still need us while it stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    _quiet_logging(log_level)
    try:
        _serve_until_stdin_ends(port, bucket)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # leaving already: let the exit finish


def _serve_until_stdin_ends(port: int, bucket: str) -> None:
    """Start, answer, serve while the daemon holds the pipe."""
    try:
        server = _start(port, bucket)
    except LocalS3Error as exc:
        _answer({"error": exc.message})
        sys.exit(1)
    try:
        _answer({"port": server.port})
        _silence_stdout()
        sys.stdin.buffer.read()  # until the daemon closes the pipe, or is gone
    finally:
        server.shutdown()


def _exit_on_signal(signum: int, frame: object) -> NoReturn:
    """SIGTERM: leave through `finally` blocks, exit code 0; a second one changes nothing."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


def _quiet_logging(log_level: str) -> None:
    """JSON lines on stderr like the daemon's; no access log; warnings and uncaught errors
    logged, not printed."""
    configure_logging(log_level)
    logging.captureWarnings(True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(
        args.exc_type, args.exc_value, args.exc_traceback
    )


def _log_uncaught(
    kind: type[BaseException], error: BaseException | None, trace: TracebackType | None
) -> None:
    """An error nothing caught, as a JSON line."""
    log.error("local S3 server error: %s", kind.__name__, exc_info=error, extra=_ERROR)


def _start(port: int, bucket: str) -> Any:
    """The server, listening, with the bucket created; any failure is a `LocalS3Error`."""
    server = _serve(port)
    try:
        _create_bucket(server.port, bucket)
    except Exception as exc:
        server.shutdown()
        log.exception("local S3 bucket not created", extra=_ERROR)
        raise LocalS3Error(f"the local S3 server could not create the bucket: {exc}") from exc
    return server


def _serve(port: int) -> Any:
    """moto's server on a socket we bind (so a busy port is an error, not werkzeug's exit)."""
    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server
    except ImportError as exc:
        raise LocalS3Error() from exc
    try:
        sock = socket.create_server((HOST, port))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise LocalS3Error(
            f"the local S3 server cannot listen on {HOST}:{port} ({reason}); set "
            "LOCAL_S3_PORT to a free port, or S3_ENDPOINT_URL to an S3 of your own"
        ) from exc
    with sock:  # the server listens on its own duplicate
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server(
            HOST, port, app, threaded=True, request_handler=MotoRequestHandler, fd=sock.fileno()
        )
    threading.Thread(target=server.serve_forever, args=(0.1,), name="s3", daemon=True).start()
    return server


def _create_bucket(port: int, bucket: str) -> None:
    """Create the bucket through the server itself: this also shows it answers."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{port}",
        region_name="us-east-1",
        aws_access_key_id=LOCAL_CREDENTIAL,
        aws_secret_access_key=LOCAL_CREDENTIAL,
    )
    client.create_bucket(Bucket=bucket)


def _answer(reply: dict[str, Any]) -> None:
    """The one line the daemon waits for."""
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def _silence_stdout() -> None:
    """After the answer, stray prints (moto has a few) go nowhere: the daemon reads no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    main(sys.argv[1:])
