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
Programs that do not take the lock still meet at SQLite's own lock, with its busy handler.

The writers a process runs in a row that way are committed together (``Batch``): their transactions run
in savepoints of one connection of the process, and one ``COMMIT`` - one fsync of the log, most of the
time a write holds the lock - ends all of them. Each writer's commit returns only once that ``COMMIT`` is
done, so nothing is answered before it is durable (``synchronous=FULL`` unchanged); a failing writer rolls
back to its savepoint alone, also one whose row points at no row (foreign keys are checked by each
statement, ``DatabaseSchemaEditor``); a failed ``COMMIT`` (an I/O error, a full disk) fails every writer
of the batch.

A transaction begins (queues, then ``BEGIN IMMEDIATE``) with its first statement, not as its ``atomic``
block is entered: what a request computes before its first query of the transaction holds no other
writer up. Its statements all run inside it, as before.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX, SQLiteCursorWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper
from django.db.backends.sqlite3.features import DatabaseFeatures as SQLiteDatabaseFeatures
from django.db.backends.sqlite3.operations import DatabaseOperations as SQLiteDatabaseOperations
from django.db.backends.sqlite3.schema import DatabaseSchemaEditor as SQLiteSchemaEditor

from vantage6.db import Features, LoopReader, Operations

# Writers of one process in a row while another of its writers waits, before the file's lock goes to
# the other processes: fewer hand-overs between processes (each wakes a thread there), a bounded wait.
TURNS = 4
# The savepoint of each transaction in a batch (one at a time).
SAVEPOINT = "vantage6_writer"


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
        # An in-memory database cannot be shared by another connection of the process: no batches.
        self.batch = None if in_memory else Batch()

    def enter(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for this process's turn, then for the file's."""
        deadline = time.monotonic() + timeout
        with self._count:
            self._queued += 1
        turn = self._threads.acquire(timeout=timeout)
        with self._count:
            self._queued -= 1
        if not turn:
            # The previous writer may have kept the file's lock, and its batch, for this one: commit
            # the batch and release the lock if no one else of this process took them over.
            if self._threads.acquire(blocking=False):
                self.end_batch()
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

    def keeps_batch(self) -> bool:
        """Whether the writer leaving now should leave its batch open for the next one, already
        waiting: as long as this process keeps the file's lock for its own writers."""
        with self._count:
            return self._queued > 0 and self._turns < TURNS

    def hand_on(self, member: Member | None) -> None:
        """Leave, keeping the batch open (and the file's lock) for the next writer; ``member`` is
        answered when the batch ends. Should that writer give up meanwhile, the batch is ended here."""
        assert self.batch is not None
        if member is not None:
            self.batch.members.append(member)
        self._threads.release()
        with self._count:
            waiting = self._queued > 0
        if not waiting and self._threads.acquire(blocking=False):
            self.end_batch()
            self.leave()

    def end_batch(self) -> BaseException | None:
        """Commit the open batch, if any (its holder holds the thread lock), and answer its members."""
        batch = self.batch
        if batch is None or not batch.open:
            return None
        try:
            batch.connection.execute("COMMIT")
        except sqlite3.Error as error:  # an I/O error, a full disk
            return batch.close(error)
        return batch.close(None)

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


class Member:
    """A writer whose transaction was released into a batch, waiting for the batch's commit."""

    def __init__(self) -> None:
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def outcome(self) -> None:
        self.ended.wait()
        if self.error is not None:
            raise type(self.error)(*self.error.args)


class Batch:
    """The transactions of this process's writers that follow each other while more wait, committed
    together: one ``COMMIT``, one fsync of the log, for all of them (group commit). Each runs in a
    savepoint of the batch's one connection; a failing one rolls back to its savepoint only. A writer
    whose transaction is done waits for the batch's ``COMMIT`` before it returns from its own commit:
    nothing is answered (nor its events sent, ``on_commit``) before it is durable, and a process that
    dies leaves nothing of an unanswered writer. Only the writer holding the queue's thread lock uses
    the connection."""

    def __init__(self) -> None:
        self._made = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self.open = False  # a transaction is open on the connection
        self.members: list[Member] = []

    @property
    def connection(self) -> sqlite3.Connection:
        assert self._connection is not None
        return self._connection

    @property
    def made(self) -> sqlite3.Connection | None:
        return self._connection

    def connect(self, database: DatabaseWrapper) -> sqlite3.Connection:
        with self._made:
            if self._connection is None:
                connection = database.get_new_connection(database.get_connection_params())
                connection.isolation_level = None  # statements of its own; BEGIN sent as Django does
                self._connection = connection
            return self._connection

    def close(self, error: BaseException | None) -> BaseException | None:
        """End the open transaction (rolled back if ``error``) and answer the members with ``error``."""
        try:
            if error is not None and self.connection.in_transaction:
                self.connection.execute("ROLLBACK")  # a failed COMMIT leaves it open
        finally:
            self.open = False
            members, self.members = self.members, []
            for member in members:
                member.error = error
                member.ended.set()
        return error


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
    # A WITH clause of SQLite only reads. Foreign keys are checked by each statement
    # (``DatabaseSchemaEditor``): a cascading delete sets a nullable reference to null before it
    # deletes the row it points at, and deletes the rows that reference others first.
    can_defer_constraint_checks = False


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

    def execute_sql_flush(self, sql_list: Iterable[str]) -> None:
        # Its DELETEs empty the tables in name order, not in the order of their references: checked
        # at the end, as Django's deferred foreign keys were, and not for a batched writer after it.
        super().execute_sql_flush(
            ["PRAGMA defer_foreign_keys = ON", *sql_list, "PRAGMA defer_foreign_keys = OFF"]
        )

    def transaction_lock_sql(self) -> None:
        return None  # a transaction takes the database's one write lock as it begins (BEGIN IMMEDIATE)


# How Django declares a foreign key on SQLite, checked at COMMIT only: in a batch, the one transaction of
# all its writers, where a writer's dangling row failed every writer of the batch.
DEFERRED = " DEFERRABLE INITIALLY DEFERRED"
# Only where it follows a reference: the same words in a name or a literal default stay as they are.
_DEFERRED_REFERENCE = re.compile(r'(REFERENCES "[^"]+" \("[^"]+"\))' + DEFERRED)


class DatabaseSchemaEditor(SQLiteSchemaEditor):
    """Foreign keys checked by each statement (SQLite's default): a write that leaves a row pointing at
    no row fails as it is made, alone, and its transaction can roll back to its savepoint."""

    sql_create_inline_fk = "REFERENCES %(to_table)s (%(to_column)s)"
    sql_create_column_inline_fk = sql_create_inline_fk


def make_foreign_keys_immediate(schema_editor: SQLiteSchemaEditor) -> None:
    """Turn the deferred foreign keys of the tables made before ``DatabaseSchemaEditor`` into immediate
    ones, by SQLite's documented ``writable_schema`` procedure for changes that keep the stored format
    (https://www.sqlite.org/lang_altertable.html#otheralter: "removing CHECK or FOREIGN KEY ... constraints"):
    the table definitions' text is changed, no row is rewritten. Run in the transaction of a migration,
    whose schema editor has switched foreign keys off."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND instr(sql, %s)", [DEFERRED]
        )
        tables = [(name, _DEFERRED_REFERENCE.sub(r"\1", sql)) for name, sql in cursor.fetchall()]
        if not tables:
            return
        cursor.execute("PRAGMA schema_version")
        (version,) = cursor.fetchone()
        cursor.execute("PRAGMA writable_schema = ON")
        for name, sql in tables:
            cursor.execute(
                "UPDATE sqlite_master SET sql = %s WHERE type = 'table' AND name = %s",
                [sql, name],
            )
        # Connections that read the old definitions read them again.
        cursor.execute(f"PRAGMA schema_version = {int(version) + 1}")
        cursor.execute("PRAGMA writable_schema = OFF")
        cursor.execute("PRAGMA integrity_check")
        problems = [row for (row,) in cursor.fetchall() if row != "ok"]
        if problems:
            raise RuntimeError(f"The database's integrity check failed: {problems[:5]}")


class DatabaseWrapper(SQLiteDatabaseWrapper):
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations
    SchemaEditorClass = DatabaseSchemaEditor
    _queued: WriterQueue | None = None  # the write queue this connection is at the head of, if any
    _begin_pending = False  # a transaction was started and begins with its first statement
    _batch: Batch | None = None  # the batch this connection's transaction runs in
    _member = False  # its savepoint is open in the batch
    _constraints_off = False  # foreign keys switched off on this connection

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
        # The statements of a batched transaction (and only those) run on the batch's connection.
        connection = self.connection if self._batch is None else self._batch.connect(self)
        cursor = connection.cursor(factory=Cursor)
        cursor.database = self
        return cursor

    def _writer_queue(self) -> WriterQueue:
        return writer_queue(str(self.settings_dict["NAME"]), self.is_in_memory_db())

    def disable_constraint_checking(self) -> bool:
        self._constraints_off = True
        return super().disable_constraint_checking()

    def enable_constraint_checking(self) -> None:
        super().enable_constraint_checking()
        self._constraints_off = False

    def _start_transaction_under_autocommit(self) -> None:
        # Entered as ``atomic`` is, before any cursor of the block exists. A transaction of a connection
        # whose foreign keys are off (a schema change, loading fixtures) stays on that connection.
        self._begin_pending = True
        self._batch = None if self._constraints_off else self._writer_queue().batch

    def begin_pending(self, cursor: sqlite3.Cursor) -> None:
        """Before a statement of ``cursor``: begin the transaction started last, if it has not begun yet;
        refuse a statement that would run outside the transaction it belongs to."""
        if self._begin_pending:
            self._begin(cursor.connection)
        batched = self._batch is not None and self._member
        if cursor.connection is not (self.batch_connection() if batched else self.connection):
            raise sqlite3.ProgrammingError("A cursor used outside the transaction it was made for.")

    def batch_connection(self) -> sqlite3.Connection | None:
        return None if self._batch is None else self._batch.connection

    def _begin(self, connection: sqlite3.Connection) -> None:
        self._begin_pending = False
        if self._batch is not None and connection is not self._batch.made:
            # Its first statement is of a cursor made before ``atomic`` was entered (Django's feature
            # checks do that): the transaction runs on the thread's own connection, as without batches.
            self._batch = None
        queue = self._writer_queue()
        # Bounded as SQLite's own wait (``timeout``): a writer that waits longer (another process
        # stopped in a transaction, a long migration) fails with "database is locked" instead of hanging.
        # Without a batch (a database in memory) it goes on to SQLite's own wait, and its error.
        entered = queue.enter(self.settings_dict["OPTIONS"].get("timeout", 5))
        if entered:
            self._queued = queue
        elif self._batch is not None:
            self._batch = None
            raise sqlite3.OperationalError("database is locked")
        batch = self._batch
        try:
            if batch is None:
                if entered:
                    # A batch kept open for this writer holds SQLite's lock, which it would wait for
                    # in vain, leaving the batch's writers unanswered: commit it first.
                    queue.end_batch()
                super()._start_transaction_under_autocommit()  # type: ignore[misc]  # not in the stubs
                return
            if not batch.open:
                if batch.connection.in_transaction:
                    batch.connection.execute("ROLLBACK")  # left by a failure: nothing of it was answered
                mode = getattr(self, "transaction_mode", None) or ""  # not in the stubs
                batch.connection.execute(f"BEGIN {mode}")
                batch.open = True
            batch.connection.execute(f'SAVEPOINT "{SAVEPOINT}"')
            self._member = True
        except BaseException:
            if batch is not None:
                self._batch = None
                queue.end_batch()  # the members' transactions, if any, are intact
            self._leave_queue()
            raise

    def _commit(self) -> None:
        self._begin_pending = False  # a transaction without statements has nothing to commit
        if self._batch is not None:
            with self.wrap_database_errors:
                self._end_member(commit=True)
            return
        try:
            super()._commit()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _rollback(self) -> None:
        self._begin_pending = False
        if self._batch is not None:
            with self.wrap_database_errors:
                self._end_member(commit=False)
            return
        try:
            super()._rollback()  # type: ignore[misc]  # not in the stubs
        finally:
            self._leave_queue()

    def _close(self) -> None:
        self._begin_pending = False
        try:
            if self._batch is not None:
                self._end_member(commit=False)
        finally:
            try:
                super()._close()  # type: ignore[misc]  # not in the stubs
            finally:
                self._leave_queue()

    def _end_member(self, commit: bool) -> None:
        """End this connection's transaction in its batch: release its savepoint (``commit``) or roll
        back to it; then leave the batch open for the next writer if one waits, else commit it. Returns
        once the batch holding this transaction's writes is committed; raises if that commit failed."""
        batch, self._batch = self._batch, None
        if not self._member:
            return  # no statement: nothing of it in the batch
        self._member = False
        queue, self._queued = self._queued, None
        assert batch is not None and queue is not None
        connection = batch.connection
        try:
            if not commit:
                connection.execute(f'ROLLBACK TO "{SAVEPOINT}"')
            connection.execute(f'RELEASE "{SAVEPOINT}"')
        except sqlite3.Error as error:  # the transaction is lost (an I/O error, a full disk)
            batch.close(error)
            queue.leave()
            raise
        if not commit and not batch.members:
            try:
                connection.execute("ROLLBACK")  # nothing is left in it
            finally:
                batch.close(None)
                queue.leave()
            return
        if queue.keeps_batch():
            member = Member() if commit else None
            queue.hand_on(member)
            if member is not None:
                member.outcome()
            return
        failed = queue.end_batch()
        queue.leave()
        if failed is not None and commit:
            raise failed

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
            return self._connection.execute(qmark_query(sql), tuple(params)).fetchall()
        except sqlite3.Error:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            return None


@functools.lru_cache(maxsize=1024)
def qmark_query(query: str) -> str:
    """Django's SQL (``%s`` parameters) as sqlite3 takes it (``?``), as ``SQLiteCursorWrapper`` converts
    it, once per statement text: the conversion, a regular expression's pass over the whole text, cost
    more than many a statement's own work on a small database (a request runs the same few statements)."""
    return FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class Cursor(SQLiteCursorWrapper):
    """Django's cursor, whose statements begin the connection's pending transaction first."""

    database: DatabaseWrapper

    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is None:
            return qmark_query(query)
        return super().convert_query(query, param_names=param_names)

    def execute(self, query: str, params: Any = None) -> Any:
        self.database.begin_pending(self)
        return super().execute(query, params)

    def executemany(self, query: str, param_list: Any) -> Any:
        self.database.begin_pending(self)
        return super().executemany(query, param_list)
