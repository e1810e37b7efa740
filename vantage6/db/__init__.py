"""Database backends of the server: Django's, with a cheaper connection check (PostgreSQL) and the
writers of one process queued before SQLite's write lock (SQLite). ``vantage6.settings`` selects them.

What the services ask of a backend beyond Django's own, by what it means: its features (``Features``,
Django's ``DatabaseFeatures`` style) and the SQL that differs between backends (``Operations``), given
typed by ``features`` and ``operations``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

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


def features(connection: BaseDatabaseWrapper) -> Features:
    """The features of ``connection``'s backend (the settings select one of ours)."""
    return cast(Features, connection.features)


def operations(connection: BaseDatabaseWrapper) -> Operations:
    """The operations of ``connection``'s backend (the settings select one of ours)."""
    return cast(Operations, connection.ops)
