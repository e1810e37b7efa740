"""Whether this process met a database outage it has not seen the end of yet.

Any part of the process that finds the database unavailable says so (``failed``: a request answered
503, a socket handshake or connect refused, a housekeeping round skipped); the first connection made
after that, or the first housekeeping round that reaches the database, ends the outage (``reached``),
and ``database_recovered`` is sent once (the socket server tells its nodes ``sync``: a node told of a
task while the database was away could not fetch it). So the end of an outage is noticed whatever
noticed its start.
"""

from __future__ import annotations

import sqlite3
import threading

from django.conf import settings
from django.db import InterfaceError, InternalError, NotSupportedError, OperationalError
from django.db.backends.signals import connection_created
from django.dispatch import Signal

# Sent, from the thread that saw it, at the end of each outage of this process.
database_recovered = Signal()

# PostgreSQL's SQLSTATEs of a statement that waited for a lock in vain: lock_timeout, a deadlock, and a
# serializable transaction that met another's writes.
_LOCK_WAITS = {"55P03", "40P01", "40001"}
# PostgreSQL's SQLSTATE of a statement canceled: past ``statement_timeout`` (or canceled by an operator).
_QUERY_CANCELED = "57014"
# PostgreSQL's SQLSTATE for a write in a read-only transaction (a standby, or a database set read-only).
_READ_ONLY_SQL_TRANSACTION = "25006"
# What PostgreSQL answers, once, to a prepared statement whose result type a change of a column's type
# invalidated, in a transaction that had already run others (it is prepared again with its next use).
_FEATURE_NOT_SUPPORTED = "0A000"
_CACHED_PLAN_CHANGED = "cached plan must not change result type"

_lock = threading.Lock()
_down = False


def failed(exc: BaseException) -> None:
    """A call of this process (from any thread) failed with the database error ``exc``: an outage if
    the database could not serve it (``unavailable``), unless it ended a lock wait or a statement that
    ran too long. Any other error (a conflict, a bug) is no outage either: the database answered."""
    global _down
    if unavailable(exc) and not lock_wait(exc) and not statement_canceled(exc):
        _down = True


def unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the database cannot serve now (down, unreachable, restarting, read-only,
    full, locked, a prepared statement to prepare again, a statement canceled) rather than that the
    call is at fault."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    code = getattr(exc.__cause__, "pgcode", None) if exc is not None else None
    if isinstance(exc, InternalError):
        return code == _READ_ONLY_SQL_TRANSACTION
    return (
        isinstance(exc, NotSupportedError)
        and code == _FEATURE_NOT_SUPPORTED
        and _CACHED_PLAN_CHANGED in str(exc.__cause__)
    )


def lock_wait(exc: BaseException) -> bool:
    """Whether the database error ``exc`` ended a wait for a lock another transaction held (SQLite's
    "database is locked", PostgreSQL's lock timeout or deadlock). It is no outage: the database answered,
    and its readers never waited, so no node missed a task it could not fetch."""
    cause = exc.__cause__ or exc
    if isinstance(cause, sqlite3.OperationalError):
        primary_code = getattr(cause, "sqlite_errorcode", 0) & 0xFF
        # vantage6.db.sqlite3's own wait raises it without a code
        locked = str(cause) == "database is locked"
        return locked or primary_code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return getattr(cause, "pgcode", None) in _LOCK_WAITS


def statement_canceled(exc: BaseException) -> bool:
    """Whether the database error ``exc`` canceled a statement that ran too long (``settings.
    STATEMENT_TIMEOUT_SECONDS``). It is no outage: the database answered."""
    return getattr(exc.__cause__ or exc, "pgcode", None) == _QUERY_CANCELED


def canceled_text() -> str:
    """What a client is told of its call whose statement was canceled (``statement_canceled``)."""
    return (
        f"The request took longer than the database allows ({settings.STATEMENT_TIMEOUT_SECONDS} s) and "
        "was canceled; nothing was changed."
    )


def reached() -> None:
    """A call of this process reached the database (from any thread): ``database_recovered`` is sent
    once at the end of an outage."""
    global _down
    if not _down:
        return
    with _lock:
        if not _down:
            return
        _down = False
    database_recovered.send(sender=None)


def _connected(**_kwargs: object) -> None:
    reached()


# A connection is made again only once the broken one was dropped: the database answers again.
connection_created.connect(_connected, dispatch_uid="vantage6.database_outage")
