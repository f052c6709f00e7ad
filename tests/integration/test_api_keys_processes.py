"""Managed API keys as a person uses them, in real processes: `connectra keys` create, list,
rotate and revoke; an API process that accepts a key made while it runs, refuses it once
revoked without a restart, and never logs a secret; and when an API without keys refuses to
start, the local development key included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from connectra.api_keys import key_id_of, secret_digest
from connectra.cli import LOCAL_API_KEY
from tests.polling import eventually
from tests.processes import Process, Run, Spawn, free_port, run, spawn

__all__ = ["run", "spawn"]  # the fixtures, requested by name

NO_KEYS = {"API_KEYS": ""}  # empty counts as unset, whatever this machine's environment says


async def status(port: int, key: str) -> int:
    """The status of a job listing with this key."""
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"http://127.0.0.1:{port}/common/jobs", json={}, headers={"X-API-Key": key}
        )
        return response.status


@pytest.fixture
async def stopped() -> AsyncIterator[list[Process]]:
    """Processes to stop with SIGTERM (and expect a clean exit from) at the end."""
    processes: list[Process] = []
    yield processes
    for process in processes:
        if process.proc.returncode is None:
            assert await process.stop() == 0


async def test_keys_create_list_rotate_and_revoke(run: Run) -> None:
    created = await run("keys", "create", "billing", "--scope", "write")
    assert created.code == 0, created.err
    secret = created.out.strip()
    assert key_id_of(secret) is not None
    assert created.out.count("\n") == 1
    assert "not shown again" in created.err
    assert secret not in created.err
    assert (await run("keys", "create", "ops", "--scope", "ADMIN")).code == 0

    listing = await run("keys", "list")
    assert listing.code == 0
    header, *rows = listing.out.splitlines()
    assert header.split()[:3] == ["NAME", "SCOPE", "PREFIX"]
    assert [row.split()[:3] for row in rows] == [
        ["billing", "write", f"cj_{key_id_of(secret)}_"],
        ["ops", "admin", rows[1].split()[2]],
    ]
    assert secret not in listing.out
    assert secret_digest(secret).hex() not in listing.out

    rotated = await run("keys", "rotate", "billing")
    assert rotated.code == 0
    new = rotated.out.strip()
    assert key_id_of(new) not in (None, key_id_of(secret))

    revoked = await run("keys", "revoke", "billing")
    assert revoked.code == 0
    assert json.loads(revoked.out)["revoked_at"] is not None
    shown = json.loads((await run("keys", "list", "--json")).out)
    assert [(key["name"], key["revoked_at"] is not None) for key in shown] == [
        ("billing", True),
        ("ops", False),
    ]
    assert new not in json.dumps(shown)


async def test_keys_commands_refuse_with_one_line_and_their_codes(run: Run) -> None:
    assert (await run("keys", "create", "billing", "--scope", "read")).code == 0
    again = await run("keys", "create", "billing", "--scope", "read")
    assert (again.code, again.out) == (1, "")
    assert again.err.startswith("ERR_API_KEY_EXISTS: ")
    assert again.err.count("\n") == 1
    for args in (("revoke", "nobody"), ("rotate", "nobody")):
        missing = await run("keys", *args)
        assert missing.code == 1
        assert missing.err.startswith("ERR_API_KEY_NOT_FOUND: ")
    bad_name = await run("keys", "create", "env-9", "--scope", "read")
    assert bad_name.code == 1
    assert bad_name.err.startswith("ERR_INVALID_KEY_NAME: ")
    assert (await run("keys", "create", "x", "--scope", "root")).code == 2
    assert (await run("keys", "create", "x")).code == 2, "--scope is required"
    assert (await run("keys", "list")).out.split()[:2] == ["NAME", "SCOPE"]


async def test_an_api_process_accepts_a_new_key_and_refuses_it_once_revoked_without_restart(
    spawn: Spawn, run: Run, stopped: list[Process]
) -> None:
    ops = (await run("keys", "create", "ops", "--scope", "admin")).out.strip()
    port = free_port()
    api = await spawn(
        "api", API_PORT=str(port), API_KEY_CACHE_SECONDS="1", LOG_LEVEL="DEBUG", **NO_KEYS
    )
    stopped.append(api)
    await api.until_logged("api_listen")
    assert await status(port, ops) == 200

    secret = (await run("keys", "create", "ci", "--scope", "read")).out.strip()
    assert await status(port, secret) == 200, "a key made while the API runs works at once"
    assert await status(port, secret[:-1]) == 401
    assert await status(port, LOCAL_API_KEY) == 401
    assert (await run("keys", "revoke", "ci")).code == 0
    began = asyncio.get_running_loop().time()

    async def refused() -> bool:
        return await status(port, secret) == 401

    await eventually(refused, within=5)
    assert asyncio.get_running_loop().time() - began <= 1 + 1, "within the cache time"
    assert api.proc.returncode is None
    assert await status(port, ops) == 200

    logged = api.log_path.read_text()
    assert "api_listen" in logged
    for secret_text in (ops, secret, secret[:-1]):
        assert secret_text not in logged
        assert secret_digest(secret_text).hex() not in logged


async def test_an_api_without_api_keys_or_a_stored_key_refuses_to_start(spawn: Spawn) -> None:
    api = await spawn("api", API_PORT=str(free_port()), **NO_KEYS)
    assert await api.wait(30) == 2
    (line,) = api.plain_lines()
    assert line.startswith("invalid configuration: API_KEYS: no API key is set and none")
    assert "connectra keys create" in line


async def test_run_refuses_the_local_development_key_off_loopback(spawn: Spawn) -> None:
    run = await spawn(
        "run", API_HOST="0.0.0.0", API_PORT=str(free_port()), LOCAL_S3_PORT="0", **NO_KEYS
    )
    assert await run.wait(60) == 2
    (line,) = run.plain_lines()
    assert line.startswith("invalid configuration: API_KEYS: ")
    assert "only when API_HOST is a loopback address" in line
    assert not any(event.get("action") == "api_listen" for event in run.events())
    assert not any(event.get("action") == "local_api_key" for event in run.events())


async def test_run_accepts_the_local_development_key_on_loopback_only(
    spawn: Spawn, stopped: list[Process]
) -> None:
    port = free_port()
    run = await spawn("run", API_HOST="127.0.0.1", API_PORT=str(port), LOCAL_S3_PORT="0", **NO_KEYS)
    stopped.append(run)
    await run.until_logged("api_listen", within=60)
    assert await status(port, LOCAL_API_KEY) == 200
    assert any(event.get("action") == "local_api_key" for event in run.events())


async def test_run_off_loopback_starts_with_a_stored_key_and_no_development_key(
    spawn: Spawn, run: Run, stopped: list[Process]
) -> None:
    secret = (await run("keys", "create", "ops", "--scope", "admin")).out.strip()
    port = free_port()
    daemon = await spawn(
        "run", API_HOST="0.0.0.0", API_PORT=str(port), LOCAL_S3_PORT="0", **NO_KEYS
    )
    stopped.append(daemon)
    await daemon.until_logged("api_listen", within=60)
    assert await status(port, secret) == 200
    assert await status(port, LOCAL_API_KEY) == 401
