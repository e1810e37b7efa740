"""SQLite's group commit (``vantage6.db.sqlite3``) under faults: a writer of a batch that fails fails
alone, and every writer that is answered is stored.

A server process on an SQLite file commits the writers that queue behind each other together. Here the
test holds the file's writer lock (``<database>-writer``), as another process writing would, so that the
requests sent meanwhile queue in the server and run, once it is released, as one batch.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
import requests
from django.db import connections, transaction

from accounts.models import AuditEntry, User
from collaborations.models import Organization
from tasks.models import Task
from tests.api.sqlite_files import sqlite_alias
from tests.realtime.helpers import make_user, make_world, token
from tests.realtime.live import LIVE, ROOT, Daphne, LiveDatabase
from vantage6.db.sqlite3 import base
from vantage6.db.sqlite3.base import writer_queue

pytestmark = pytest.mark.live

# The server, with the write queue's thread lock announcing each writer that waits for its turn (counted
# as waiting by then) in the file QUEUE_LOG names, and without its periodic housekeeping.
ANNOUNCING_SERVER = """
import os, threading
import django.db.models
from vantage6 import serve
from vantage6.db.sqlite3 import base

class Announcing:
    def __init__(self):
        self._lock = threading.Lock()

    def acquire(self, blocking=True, timeout=-1):
        if timeout != -1:
            with open(os.environ["QUEUE_LOG"], "a") as log:
                log.write("queued\\n")
        return self._lock.acquire(blocking, timeout)

    def release(self):
        self._lock.release()

made = base.WriterQueue.__init__

def __init__(self, *args):
    made(self, *args)
    self._threads = Announcing()

base.WriterQueue.__init__ = __init__

# No periodic writes of its own while the test counts the writers that queue.
from vantage6.socketio import server
made_server = server.Server.__init__

def quiet(self, *args, **kwargs):
    made_server(self, *args, **{**kwargs, "housekeeping": None})

server.Server.__init__ = quiet
serve.main()
"""


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.01)


@pytest.fixture
def live_file(tmp_path, django_db_blocker) -> Iterator[LiveDatabase]:
    with django_db_blocker.unblock():
        database = LiveDatabase(tmp_path)
        try:
            yield database
        finally:
            database.drop()


class QueuedServer:
    """A server on ``database`` whose writers the test can hold up and release as one batch."""

    def __init__(self, database: LiveDatabase) -> None:
        self.queue_log = database.folder / "queue.log"
        self.queue_log.touch()
        # Its own writers (the process's beat, the sweep of nodes) once, as it starts.
        quiet = {"V6_SOCKET_PING_INTERVAL": "3600", "V6_NODE_HEARTBEAT_TIMEOUT": "72000"}
        self.daphne = Daphne(
            database.process_env(QUEUE_LOG=str(self.queue_log), **quiet),
            database.folder,
            command=[sys.executable, "-c", ANNOUNCING_SERVER],
        )
        self.writer_file = database.folder / "live.sqlite3-writer"
        self.pool = ThreadPoolExecutor(8)
        self._lock: int | None = None
        self._before = 0

    def hold_writers(self) -> None:
        """Take the database's writer lock: the server's writers wait for it (once the beat of its
        process, begun by its first request, is written)."""
        assert requests.get(f"{self.daphne.url}/api/version", timeout=10).status_code == 200
        wait_for(lambda: self.queued() > 0, "the server's first beat")
        self._lock = os.open(self.writer_file, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._before = len(self.queue_log.read_text().splitlines())

    def release_writers(self) -> None:
        assert self._lock is not None
        os.close(self._lock)
        self._lock = None

    def queued(self) -> int:
        """Writers of the server that waited for their turn, since the test took the lock."""
        return len(self.queue_log.read_text().splitlines()) - self._before

    def head_waits_for_the_file(self) -> bool:
        """A writer of the server is first in its queue and waits for the file's lock (the kernel lists
        a blocked ``flock`` as ``->``)."""
        found = os.stat(self.writer_file)
        inode = f" {os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino} "
        locks = Path("/proc/locks").read_text().splitlines()
        return any("-> FLOCK" in line and inode in line for line in locks)

    def send(self, call: Callable[[str], requests.Response], until: Callable[[], bool]) -> Future:
        """``call`` on a thread; returns once ``until()`` holds (the request waits in the queue)."""
        answer = self.pool.submit(call, self.daphne.url)
        wait_for(lambda: until() or answer.done(), "the request to queue")
        assert not answer.done(), answer.result().text
        return answer

    def stop(self) -> None:
        if self._lock is not None:
            self.release_writers()
        self.pool.shutdown()
        self.daphne.show_log()
        self.daphne.stop()


@pytest.fixture
def queued_server(live_file) -> Iterator[QueuedServer]:
    server = QueuedServer(live_file)
    yield server
    server.stop()


def bearer(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


def test_a_writer_whose_row_points_at_a_row_deleted_in_its_batch_fails_alone(queued_server):
    """Root deletes a researcher as the researcher creates a task: the task's row points at the deleted
    user. The two requests, and two more of root, queue and run as one batch."""
    world = make_world()
    root = make_user(world.org_a, roles=("Root",))
    researcher = make_user(world.org_a, roles=("Researcher",))
    task_body = {
        "name": "t",
        "image": "some/image",
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": world.org_a.pk, "input": "aW5wdXQ="}],
        "databases": [{"label": "default"}],
    }
    names = [f"org-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    as_root, as_researcher = bearer(root), bearer(researcher)
    server = queued_server
    server.hold_writers()

    # The deletion first in the queue, then the others behind it.
    deleted = server.send(
        lambda url: requests.delete(f"{url}/api/user/{researcher.pk}", headers=as_root, timeout=60),
        lambda: server.head_waits_for_the_file() and server.queued() == 1,
    )
    created = server.send(
        lambda url: requests.post(f"{url}/api/task", json=task_body, headers=as_researcher, timeout=60),
        lambda: server.queued() == 2,
    )
    organizations = [
        server.send(
            lambda url, name=name: requests.post(
                f"{url}/api/organization", json={"name": name}, headers=as_root, timeout=60
            ),
            lambda count=count: server.queued() == count,
        )
        for count, name in enumerate(names, start=3)
    ]
    server.release_writers()

    assert deleted.result().status_code == 200, deleted.result().text
    assert [answer.result().status_code for answer in organizations] == [201, 201]
    assert sorted(answer.result().json()["name"] for answer in organizations) == sorted(names)
    # The task's writer fails alone, as when it committed on its own: a conflict, nothing written.
    assert created.result().status_code == 400, created.result().text
    assert created.result().json() == {
        "msg": "The request conflicts with existing data (a name or link already exists)."
    }
    assert not User.objects.using(LIVE).filter(pk=researcher.pk).exists()
    assert Organization.objects.using(LIVE).filter(name__in=names).count() == 2
    assert not Task.objects.using(LIVE).exists()
    logged = AuditEntry.objects.using(LIVE).filter(actor_id__in=[root.pk, researcher.pk])
    assert sorted(logged.values_list("action", flat=True)) == [
        "organization.create",
        "organization.create",
        "user.delete",
    ]


# --- at the seam: writers on threads of this process ----------------------------------------------------
WRITERS = "group_commit_writers"


@pytest.fixture
def writers_file(tmp_path, django_db_blocker):
    """A database alias on an SQLite file of one table, configured as the server's database is, with a
    wait for the write lock of one second."""
    options = {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA synchronous=FULL", "timeout": 1}
    with sqlite_alias(WRITERS, tmp_path / "writers.sqlite3", options, django_db_blocker) as database:
        yield database


def committed(database) -> list[str]:
    with closing(sqlite3.connect(database.settings_dict["NAME"])) as other:
        return [name for (name,) in other.execute("SELECT writer FROM entry ORDER BY rowid")]


def insert(name: str, *, began: threading.Event | None = None, until: Callable[[], bool] = bool) -> None:
    """A writer's transaction: its row, then it holds the transaction until ``until()``."""
    with transaction.atomic(using=WRITERS):
        connections[WRITERS].cursor().execute("INSERT INTO entry VALUES (%s)", [name])
        if began is not None:
            began.set()
        wait_for(until, "the next writer to wait for its turn")


def writer(name: str, write: Callable[[], object], errors: list[str]) -> threading.Thread:
    """A thread named ``name`` that runs ``write``, its error reported in ``errors``."""

    def run() -> None:
        try:
            write()
        except Exception as error:  # the test reports it
            errors.append(f"{name}: {error}")
        finally:
            connections[WRITERS].close()

    return threading.Thread(target=run, name=name, daemon=True)


def test_a_writer_outside_the_batch_kept_open_for_it_commits_the_batch_before_it_begins(writers_file):
    """A transaction whose first statement comes from a cursor made before it (Django's feature checks
    do that) runs on its thread's own connection, not in the batch. The batch kept open for it held
    SQLite's write lock: the writer gave up when its wait for that lock ran out, and the batch stayed
    open, its writer unanswered, until some later writer came."""
    queue = writer_queue(writers_file.settings_dict["NAME"], in_memory=False)
    holding, answered = threading.Event(), threading.Event()
    errors: list[str] = []

    def second() -> None:
        cursor = connections[WRITERS].cursor()
        with transaction.atomic(using=WRITERS):
            cursor.execute("INSERT INTO entry VALUES ('second')")

    writers = [
        writer(
            "first",
            lambda: (insert("first", began=holding, until=lambda: queue._queued == 1), answered.set()),
            errors,
        ),
        writer("second", second, errors),
    ]
    writers[0].start()
    assert holding.wait(5)
    writers[1].start()
    for thread in writers:
        thread.join(5)

    assert answered.is_set(), "the first writer was answered"
    assert errors == []
    assert committed(writers_file) == ["first", "second"]


class GivingUp:
    """The write queue's thread lock, where the writer on the thread named ``quitter`` waits for its
    turn until ``give_up`` is set, then gives up as if its time had run out; ``released`` is called as
    the thread named ``first`` releases it."""

    def __init__(self, lock, released) -> None:
        self.lock = lock
        self.released = released
        self.give_up = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if threading.current_thread().name == "quitter" and timeout != -1:
            assert self.give_up.wait(5)
            return False
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()
        if threading.current_thread().name == "first":
            self.released()


@pytest.mark.parametrize("moment", ["before", "as", "after"])
def test_a_writer_that_gives_up_as_the_batch_is_kept_open_for_it_leaves_it_committed(
    writers_file, monkeypatch, moment
):
    """The first writer keeps the batch (and the file's lock) for the second, which waits for its turn;
    the second's time runs out before the first hands the batch on, as it does (the thread lock released,
    the next writer not looked for yet), or after, while the first waits for the batch's commit. The
    first is answered, its write stored, and no lock is left held."""
    queue = writer_queue(writers_file.settings_dict["NAME"], in_memory=False)
    gave_up = threading.Event()

    def give_up_at(this_moment: str) -> None:
        if moment == this_moment:
            lock.give_up.set()
            assert gave_up.wait(5)

    lock = GivingUp(queue._threads, lambda: give_up_at("as"))
    monkeypatch.setattr(queue, "_threads", lock)
    errors: list[str] = []
    hand_on, outcome = type(queue).hand_on, base.Member.outcome

    def handing_on(self, member) -> None:
        give_up_at("before")
        hand_on(self, member)

    def waiting(self) -> None:
        if moment == "after":
            lock.give_up.set()
        outcome(self)

    monkeypatch.setattr(type(queue), "hand_on", handing_on)
    monkeypatch.setattr(base.Member, "outcome", waiting)

    def quitter() -> None:
        try:
            insert("quitter")
        finally:
            gave_up.set()

    writers = [
        writer("first", lambda: insert("first", until=lambda: queue._queued == 1), errors),
        writer("quitter", quitter, errors),
    ]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(10)

    assert not any(thread.is_alive() for thread in writers)
    assert errors == ["quitter: database is locked"]
    assert committed(writers_file) == ["first"]
    # Neither the thread lock nor the file's is held, no batch is open.
    assert queue._threads.acquire(blocking=False)
    queue._threads.release()
    with open(f"{writers_file.settings_dict['NAME']}-writer", "rb") as file:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert queue.batch is not None and not queue.batch.open


# --- a database made before: its foreign keys become immediate -----------------------------------------
def migrate(database: Path, *target: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("V6_")}
    env.update(V6_DATA_DIR=str(database.parent), V6_DATABASE_URL=f"sqlite:///{database}")
    subprocess.run([sys.executable, "manage.py", "migrate", *target, "-v0"], cwd=ROOT, env=env, check=True)


OPERATOR_DEFAULT = "see DEFERRABLE INITIALLY DEFERRED"


def test_a_database_made_with_deferred_foreign_keys_gets_immediate_ones_and_keeps_its_rows(tmp_path):
    database = tmp_path / "earlier.sqlite3"
    migrate(database, "tasks", "0005")
    deferred = "SELECT count(*) FROM sqlite_master WHERE instr(sql, 'DEFERRABLE INITIALLY DEFERRED')"
    with closing(sqlite3.connect(database, isolation_level=None)) as earlier:
        # The tables as the earlier schema editor made them (Django's: every reference deferred).
        earlier.execute("PRAGMA writable_schema = ON")
        earlier.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?)"
            " WHERE type = 'table' AND instr(sql, 'REFERENCES')",
            [' ("id")', ' ("id") DEFERRABLE INITIALLY DEFERRED'],
        )
        version = earlier.execute("PRAGMA schema_version").fetchone()[0]
        earlier.execute(f"PRAGMA schema_version = {version + 1}")
        earlier.execute("PRAGMA writable_schema = OFF")
        assert earlier.execute(deferred).fetchone()[0] > 0
        earlier.execute(
            "INSERT INTO organization (name, domain, address1, zipcode, country)"
            " VALUES ('kept', '', '', '', '')"
        )
        # An operator's own table with the same words outside a reference.
        earlier.execute(f"CREATE TABLE operator_note (body TEXT DEFAULT '{OPERATOR_DEFAULT}')")

    migrate(database)

    with closing(sqlite3.connect(database, isolation_level=None)) as now:
        assert now.execute(deferred).fetchone()[0] == 1  # the operator's table alone
        now.execute("INSERT INTO operator_note DEFAULT VALUES")
        assert now.execute("SELECT body FROM operator_note").fetchall() == [(OPERATOR_DEFAULT,)]
        assert now.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert now.execute("SELECT name FROM organization").fetchall() == [("kept",)]
        now.execute("PRAGMA foreign_keys = ON")
        now.execute("BEGIN")
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):  # by the statement, not at COMMIT
            now.execute(
                "INSERT INTO role (name, description, is_default_role, organization_id)"
                " VALUES ('r', '', 0, 1000)"
            )
        now.execute("ROLLBACK")
