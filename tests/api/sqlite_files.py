"""A database alias on an SQLite file of its own, with one table ``entry (writer TEXT)``, for the tests
of how writers of one process share (or wait for) SQLite's write lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper


@contextmanager
def sqlite_alias(alias: str, path: Path, options: dict, django_db_blocker) -> Iterator[BaseDatabaseWrapper]:
    """``alias`` on the SQLite file ``path`` (``vantage6.db.sqlite3``, ``options`` as the settings'), for
    as long as the block runs."""
    database = {"ENGINE": "vantage6.db.sqlite3", "NAME": str(path), "OPTIONS": options}
    configured = connections.configure_settings({"default": settings.DATABASES["default"], alias: database})
    connections.settings[alias] = configured[alias]
    with django_db_blocker.unblock():
        with connections[alias].cursor() as cursor:
            cursor.execute("CREATE TABLE entry (writer TEXT)")
        yield connections[alias]
        connections[alias].close()
    del connections[alias]
    del connections.settings[alias]
