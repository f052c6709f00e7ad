"""Every SQL statement the CSV import runs.

Statements that name a service's table or columns are templates filled only with identifiers from
the catalog (`identifier` refuses anything else), then cached per service and column set.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from connectra.catalog import ServiceSchema

# A temporary table with the service's field columns; ON COMMIT DELETE ROWS empties it after
# every batch, so one table serves the whole job on the connection the job holds.
STAGING_CREATE = """
CREATE TEMP TABLE {staging} ON COMMIT DELETE ROWS AS
SELECT {columns} FROM {table} WITH NO DATA
"""

STAGING_DROP = "DROP TABLE IF EXISTS pg_temp.{staging}"

# Behind a transaction-mode pooler a temporary table outlives the transaction on a server
# connection the next batch may not reach: each batch creates its own, dropped at its end (a
# same-named table some other client left there is dropped first). One round trip.
STAGING_CREATE_FOR_TRANSACTION = """
DROP TABLE IF EXISTS pg_temp.{staging};
CREATE TEMP TABLE {staging} ON COMMIT DROP AS
SELECT {columns} FROM {table} WITH NO DATA
"""

# A batch COPYed as CSV text (see verbatim_copy) reads a timestamp without an offset as UTC, as
# the converter does. LOCAL: it ends with the batch's transaction, and pooled connections are
# released without a reset.
STAGING_TIME_ZONE = "SET LOCAL TimeZone = 'UTC'"

# Rows go in uuid order so concurrent imports lock overlapping rows in the same order.
# The WHERE clause leaves a row untouched, updated_at included, when nothing in it changes.
STAGING_UPSERT = """
INSERT INTO {table} AS target ({columns})
SELECT {columns} FROM pg_temp.{staging} ORDER BY uuid
ON CONFLICT (uuid) DO UPDATE
SET {assignments}, updated_at = now()
WHERE ({target_columns}) IS DISTINCT FROM ({excluded_columns})
"""

# A file with only the uuid column can add rows but has nothing to update.
STAGING_INSERT_NEW = """
INSERT INTO {table} ({columns})
SELECT {columns} FROM pg_temp.{staging} ORDER BY uuid
ON CONFLICT (uuid) DO NOTHING
"""

# Uses the primary key (service, field, value); sorted for the same lock order as above.
FILTER_VALUES_INSERT = """
INSERT INTO filter_values (service, field, value)
SELECT $1, field, value FROM unnest($2::text[], $3::text[]) AS given(field, value)
ORDER BY field, value
ON CONFLICT DO NOTHING
"""


# The bad rows of a batch, one CSV line each; a batch written again after a resume adds nothing.
FAILED_ROWS_INSERT = """
INSERT INTO import_failed_rows (job_id, line, csv)
SELECT $1, line, csv FROM unnest($2::bigint[], $3::bytea[]) AS given(line, csv)
ON CONFLICT DO NOTHING
"""

# The next page of a job's bad rows in line order (keyset pagination on the primary key).
FAILED_ROWS_PAGE = """
SELECT line, csv FROM import_failed_rows
WHERE job_id = $1 AND line > $2
ORDER BY line
LIMIT $3
"""

FAILED_ROWS_DELETE = "DELETE FROM import_failed_rows WHERE job_id = $1"


def identifier(service: ServiceSchema, name: str) -> str:
    """A quoted column name, only if it is one of the service's fields."""
    if name not in service.field_names:
        raise ValueError(f"{name!r} is not a field of {service.name!r}")
    return f'"{name}"'


def staging_table(service: ServiceSchema) -> str:
    """The name of the service's staging table."""
    return f"import_staging_{service.name}"


def _column_list(service: ServiceSchema, names: Iterable[str], prefix: str = "") -> str:
    """Quoted, comma-separated columns, each with an optional table prefix."""
    return ", ".join(prefix + identifier(service, name) for name in names)


@lru_cache(maxsize=16)
def staging_create(
    service: ServiceSchema, *, per_transaction: bool = False, utc: bool = False
) -> str:
    """CREATE the service's staging table: for the connection's life, or (`per_transaction`,
    behind a transaction-mode pooler) dropped when the transaction ends; then, with `utc`
    (`per_transaction` only), STAGING_TIME_ZONE in the same round trip."""
    if utc and not per_transaction:
        raise ValueError("SET LOCAL needs the batch's transaction: only with per_transaction")
    template = STAGING_CREATE_FOR_TRANSACTION if per_transaction else STAGING_CREATE
    create = template.format(
        staging=staging_table(service),
        columns=_column_list(service, service.field_names),
        table=service.table,
    )
    return f"{create.rstrip()};\n{STAGING_TIME_ZONE}\n" if utc else create


@lru_cache(maxsize=8)
def staging_drop(service: ServiceSchema) -> str:
    """DROP the service's staging table."""
    return STAGING_DROP.format(staging=staging_table(service))


@lru_cache(maxsize=64)
def staging_upsert(service: ServiceSchema, names: tuple[str, ...]) -> str:
    """Move the staged rows into the service's table; only `names` are written."""
    updated = [name for name in names if name != "uuid"]
    if not updated:
        return STAGING_INSERT_NEW.format(
            table=service.table,
            columns=_column_list(service, names),
            staging=staging_table(service),
        )
    return STAGING_UPSERT.format(
        table=service.table,
        columns=_column_list(service, names),
        staging=staging_table(service),
        assignments=", ".join(
            f"{identifier(service, name)} = EXCLUDED.{identifier(service, name)}"
            for name in updated
        ),
        target_columns=_column_list(service, updated, "target."),
        excluded_columns=_column_list(service, updated, "EXCLUDED."),
    )
