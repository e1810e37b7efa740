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

from django.db.backends.signals import connection_created
from django.dispatch import Signal

# Sent, from the thread that saw it, at the end of each outage of this process.
database_recovered = Signal()

# PostgreSQL's SQLSTATEs of a statement that waited for a lock in vain: lock_timeout, a deadlock, and a
# serializable transaction that met another's writes.
_LOCK_WAITS = {"55P03", "40P01", "40001"}
# PostgreSQL's SQLSTATE of a statement canceled: past ``statement_timeout`` (or canceled by an operator).
_QUERY_CANCELED = "57014"

_lock = threading.Lock()
_down = False


def failed(exc: BaseException) -> None:
    """The database could not serve a call of this process (from any thread) with ``exc``: an outage
    unless it ended a lock wait."""
    global _down
    if not lock_wait(exc) and not statement_canceled(exc):
        _down = True


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
