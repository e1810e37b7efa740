"""Django's SQLite backend with the write transactions of one process queued on a lock of its own.

A transaction takes SQLite's write lock as it begins (``BEGIN IMMEDIATE``, see the settings). A thread
that finds it taken waits in SQLite's busy handler, which sleeps 1 to 100 ms between attempts: with
several request threads writing, most of a small write's time went to those sleeps and to the waiting
threads waking up for the GIL. The threads of one process now wait for each other on a lock taken
before ``BEGIN`` and released at commit or rollback, so that the next one starts as soon as the previous
one ends; other processes still meet at SQLite's lock. Durability is SQLite's, unchanged.
"""

from __future__ import annotations

import threading

from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper

# One lock per database file, shared by the connections of every thread of the process.
_WRITE_LOCKS: dict[str, threading.Lock] = {}


class DatabaseWrapper(SQLiteDatabaseWrapper):
    _queued: threading.Lock | None = None  # the write lock this connection holds, if any

    def _start_transaction_under_autocommit(self) -> None:
        lock = _WRITE_LOCKS.setdefault(str(self.settings_dict["NAME"]), threading.Lock())
        # Bounded as SQLite's own wait (``timeout``): a writer that waits for another thread's writer
        # (never on purpose) ends with "database is locked" as it did before, instead of hanging.
        if lock.acquire(timeout=self.settings_dict["OPTIONS"].get("timeout", 5)):
            self._queued = lock
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # not in the stubs
        except BaseException:
            self._leave_queue()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _leave_queue(self) -> None:
        if self._queued is not None:
            self._queued.release()
            self._queued = None
