"""What asyncpg's exceptions mean: the database is down, or the project error one counts as."""

from __future__ import annotations

import asyncpg

from connectra.errors import DatabaseError

# Errors that mean "the database is unreachable right now", not "the request or code is wrong".
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # Raised while releasing a connection whose server went away mid-query.
    asyncpg.InternalClientError,
)

# Server errors that mean "try again", not "the data or the code is wrong".
_TRANSIENT_SERVER_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def database_error(exc: BaseException) -> DatabaseError | None:
    """The `ERR_DATABASE` error an asyncpg exception counts as (None for any other exception).

    A lost connection, a serialization failure or a deadlock may pass on the next attempt;
    other server errors (constraint, syntax, types) would fail the same way again.
    """
    if isinstance(exc, asyncpg.InterfaceError):
        transient = True
    elif isinstance(exc, asyncpg.PostgresError):
        transient = isinstance(exc, _TRANSIENT_SERVER_ERRORS)
    else:
        return None
    error = DatabaseError(str(exc) or type(exc).__name__, transient=transient)
    error.__cause__ = exc
    return error
