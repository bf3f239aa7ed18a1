"""Which database failures are an outage (retry later) and which are bugs (fix the code).

One rule, used by the HTTP error handler (503 or 500), the rate limiter (skip the check or fail)
and the streams (a retryable error event):

- SQLSTATE class 08 (connection exception) and 57P01-57P03 (the server is shutting down,
  crashed, or not accepting connections yet), as PostgreSQL reports them while it restarts;
- 53300 (too_many_connections): the server refuses a new session because `max_connections` (or
  a role's limit) is reached, which passes once other sessions end;
- connections that broke (`OSError`, or a connection SQLAlchemy invalidated) or that the pool
  could not hand out in time.

Everything else, including asyncpg's client-side `InterfaceError`s (too many query arguments,
a value of the wrong type), is a programming error: never an outage.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.errors import Unavailable

OUTAGE_MESSAGE = "The database is unavailable; try again shortly."
RETRY_AFTER_OUTAGE_SECONDS = 5
OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
"""admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections."""


class DatabaseUnavailable(Unavailable):
    """The database is unreachable (an outage, by `is_outage`): retry in a few seconds."""

    code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__(OUTAGE_MESSAGE, headers={"Retry-After": str(RETRY_AFTER_OUTAGE_SECONDS)})


def is_outage(exc: BaseException) -> bool:
    """Whether `exc`, or the error it wraps or was raised from, says the database is unreachable.

    SQLAlchemy wraps asyncpg's errors twice (`DBAPIError.orig`, then `__cause__`); the chain is
    followed through both.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_outage(current):
            return True
        if isinstance(current, DBAPIError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__
    return False


def _says_outage(exc: BaseException) -> bool:
    if isinstance(exc, OSError | PoolTimeoutError):  # refused, reset, timed out
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in OUTAGE_SQLSTATES)
