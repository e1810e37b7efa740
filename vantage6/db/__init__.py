"""Database backends of the server: Django's, with a cheaper connection check (PostgreSQL) and the
writers of one process queued before SQLite's write lock (SQLite). ``vantage6.settings`` selects them.

What the services ask of a backend beyond Django's own, by what it means: its features (``Features``,
Django's ``DatabaseFeatures`` style) and the SQL that differs between backends (``Operations``), given
typed by ``features`` and ``operations``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast
from weakref import WeakKeyDictionary

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.features import BaseDatabaseFeatures
from django.db.backends.base.operations import BaseDatabaseOperations


class Features(BaseDatabaseFeatures):
    """Our features of a backend; the defaults are those of a backend without them."""

    # Writes in a statement's WITH clauses (a data-modifying WITH): the rows of several tables, or a
    # write with the lookup that allows it, in one statement, atomic on its own - no transaction of
    # the caller's, one round trip.
    supports_data_modifying_with = False


class Operations(BaseDatabaseOperations):
    """Our SQL that differs between backends."""

    def json_rows_sql(
        self, table: str, alias: str, columns: Sequence[str], where: str, order_by: str | None = None
    ) -> str:
        """A query of one value: the rows of ``table`` (as ``alias`` in ``where``, SQL) matching
        ``where`` as the text of one JSON array of ``[column, ...]`` arrays, in the order of column
        ``order_by`` if given (without rows: NULL or ``[]``)."""
        raise NotImplementedError

    def transaction_lock_sql(self) -> str | None:
        """A statement taking a lock on two integer keys (its two parameters) until the transaction
        ends, for writes that must not interleave; None where a write transaction excludes every other
        writer already."""
        raise NotImplementedError

    def unbounded_transaction_sql(self) -> str | None:
        """A statement lifting ``settings.STATEMENT_TIMEOUT_SECONDS`` for the rest of the transaction,
        for the server's own periodic work that no client waits for; None where there is no bound."""
        return None


class LoopReader:
    """Reads of a few rows on an event loop's own thread, through a connection of its own: for the
    lookup of each event a node sends over its socket, without the hand-over to a database thread and
    back (two thread wake-ups, on a loaded machine most of that lookup's time). Not in a transaction.
    ``rows`` gives None where it cannot read at once (another read of the loop under way, no
    connection yet or any more, the database refused or did not answer within ``TIMEOUT`` seconds):
    the caller takes the database thread then, which waits and reports as it does."""

    TIMEOUT = 1.0

    async def rows(self, sql: str, params: Sequence) -> list[tuple] | None:
        """The rows of ``sql`` (Django's, ``%s`` parameters), or None: not read here."""
        return None


# The readers of each event loop, by database alias; a loop's go with it.
_readers: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, LoopReader]] = WeakKeyDictionary()
# The same for the wrappers their reads use (operations, converters).
_wrappers: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, BaseDatabaseWrapper]] = WeakKeyDictionary()


def loop_connection(alias: str) -> BaseDatabaseWrapper:
    """A wrapper of database ``alias`` for the reads of the running event loop, the same for all its tasks
    (never connected: its ``loop_reader`` reads). Django builds a wrapper for each context that asks, and
    each message a socket handles runs in a context of its own: ~20 µs per message."""
    wrappers = _wrappers.setdefault(asyncio.get_running_loop(), {})
    wrapper = wrappers.get(alias)
    if wrapper is None:
        wrapper = wrappers[alias] = connections[alias]
    return wrapper


def loop_reader(connection: BaseDatabaseWrapper) -> LoopReader:
    """The reader of the running event loop for ``connection``'s database (one per loop and database:
    Django gives each task of a loop a wrapper of its own, never connected there)."""
    readers = _readers.setdefault(asyncio.get_running_loop(), {})
    reader = readers.get(connection.alias)
    if reader is None:
        make = getattr(connection, "make_loop_reader", None)
        reader = readers[connection.alias] = make() if make is not None else LoopReader()
    return reader


def features(connection: BaseDatabaseWrapper) -> Features:
    """The features of ``connection``'s backend (the settings select one of ours)."""
    return cast(Features, connection.features)


def operations(connection: BaseDatabaseWrapper) -> Operations:
    """The operations of ``connection``'s backend (the settings select one of ours)."""
    return cast(Operations, connection.ops)
