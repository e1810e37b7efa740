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
with its ``COMMIT``; those given to ``lead`` (a row lock) with the next statement, outside a
transaction too (the query string is then one transaction of its own). A query string of several
statements is one round trip (psycopg2 interpolates the parameters and sends it whole), and each
statement in it runs as it would alone.

Prepared statements: the statements compiled once and run on (nearly) every request (the caller's
lookup, a run update's read and lock; ``prepare``) are prepared on the server once per connection, in
the query string of their first use (``PREPARE`` in front of its ``EXECUTE``: no round trip of its
own), and run by name afterwards: the server no longer parses and plans them each time (0.3 to 1 ms of
its time for the caller's lookup, on the path of every request). A prepared statement lives as long as
its connection (a rollback keeps it); this needs a direct connection to PostgreSQL, or a pooler in
session mode.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import select
import socket
import time
from collections.abc import Mapping, Sequence
from itertools import chain

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from django.conf import settings
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from django.db.backends.postgresql.features import DatabaseFeatures as PostgresDatabaseFeatures
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresDatabaseOperations
from django.db.backends.postgresql.schema import DatabaseSchemaEditor as PostgresDatabaseSchemaEditor
from django.db.backends.utils import debug_transaction
from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE, TRANSACTION_STATUS_IDLE

from vantage6.db import Features, LoopReader, Operations

Statement = tuple[str, Sequence | None]


# The SQL of the statements worth a prepared statement (``DatabaseWrapper.prepare``): compiled once per
# process, so a bounded set.
_preparable: set[str] = set()


class DatabaseFeatures(PostgresDatabaseFeatures, Features):
    supports_data_modifying_with = True


class DatabaseOperations(PostgresDatabaseOperations, Operations):
    def json_rows_sql(
        self, table: str, alias: str, columns: Sequence[str], where: str, order_by: str | None = None
    ) -> str:
        row = ", ".join(f"{alias}.{self.quote_name(column)}" for column in columns)
        order = f" ORDER BY {alias}.{self.quote_name(order_by)}" if order_by else ""
        aggregate = f"CAST(json_agg(json_build_array({row}){order}) AS text)"
        return f"SELECT {aggregate} FROM {self.quote_name(table)} {alias} WHERE {where}"

    def transaction_lock_sql(self) -> str:
        return "SELECT pg_advisory_xact_lock(%s, %s)"

    def unbounded_transaction_sql(self) -> str:
        return "SET LOCAL statement_timeout = 0"


class DatabaseSchemaEditor(PostgresDatabaseSchemaEditor):
    """Schema changes (migrations) are not bound by ``STATEMENT_TIMEOUT_SECONDS``: an index built over a
    large table may take longer, and no client waits for it."""

    def __enter__(self) -> DatabaseSchemaEditor:
        with self.connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
        return super().__enter__()


class DatabaseWrapper(PostgresDatabaseWrapper):
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations
    SchemaEditorClass = DatabaseSchemaEditor

    def get_connection_params(self) -> dict:
        """Django's, with the session settings of every connection in libpq's ``options`` (no round trip):
        ``STATEMENT_TIMEOUT_SECONDS``, and no JIT compilation, which the planner chose for the
        statements of large lists and which cost more than it saved (0.1 s of a 0.7 s page)."""
        params = super().get_connection_params()
        timeout_ms = settings.STATEMENT_TIMEOUT_SECONDS * 1000
        session = f"-c statement_timeout={timeout_ms} -c jit=off"
        params["options"] = f"{params['options']} {session}" if params.get("options") else session
        return params

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

    def lead(self, sql: str, params: Sequence) -> None:
        """Send ``sql`` in front of the next statement, which must follow, in its query string: in a
        transaction as ``defer``; outside one the two run as one transaction (PostgreSQL's implicit
        transaction of a query string), so that the row locks ``sql`` takes hold while the next
        statement runs. It gives nothing back."""
        self.ensure_connection()
        self.connection.deferred.append((sql, params))

    def make_loop_reader(self) -> LoopReader:
        return AsyncReader(self.get_connection_params())

    def prepare(self, sql: str) -> None:
        """Run ``sql`` (with its parameters, at least one) as a prepared statement on every connection
        from now on: for SQL compiled once and run on every request."""
        _preparable.add(sql)

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


class AsyncReader(LoopReader):
    """A psycopg2 connection in asynchronous mode, driven by the loop: the query is sent, and the loop
    waits for its socket as for any other. Each query is a prepared statement of the connection."""

    RETRY_SECONDS = 5.0

    def __init__(self, params: dict) -> None:
        self._params = params
        self._connection: psycopg2.extensions.connection | None = None
        self._watched: tuple[asyncio.AbstractEventLoop, int] | None = None  # its loop and socket, connected
        self._waiter: asyncio.Future | None = None  # of the read waiting for the server's answer
        self._busy = False
        self._retry_at = 0.0
        self._prepared: dict[str, str] = {}  # SQL -> the name of its prepared statement
        self._prefix = ""  # of the names prepared on the connection

    async def rows(self, sql: str, params: Sequence) -> list[tuple] | None:
        if self._busy or time.monotonic() < self._retry_at:
            return None
        self._busy = True
        try:
            if self._connection is None:
                connection = psycopg2.connect(**await self._addressed(), async_=True)
                self._connection = connection
                # New names with each connection, as a ``Connection``'s: a pooler may hand back a server
                # session that still has the names prepared on an earlier one.
                self._prefix = f"v6_{secrets.token_hex(4)}_"
                await self._ready(connection)
                self._watch(connection)
            name = self._prepared.get(sql) or f"{self._prefix}{len(self._prepared) + 1}"
            cursor = self._connection.cursor()
            cursor.execute(_executed(name, sql, params, sql not in self._prepared), params)
            await self._ready(self._connection)
            self._prepared[sql] = name
            return cursor.fetchall()
        except asyncio.CancelledError:
            self._close()  # its query may still be under way: the next read connects afresh
            raise
        except (psycopg2.Error, OSError, TimeoutError):
            # This read and those of the next RETRY_SECONDS go to the database thread; then the reader
            # connects again (not on every event while the database refuses: each attempt costs).
            self._close()
            self._retry_at = time.monotonic() + self.RETRY_SECONDS
            return None
        finally:
            self._busy = False

    async def _addressed(self) -> dict:
        """The connection parameters, with the addresses of a host given by name looked up on a thread
        (``hostaddr``): libpq looks a name up on the thread that connects, even asynchronously, and
        the loop would wait as long as the DNS does. Its name stays the host TLS verifies."""
        host = self._params.get("host") or ""
        if not host or host.startswith("/") or "," in host or self._params.get("hostaddr"):
            return self._params  # a socket directory, several hosts, or addresses given
        try:
            ipaddress.ip_address(host)
            return self._params
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        found = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self.TIMEOUT)
        addresses = list(dict.fromkeys(str(address[4][0]) for address in found))
        # libpq tries each address in turn, as it does those of a name it looks up itself.
        return {**self._params, "host": ",".join([host] * len(addresses)), "hostaddr": ",".join(addresses)}

    async def _ready(self, connection: psycopg2.extensions.connection) -> None:
        """Wait until the connection has done its work (connected, or the query's result read)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.TIMEOUT
        while (state := connection.poll()) != POLL_OK:
            self._waiter = waiter = loop.create_future()
            fd = connection.fileno()
            watched = state == POLL_READ and self._watched is not None  # ``_readable`` wakes it
            if state == POLL_READ:
                if not watched:
                    loop.add_reader(fd, _wake, waiter)
            elif state == POLL_WRITE:
                loop.add_writer(fd, _wake, waiter)
            else:
                raise OSError(f"unexpected poll state {state}")
            timer = loop.call_at(deadline, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
                if not watched:
                    (loop.remove_reader if state == POLL_READ else loop.remove_writer)(fd)

    def _watch(self, connection: psycopg2.extensions.connection) -> None:
        """Watch the connected socket for as long as the connection lives: a read waits for its answer
        without registering the socket with the loop and taking it off again (two system calls each)."""
        loop = asyncio.get_running_loop()
        self._watched = loop, connection.fileno()
        loop.add_reader(connection.fileno(), self._readable)

    def _readable(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)
            return
        # Nothing asked: a notice, or the server ended the connection (its error, then the end of the
        # stream). Read it, so that the loop is not woken for it again; an ended connection is closed.
        try:
            if self._connection is not None:
                self._connection.poll()
        except (psycopg2.Error, OSError):
            self._close()

    def _close(self) -> None:
        if self._watched is not None:
            loop, fd = self._watched
            self._watched = None
            if not loop.is_closed():
                loop.remove_reader(fd)  # before the socket is closed: its number may be reused
        if self._connection is not None:
            self._connection.close()
            self._connection = None
            self._prepared.clear()


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the database did not answer in time"))


class Connection(psycopg2.extensions.connection):
    """A psycopg2 connection in autocommit, whose transactions begin with their first statement."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        psycopg2.extensions.connection.autocommit.__set__(self, True)
        self.in_transaction = False  # what Django asked for: autocommit off
        self.begin = "BEGIN"
        self.deferred: list[Statement] = []
        # SQL -> the name of its prepared statement on this connection; those in ``preparing`` were
        # sent (with their first use) but not yet known to exist. A name is never used twice: a PREPARE
        # sent with a query string that failed may or may not have run. Names start with a prefix of
        # this connection's own: a pooler's server session may still hold an earlier client's.
        self.prepared: dict[str, str] = {}
        self.preparing: dict[str, str] = {}
        self.prefix = f"v6_{secrets.token_hex(4)}_"
        self.names = 0

    def leading(self) -> list[Statement]:
        """What goes before the next statement (and is no longer pending): ``BEGIN`` if the transaction
        has not begun yet, the deferred statements (outside a transaction: those of ``lead``)."""
        leading: list[Statement] = []
        if self.in_transaction and self.get_transaction_status() == TRANSACTION_STATUS_IDLE:
            leading.append((self.begin, None))
        leading += self.deferred
        self.deferred = []
        return leading

    def bound(self, statement: Statement) -> Statement:
        """The statement as sent: a preparable one as the ``EXECUTE`` of its prepared statement, with
        its ``PREPARE`` in front the first time on this connection."""
        sql, params = statement
        if sql not in _preparable or not params:
            return statement
        name = self.prepared.get(sql) or self.preparing.get(sql)
        prepare = name is None
        if name is None:
            self.names += 1
            name = self.preparing[sql] = f"{self.prefix}{self.names}"
        return _executed(name, sql, params, prepare), params

    def sent(self, error: BaseException | None) -> None:
        """After a query string: its PREPAREs ran if it succeeded (else they may not have). A prepared
        plan keeps its result's row type, which a change of a column's type (an ``ALTER TABLE`` while
        the server runs) makes fail on every run ("cached plan must not change result type", feature
        not supported): then each statement is prepared again, under a new name, with its next use."""
        if error is None:
            self.prepared.update(self.preparing)
        elif isinstance(error, psycopg2.errors.FeatureNotSupported):
            self.prepared.clear()
        self.preparing.clear()

    def commit(self) -> None:
        ending: list[Statement] = self.deferred
        self.deferred = []
        if self.get_transaction_status() != TRANSACTION_STATUS_IDLE:
            ending = [*ending, ("COMMIT", None)]
        if ending:  # a transaction of deferred statements alone is their one query string
            with self.cursor() as cursor:
                cursor.send_bound(ending)

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
        if self.name is None and isinstance(query, str) and not isinstance(vars, Mapping):
            statements = [*leading, (query, vars)]
            alone = self.connection.get_transaction_status() == TRANSACTION_STATUS_IDLE
            by_name = any(sql in self.connection.prepared for sql, _ in statements)
            try:
                return self.send_bound(statements)
            except psycopg2.errors.FeatureNotSupported:
                if not (alone and by_name):
                    raise
                # Nothing ran before this query string in its transaction: rolled back, it is sent again
                # with its statements prepared again (``Connection.sent``), and answers as it would have.
                self.connection.rollback()
                return self.send_bound(statements)
        if leading:
            self._send_apart(leading)  # a named cursor's DECLARE or named parameters: not joined
        return self.send(query, vars)

    def executemany(self, query: str, vars_list: Sequence) -> None:
        leading = self.connection.leading()
        if leading:
            self._send_apart(leading)
        return super().executemany(query, vars_list)

    def _send_apart(self, statements: list[Statement]) -> None:
        with self.connection.cursor() as cursor:
            cursor.send_bound(statements)

    def send_bound(self, statements: list[Statement]) -> None:
        """``statements`` as one query string, the preparable ones as their prepared statements."""
        self.send(*_joined([self.connection.bound(statement) for statement in statements]))

    def send(self, query: str, vars: Sequence | Mapping | None) -> None:
        """One query string to the server: one round trip."""
        try:
            super().execute(query, vars)
        except BaseException as error:
            self.connection.sent(error)
            raise
        self.connection.sent(None)


def _joined(statements: list[Statement]) -> Statement:
    """Statements as one query string and its parameters."""
    if len(statements) == 1:
        return statements[0]
    if all(params is None for _, params in statements):
        return "; ".join(sql for sql, _ in statements), None
    # A statement without parameters is sent as written; among interpolated ones, its % must be doubled.
    sql = "; ".join(sql if params is not None else sql.replace("%", "%%") for sql, params in statements)
    return sql, list(chain.from_iterable(params for _, params in statements if params is not None))


def _executed(name: str, sql: str, params: Sequence, prepare: bool) -> str:
    """The ``EXECUTE`` of ``sql`` as prepared statement ``name``, with its ``PREPARE`` in front if
    ``prepare``."""
    execute = f"EXECUTE {name}({', '.join(['%s'] * len(params))})"
    if not prepare:
        return execute
    # Integers as bigint, as the literals psycopg2 writes in their place are typed: a key beyond an
    # integer column's range finds no row instead of failing. Other parameters take the type their
    # place in the statement gives them.
    types = ", ".join("bigint" if type(value) is int else "unknown" for value in params)
    return f"PREPARE {name} ({types}) AS {_numbered(sql)}; {execute}"


def _numbered(sql: str) -> str:
    """Django's SQL with ``%s`` parameters as the ``$1``, ``$2``, ... of a prepared statement (``%%``
    stays: the query string it goes in is interpolated)."""
    numbers = iter(range(1, sql.count("%s") + 1))
    return re.sub(r"%[s%]", lambda match: "%%" if match[0] == "%%" else f"${next(numbers)}", sql)


def _readable(connection: psycopg2.extensions.connection) -> bool:
    """Whether the connection's socket has something to read (or was closed), without waiting."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
