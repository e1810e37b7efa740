"""Django's PostgreSQL backend with fewer round trips to the server.

The connection check: with ``CONN_HEALTH_CHECKS``, Django checks a kept connection before its first use
in each request with ``SELECT 1``: a round trip on every request. Between requests an idle connection
receives nothing unless the server ended it (a terminated backend, a restart, a closed socket send an
error message or the end of the stream), so a socket with nothing to read, on a connection psycopg2
holds as open and idle, is usable. Anything else - data pending, a transaction left open - is checked
with the query.

Transactions: psycopg2 sends ``BEGIN`` on its own before a transaction's first statement, and
``COMMIT`` apart. Here psycopg2 stays in autocommit and the backend begins Django's transactions
itself, with ``BEGIN`` in front of the first statement, in the same query string; statements given to
``defer`` (the audit record of a write) go the same way with the transaction's next statement, or
with its ``COMMIT``. A query string of several statements is one round trip (psycopg2 interpolates
the parameters and sends it whole), and each statement in it runs as it would alone.
"""

from __future__ import annotations

import select
from collections.abc import Mapping, Sequence
from itertools import chain

import psycopg2.extensions
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from django.db.backends.utils import debug_transaction
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

Statement = tuple[str, Sequence | None]


class DatabaseWrapper(PostgresDatabaseWrapper):
    def get_new_connection(self, conn_params: dict) -> Connection:
        connection = super().get_new_connection(
            {**conn_params, "connection_factory": Connection, "cursor_factory": Cursor}
        )
        if "isolation_level" in self.settings_dict["OPTIONS"]:
            level = self.isolation_level  # type: ignore[attr-defined]  # set by Django's get_new_connection
            connection.begin = f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}"
        return connection

    def _set_autocommit(self, autocommit: bool) -> None:
        self.connection.in_transaction = not autocommit

    def defer(self, sql: str, params: Sequence) -> None:
        """Send ``sql`` with the transaction's next statement or with its commit (at once outside a
        transaction). It gives nothing back; an error of it is raised by the statement it goes with.
        The query log shows it in the query string it was sent in."""
        if self.get_autocommit():
            with self.cursor() as cursor:
                cursor.execute(sql, params)
        else:
            self.connection.deferred.append((sql, params))

    def _commit(self) -> None:
        if self.connection is not None:
            sql = "; ".join([*(sql for sql, _ in self.connection.deferred), "COMMIT"])
            with debug_transaction(self, sql), self.wrap_database_errors:
                self.connection.commit()

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.get_transaction_status() == TRANSACTION_STATUS_IDLE and not _readable(connection):
            return True
        return super().is_usable()


class Connection(psycopg2.extensions.connection):
    """A psycopg2 connection in autocommit, whose transactions begin with their first statement."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        psycopg2.extensions.connection.autocommit.__set__(self, True)
        self.in_transaction = False  # what Django asked for: autocommit off
        self.begin = "BEGIN"
        self.deferred: list[Statement] = []

    def leading(self) -> list[Statement]:
        """What goes before the next statement (and is no longer pending): ``BEGIN`` if the transaction
        has not begun yet, the deferred statements."""
        if not self.in_transaction:
            return []
        leading: list[Statement] = []
        if self.get_transaction_status() == TRANSACTION_STATUS_IDLE:
            leading.append((self.begin, None))
        leading += self.deferred
        self.deferred = []
        return leading

    def commit(self) -> None:
        ending: list[Statement] = self.deferred
        self.deferred = []
        if self.get_transaction_status() != TRANSACTION_STATUS_IDLE:
            ending = [*ending, ("COMMIT", None)]
        if ending:  # a transaction of deferred statements alone is their one query string
            with self.cursor() as cursor:
                cursor.send(*_joined(ending))

    def rollback(self) -> None:
        self.deferred = []
        if self.get_transaction_status() != TRANSACTION_STATUS_IDLE:
            with self.cursor() as cursor:
                cursor.send("ROLLBACK", None)


class Cursor(psycopg2.extensions.cursor):
    """Sends what is pending on its connection (``Connection.leading``) with its statement."""

    connection: Connection

    def execute(self, query: str, vars: Sequence | Mapping | None = None) -> None:
        leading = self.connection.leading()
        if not leading:
            return self.send(query, vars)
        if self.name is None and isinstance(query, str) and not isinstance(vars, Mapping):
            return self.send(*_joined([*leading, (query, vars)]))
        self._send_apart(leading)  # a named cursor's DECLARE or named parameters: not joined
        return self.send(query, vars)

    def executemany(self, query: str, vars_list: Sequence) -> None:
        leading = self.connection.leading()
        if leading:
            self._send_apart(leading)
        return super().executemany(query, vars_list)

    def _send_apart(self, statements: list[Statement]) -> None:
        with self.connection.cursor() as cursor:
            cursor.send(*_joined(statements))

    def send(self, query: str, vars: Sequence | Mapping | None) -> None:
        """One query string to the server: one round trip."""
        return super().execute(query, vars)


def _joined(statements: list[Statement]) -> Statement:
    """Statements as one query string and its parameters."""
    if len(statements) == 1:
        return statements[0]
    if all(params is None for _, params in statements):
        return "; ".join(sql for sql, _ in statements), None
    # A statement without parameters is sent as written; among interpolated ones, its % must be doubled.
    sql = "; ".join(sql if params is not None else sql.replace("%", "%%") for sql, params in statements)
    return sql, list(chain.from_iterable(params for _, params in statements if params is not None))


def _readable(connection: psycopg2.extensions.connection) -> bool:
    """Whether the connection's socket has something to read (or was closed), without waiting."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
