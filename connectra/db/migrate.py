"""Applies the ordered plain-SQL files in `migrations/`, once each, each in a transaction that
holds an advisory lock: no session state, so it works through a transaction-mode pooler too."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from connectra.errors import MigrationError, SchemaOutdatedError

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process that migrates.
MIGRATION_LOCK_KEY = 0x636F6E6E656374
FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: its version (the file name) and text."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        """A fingerprint that catches edits to an applied migration."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    """The copy packaged in the wheel or, in a source checkout, the repository's `migrations/`."""
    packaged = Path(str(resources.files("connectra") / "_migrations"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """Every migration file in order."""
    folder = folder or migrations_dir()
    files = sorted(p for p in folder.iterdir() if FILE_NAME.match(p.name))
    return [Migration(p.stem, p.read_text(encoding="utf-8")) for p in files]


async def migrate(conn: asyncpg.Connection, folder: Path | None = None) -> list[str]:
    """Apply what is missing; return the versions applied now."""
    migrations = load_migrations(folder)
    async with conn.transaction():
        await _lock(conn)
        await conn.execute(CREATE_LEDGER)
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    applied = {row["version"]: row["checksum"] for row in rows}
    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            _check_unchanged(migration, applied[migration.version])
        elif await _apply_once(conn, migration):
            done.append(migration.version)
    return done


async def _lock(conn: asyncpg.Connection) -> None:
    """Wait for the migration lock, held until the transaction ends.

    A transaction's lock, not a session's: through a transaction-mode pooler an unlock after
    the transaction may reach another server connection and leave the lock held. The key is
    the one older versions took with `pg_advisory_lock`, so they exclude each other too.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)


async def _apply_once(conn: asyncpg.Connection, migration: Migration) -> bool:
    """Apply one migration in its own transaction, unless another process applied it while
    this one waited for the lock; whether it was applied here."""
    async with conn.transaction():
        await _lock(conn)
        recorded = await conn.fetchval(
            "SELECT checksum FROM schema_migrations WHERE version = $1", migration.version
        )
        if recorded is not None:
            _check_unchanged(migration, recorded)
            return False
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
            migration.version,
            migration.checksum,
        )
    log.info("migration applied", extra={"action": "migrate", "version": migration.version})
    return True


def _check_unchanged(migration: Migration, recorded: str) -> None:
    """An applied migration must never be edited: say so instead of drifting."""
    if migration.checksum != recorded:
        raise MigrationError(
            f"migration {migration.version} was changed after it was applied; "
            "add a new migration instead"
        )


async def pending_migrations(conn: asyncpg.Connection, folder: Path | None = None) -> list[str]:
    """Versions not yet applied to this database."""
    ledger = await conn.fetchval("SELECT to_regclass('schema_migrations')")
    applied = (
        {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        if ledger
        else set()
    )
    return [m.version for m in load_migrations(folder) if m.version not in applied]


async def ensure_schema(pool: asyncpg.Pool, *, apply: bool) -> None:
    """Migrate when asked to; otherwise refuse to work on an outdated schema."""
    async with pool.acquire() as conn:
        if apply:
            await migrate(conn)
        elif missing := await pending_migrations(conn):
            raise SchemaOutdatedError(
                f"the database lacks migrations {', '.join(missing)}; run `connectra migrate`"
            )
