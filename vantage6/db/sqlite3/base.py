"""Django's SQLite backend with the write transactions of every process queued on locks of its own.

A transaction takes SQLite's write lock as it begins (``BEGIN IMMEDIATE``, see the settings). A writer
that finds it taken waits in SQLite's busy handler, which sleeps 1 to 100 ms between attempts: with
several request threads, or several server processes, writing, most of a small write's time went to
those sleeps, and a process whose writer slept lost the lock to the other's next writer again and
again. Writers now queue before ``BEGIN``: the threads of one process on a thread lock, then the
processes on an exclusive ``flock`` of a file beside the database (``<database>-writer``), which the
kernel hands to the next process the moment it is released, and releases when its process ends, however
it ends. Both are released at commit, rollback or close; a process keeps the file's lock for its next
writer if one already waits, up to ``TURNS`` in a row. Waits are bounded by the database ``timeout``.
Programs that do not take the lock still meet at SQLite's own lock, with its busy handler. Durability is
SQLite's, unchanged.

A transaction begins (queues, then ``BEGIN IMMEDIATE``) with its first statement, not as its ``atomic``
block is entered: what a request computes before its first query of the transaction holds no other
writer up. Its statements all run inside it, as before.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX, SQLiteCursorWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper
from django.db.backends.sqlite3.features import DatabaseFeatures as SQLiteDatabaseFeatures
from django.db.backends.sqlite3.operations import DatabaseOperations as SQLiteDatabaseOperations

from vantage6.db import Features, LoopReader, Operations

# Writers of one process in a row while another of its writers waits, before the file's lock goes to
# the other processes: fewer hand-overs between processes (each wakes a thread there), a bounded wait.
TURNS = 4


class WriterQueue:
    """The write queue of one database file: the threads of this process in turn, then the processes.

    ``flock`` cannot wait with a time limit, so a writer that finds the file locked leaves the kernel's
    wait to a thread of the queue (``_wait_for_file``) and waits for it with its time limit; a lock that
    thread gets after its writer gave up is released at once.
    """

    def __init__(self, database: str, in_memory: bool) -> None:
        self._threads = threading.Lock()
        # A database in memory is this process's alone: its threads' queue is all it needs.
        self._file = (
            None
            if in_memory
            else os.open(f"{database}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        )
        self._state = threading.Condition()
        self._wanted = False  # the writer at the head of this process's queue waits for the file
        self._pending = False  # the waiting thread is in flock(), or holds the lock for no one yet
        self._handed = False  # the waiting thread got the lock for the writer that wanted it
        self._waiter: threading.Thread | None = None
        self._count = threading.Lock()
        self._queued = 0  # writers of this process waiting for their turn
        self._turns = 0  # writers of this process in a row since it took the file's lock (0: not held)

    def enter(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for this process's turn, then for the file's."""
        deadline = time.monotonic() + timeout
        with self._count:
            self._queued += 1
        turn = self._threads.acquire(timeout=timeout)
        with self._count:
            self._queued -= 1
        if not turn:
            # The previous writer may have kept the file's lock for this one: release it if no one
            # else of this process took it over.
            if self._threads.acquire(blocking=False):
                self._release(keep_file=False)
            return False
        if self._file is None or self._turns or self._take_file(self._file, deadline):
            self._turns += 1
            return True
        self._threads.release()
        return False

    def leave(self) -> None:
        with self._count:
            keep_file = self._queued > 0 and self._turns < TURNS
        self._release(keep_file)

    def _release(self, keep_file: bool) -> None:
        if self._turns and not keep_file:
            self._turns = 0
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        self._threads.release()

    def _take_file(self, file: int, deadline: float) -> bool:
        with self._state:
            if not self._pending:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass  # another process writes: wait for the kernel to hand the lock over
            self._wanted = True
            if self._waiter is None:
                self._waiter = threading.Thread(
                    target=self._wait_for_file, args=(file,), name="sqlite-writer", daemon=True
                )
                self._waiter.start()
            self._state.notify_all()
            handed = self._state.wait_for(lambda: self._handed, max(0.0, deadline - time.monotonic()))
            self._wanted = self._handed = False
            return handed

    def _wait_for_file(self, file: int) -> None:
        while True:
            with self._state:
                self._state.wait_for(lambda: self._wanted and not self._handed)
                self._pending = True
            fcntl.flock(file, fcntl.LOCK_EX)
            with self._state:
                self._pending = False
                if self._wanted:
                    self._handed = True
                    self._state.notify_all()
                else:  # its writer gave up meanwhile
                    fcntl.flock(file, fcntl.LOCK_UN)


# One queue per database file, shared by the connections of every thread of the process; a child
# process made by fork() opens its own (a lock of an inherited descriptor would be the parent's).
_QUEUES: dict[str, WriterQueue] = {}
_QUEUES_MADE = threading.Lock()
os.register_at_fork(after_in_child=_QUEUES.clear)


def writer_queue(database: str, in_memory: bool) -> WriterQueue:
    with _QUEUES_MADE:
        if database not in _QUEUES:
            _QUEUES[database] = WriterQueue(database, in_memory)
        return _QUEUES[database]


class DatabaseFeatures(SQLiteDatabaseFeatures, Features):
    pass  # a WITH clause of SQLite only reads


class DatabaseOperations(SQLiteDatabaseOperations, Operations):
    def json_rows_sql(
        self, table: str, alias: str, columns: Sequence[str], where: str, order_by: str | None = None
    ) -> str:
        row = ", ".join(f"{alias}.{self.quote_name(column)}" for column in columns)
        rows = f"{self.quote_name(table)} {alias} WHERE {where}"
        if order_by:
            # Its aggregates take no ORDER BY (before SQLite 3.44): they take the rows in the order
            # of the subquery they read.
            rows = f"(SELECT * FROM {rows} ORDER BY {alias}.{self.quote_name(order_by)}) {alias}"
        return f"SELECT json_group_array(json_array({row})) FROM {rows}"

    def transaction_lock_sql(self) -> None:
        return None  # a transaction takes the database's one write lock as it begins (BEGIN IMMEDIATE)


class DatabaseWrapper(SQLiteDatabaseWrapper):
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations
    _queued: WriterQueue | None = None  # the write queue this connection is at the head of, if any
    _begin_pending = False  # a transaction was started and begins with its first statement

    def make_loop_reader(self) -> LoopReader:
        if self.is_in_memory_db():
            return LoopReader()  # another connection would not see this one's database
        return DirectReader(str(self.settings_dict["NAME"]))

    def get_new_connection(self, conn_params: dict) -> Any:
        connection = super().get_new_connection(conn_params)
        # The write-ahead log is kept by the database file: set once, found by later connections. Set
        # again on every connection, it took a lock that SQLite's busy handler does not wait for, and a
        # connection opened while another process wrote failed with "database is locked".
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def create_cursor(self, name: str | None = None) -> Any:
        cursor = self.connection.cursor(factory=Cursor)
        cursor.database = self
        return cursor

    def _start_transaction_under_autocommit(self) -> None:
        self._begin_pending = True

    def begin_pending(self) -> None:
        """Begin the transaction started last, if it has not begun yet (before its first statement)."""
        if not self._begin_pending:
            return
        self._begin_pending = False
        queue = writer_queue(str(self.settings_dict["NAME"]), self.is_in_memory_db())
        # Bounded as SQLite's own wait (``timeout``): a writer that waits longer (another process
        # stopped in a transaction, a long migration) goes on to SQLite's own wait, and its "database is
        # locked", as before, instead of hanging.
        if queue.enter(self.settings_dict["OPTIONS"].get("timeout", 5)):
            self._queued = queue
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # not in the stubs
        except BaseException:
            self._leave_queue()
            raise

    def _commit(self) -> None:
        self._begin_pending = False  # a transaction without statements has nothing to commit
        try:
            super()._commit()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _rollback(self) -> None:
        self._begin_pending = False
        try:
            super()._rollback()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _close(self) -> None:
        self._begin_pending = False
        try:
            super()._close()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _leave_queue(self) -> None:
        if self._queued is not None:
            self._queued.leave()
            self._queued = None


class DirectReader(LoopReader):
    """A connection of its own that reads at once, on the loop's thread: a small read of a local file
    takes less than the hand-over to a thread. It never waits for a lock (``timeout=0``): a read that
    would wait goes to the database thread instead. Readers of the write-ahead log do not wait for
    writers."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._connection: sqlite3.Connection | None = None

    async def rows(self, sql: str, params: Sequence) -> list[tuple] | None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    self._database, timeout=0, isolation_level=None, check_same_thread=False
                )
            query = FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")
            return self._connection.execute(query, tuple(params)).fetchall()
        except sqlite3.Error:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            return None


class Cursor(SQLiteCursorWrapper):
    """Django's cursor, whose statements begin the connection's pending transaction first."""

    database: DatabaseWrapper

    def execute(self, query: str, params: Any = None) -> Any:
        self.database.begin_pending()
        return super().execute(query, params)

    def executemany(self, query: str, param_list: Any) -> Any:
        self.database.begin_pending()
        return super().executemany(query, param_list)
