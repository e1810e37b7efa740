"""Whether this process met a database outage it has not seen the end of yet.

Any part of the process that finds the database unavailable says so (``failed``: a request answered
503, a socket handshake or connect refused, a housekeeping round skipped); the first connection made
after that, or the first housekeeping round that reaches the database, ends the outage (``reached``),
and ``database_recovered`` is sent once (the socket server tells its nodes ``sync``: a node told of a
task while the database was away could not fetch it). So the end of an outage is noticed whatever
noticed its start.
"""

from __future__ import annotations

import threading

from django.db.backends.signals import connection_created
from django.dispatch import Signal

# Sent, from the thread that saw it, at the end of each outage of this process.
database_recovered = Signal()

_lock = threading.Lock()
_down = False


def failed() -> None:
    """The database could not serve a call of this process (from any thread)."""
    global _down
    _down = True


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
