"""Migrations: ordered plain SQL, applied once, safe to run from several processes at once."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from connectra.db.migrate import load_migrations, migrate, migrations_dir, pending_migrations
from connectra.errors import MigrationError


async def test_migrate_applies_every_file_once(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        versions = [m.version for m in load_migrations()]
        assert await pending_migrations(conn) == versions
        assert await migrate(conn) == versions
        assert await migrate(conn) == []
        assert await pending_migrations(conn) == []
        assert await conn.fetchval("SELECT to_regclass('jobs')") is not None
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_exactly_once(
    empty_database_url: str,
) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in conns))
        applied = [version for result in results for version in result]
        assert sorted(applied) == [m.version for m in load_migrations()]
        rows = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert rows == len(applied)
    finally:
        for conn in conns:
            await conn.close()


async def test_an_edited_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, folder)
        first = sorted(folder.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="was changed after it was applied"):
            await migrate(conn, folder)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_half_applied(
    empty_database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (folder / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT no_such_function();")
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, folder)
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        assert await pending_migrations(conn, folder) == ["0002_bad"]
    finally:
        await conn.close()
