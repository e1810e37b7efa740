"""Django's PostgreSQL backend whose connection check needs no round trip to the server.

With ``CONN_HEALTH_CHECKS``, Django checks a kept connection before its first use in each request with
``SELECT 1``: a round trip on every request. Between requests an idle connection receives nothing
unless the server ended it (a terminated backend, a restart, a closed socket send an error message or
the end of the stream), so a socket with nothing to read, on a connection psycopg2 holds as open and
idle, is usable. Anything else - data pending, a transaction left open - is checked with the query.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from psycopg2.extensions import TRANSACTION_STATUS_IDLE


class DatabaseWrapper(PostgresDatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.get_transaction_status() == TRANSACTION_STATUS_IDLE and not _readable(connection):
            return True
        return super().is_usable()


def _readable(connection) -> bool:
    """Whether the connection's socket has something to read (or was closed), without waiting."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
