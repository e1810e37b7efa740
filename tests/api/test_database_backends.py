"""The database backends (vantage6.db).

PostgreSQL: a kept connection is checked before each request's first query without a round trip (its
socket is looked at), and a connection the server ended is replaced by the next request, unnoticed.
SQLite: the write transactions of one process, then of the processes, queue for each other instead of
SQLite's busy handler.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections, transaction

from accounts.audit import audit
from collaborations.models import Organization
from tests.api.sqlite_files import sqlite_alias
from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task, make_user
from tests.realtime.live import sql_apart
from vantage6.db.sqlite3.base import writer_queue


@pytest.fixture
def headers(transactional_db) -> dict[str, str]:  # noqa: ARG001 - needs the database
    return bearer(make_user(make_org("A"), "Researcher"))


def next_request(api, headers: dict[str, str]):
    """A request as the server handles it: Django's request-started work first (``close_old_connections``
    also marks the kept connection for a check before its next query)."""
    close_old_connections()
    return api.get("/api/organization", **headers)


def from_another_connection(sql: str, *args) -> list[tuple]:
    return sql_apart(sql, *args, **connection.get_connection_params())


@requires_services("postgres")
def test_a_kept_connection_is_checked_without_a_query(api, headers, sent):
    assert next_request(api, headers).status_code == 200
    kept = connection.connection.get_backend_pid()
    sent.clear()

    response = next_request(api, headers)

    assert response.status_code == 200, response.content
    assert connection.connection.get_backend_pid() == kept
    assert sent, "the request reads the database"
    assert "SELECT 1" not in sent


@requires_services("postgres")
def test_a_connection_the_server_terminated_is_replaced_by_the_next_request(api, headers):
    assert next_request(api, headers).status_code == 200
    ended = connection.connection.get_backend_pid()
    assert from_another_connection("SELECT pg_terminate_backend(%s)", ended) == [(True,)]
    while from_another_connection("SELECT 1 FROM pg_stat_activity WHERE pid = %s", ended):
        time.sleep(0.01)

    response = next_request(api, headers)

    assert response.status_code == 200, response.content
    assert response.json()["data"][0]["name"] == "A"
    assert connection.connection.get_backend_pid() != ended


@requires_services("postgres")
def test_a_kept_connection_with_something_to_read_is_checked_with_a_query(api, headers, sent):
    assert next_request(api, headers).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("LISTEN v6_test")
    from_another_connection("NOTIFY v6_test")
    assert select.select([connection.connection], [], [], 5)[0], "the notification arrives"
    sent.clear()

    response = next_request(api, headers)

    assert response.status_code == 200, response.content
    assert sent[0] == "SELECT 1"


WRITERS = "writers"


@pytest.fixture
def sqlite_file(tmp_path, django_db_blocker):
    """A database alias on an SQLite file, configured as the server's default database is."""
    options = {**settings.DATABASES["default"].get("OPTIONS", {})}
    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        options = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    with sqlite_alias(WRITERS, tmp_path / "writers.sqlite3", options, django_db_blocker) as database:
        yield database


INSERT = "INSERT INTO entry VALUES (%s)"


def write(
    name: str,
    errors: list[str],
    *,
    sql: str = INSERT,
    hold: float = 0,
    fail: bool = False,
    began: threading.Event | None = None,
    busy_timeout_ms: int | None = 50,
    committed: Callable[[str], None] | None = None,
) -> None:
    """One writer's transaction on its thread's own connection: it runs ``sql`` with its name, sets
    ``began``, holds the transaction ``hold`` seconds, then fails (``fail``) or commits and calls
    ``committed`` with its name. Errors other than its own failure go to ``errors``. SQLite itself would
    wait for the write lock only ``busy_timeout_ms`` (by default much less than another writer holds it)."""
    try:
        if busy_timeout_ms is not None:
            with connections[WRITERS].cursor() as cursor:
                cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
        with transaction.atomic(using=WRITERS):
            connections[WRITERS].cursor().execute(sql, [name])
            if began is not None:
                began.set()
            time.sleep(hold)
            if fail:
                raise RuntimeError(f"{name}'s transaction fails")
        if committed is not None:
            committed(name)
    except RuntimeError:
        pass
    except Exception as error:  # the test reports it
        errors.append(f"{name}: {error}")
    finally:
        connections[WRITERS].close()


@pytest.mark.parametrize("first_fails", [False, True], ids=["commit", "rollback"])
def test_two_writers_of_one_process_both_write(sqlite_file, first_fails):
    errors: list[str] = []
    began = threading.Event()
    first = threading.Thread(
        target=write, args=("first", errors), kwargs={"hold": 0.3, "fail": first_fails, "began": began}
    )
    second = threading.Thread(target=write, args=("second", errors))
    first.start()
    assert began.wait(5)
    started = time.monotonic()
    second.start()
    first.join(10)
    second.join(10)

    assert errors == []
    assert time.monotonic() - started < 5  # the second began as the first ended
    with sqlite_file.cursor() as cursor:
        cursor.execute("SELECT writer FROM entry ORDER BY rowid")
        assert cursor.fetchall() == ([("second",)] if first_fails else [("first",), ("second",)])


# A writer in a process of its own, configured as a server process is: it inserts its name, says "began"
# and holds its transaction `hold` seconds, then commits.
OTHER_PROCESS = """
import sys, time, django
django.setup()
from django.db import connection, transaction
name, hold = sys.argv[1], float(sys.argv[2])
with transaction.atomic():
    connection.cursor().execute("INSERT INTO entry VALUES (%s)", [name])
    print("began", flush=True)
    time.sleep(hold)
"""


def other_process(database: Path, name: str, hold: float, script: str = OTHER_PROCESS) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("V6_")}
    env.update(V6_DATA_DIR=str(database.parent), V6_DATABASE_URL=f"sqlite:///{database}")
    writer = subprocess.Popen(
        [sys.executable, "-c", script, name, str(hold)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    return writer


def began(writer: subprocess.Popen) -> None:
    assert writer.stdout.readline() == "began\n", "the other process's transaction began"


def entries(sqlite_file) -> list[str]:
    with sqlite_file.cursor() as cursor:
        cursor.execute("SELECT writer FROM entry ORDER BY rowid")
        return [name for (name,) in cursor.fetchall()]


def test_a_writer_waits_for_the_transaction_of_another_process(sqlite_file):
    other = other_process(Path(sqlite_file.settings_dict["NAME"]), "other", 0.5)
    began(other)
    errors: list[str] = []

    write("this", errors)  # SQLite alone would give up after 50 ms

    assert other.wait(10) == 0
    assert errors == []
    assert entries(sqlite_file) == ["other", "this"]


def test_a_process_killed_in_its_transaction_holds_up_no_one(sqlite_file):
    other = other_process(Path(sqlite_file.settings_dict["NAME"]), "killed", 600)
    began(other)
    errors: list[str] = []
    writer = threading.Thread(target=write, args=("this", errors))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive(), "it waits for the other process"

    other.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    writer.join(10)

    assert time.monotonic() - killed < 2
    assert errors == []
    assert entries(sqlite_file) == ["this"]  # the killed process's transaction never happened


def test_a_process_writing_without_pause_lets_another_process_in(sqlite_file):
    stop = threading.Event()

    def keep_writing(name: str) -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            with transaction.atomic(using=WRITERS):
                connections[WRITERS].cursor().execute(INSERT, [name])
        connections[WRITERS].close()

    writers = [threading.Thread(target=keep_writing, args=(f"this-{n}",)) for n in range(4)]
    for writer in writers:
        writer.start()
    other = other_process(Path(sqlite_file.settings_dict["NAME"]), "other", 0)
    started = time.monotonic()
    try:
        began(other)
        assert time.monotonic() - started < 10  # not after the queue's wait of 20 s
        assert other.wait(10) == 0
        time.sleep(0.2)
    finally:
        stop.set()
        for writer in writers:
            writer.join(10)

    written = entries(sqlite_file)
    assert "other" in written[:-10], "the other process wrote while this one kept writing"


def test_a_transaction_holds_other_writers_up_only_from_its_first_statement(sqlite_file):
    database = Path(sqlite_file.settings_dict["NAME"])
    with transaction.atomic(using=WRITERS):
        # Still computing, no statement yet: another process writes meanwhile.
        other = other_process(database, "other", 0)
        began(other)
        assert other.wait(5) == 0
        sqlite_file.cursor().execute(INSERT, ["this"])
        # From its first statement on, it holds the others up until it ends.
        later = other_process(database, "later", 0)
        time.sleep(0.5)
        assert later.poll() is None, "the later process waits for this transaction"
        assert entries(sqlite_file) == ["other", "this"]  # its statements see what was committed before
    began(later)
    assert later.wait(10) == 0
    assert entries(sqlite_file) == ["other", "this", "later"]


def test_a_writer_gives_up_after_the_timeout_and_leaves_the_lock_to_the_next(sqlite_file):
    database = Path(sqlite_file.settings_dict["NAME"])
    sqlite_file.settings_dict["OPTIONS"]["timeout"] = 0.3
    other = other_process(database, "other", 2)
    began(other)
    errors: list[str] = []
    started = time.monotonic()

    write("this", errors)

    assert errors == ["this: database is locked"]
    assert time.monotonic() - started < 1.5  # the queue's 0.3 s, then SQLite's 50 ms
    assert other.wait(10) == 0
    # The lock this process was still waiting for when the writer gave up is not kept from the others.
    after = other_process(database, "after", 0)
    began(after)
    assert after.wait(5) == 0
    assert entries(sqlite_file) == ["other", "after"]


# --- SQLite: the transactions of writers that follow each other are committed together -----------------
def batch_statements(sqlite_file) -> list[str]:
    """The statements sent from now on on the connection this process's batches of the file run on."""
    batch = writer_queue(sqlite_file.settings_dict["NAME"], in_memory=False).batch
    assert batch is not None
    statements: list[str] = []
    batch.connect(sqlite_file).set_trace_callback(statements.append)
    return statements


def stored(sqlite_file) -> list[str]:
    """The entries another connection sees (committed)."""
    with closing(sqlite3.connect(sqlite_file.settings_dict["NAME"])) as other:
        return [name for (name,) in other.execute("SELECT writer FROM entry ORDER BY rowid")]


def writers(sqlite_file, *plans: tuple[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """Writers on threads of this process: the first holds its transaction 0.5 s, the others begin
    meanwhile and wait for it. A plan is (name, SQL with one parameter); "fail" as name: a writer whose
    transaction fails after its statement. Returns what each successful writer found stored as its
    commit returned, and the errors."""
    answered: dict[str, list[str]] = {}
    errors: list[str] = []
    holding = threading.Event()

    def answer(name: str) -> None:
        answered[name] = stored(sqlite_file)

    def writer(plan: tuple[str, str], **options) -> threading.Thread:
        name, sql = plan
        options.update(sql=sql, fail=name == "fail", busy_timeout_ms=None, committed=answer)
        thread = threading.Thread(target=write, args=(name, errors), kwargs=options)
        thread.start()
        return thread

    first = writer(plans[0], hold=0.5, began=holding)
    assert holding.wait(5)
    others = [writer(plan) for plan in plans[1:]]
    for thread in [first, *others]:
        thread.join(10)
    return answered, errors


def test_writers_that_wait_are_committed_together_and_answered_after_the_commit(sqlite_file):
    statements = batch_statements(sqlite_file)

    answered, errors = writers(sqlite_file, ("first", INSERT), ("b", INSERT), ("c", INSERT), ("d", INSERT))

    assert errors == []
    assert statements.count("COMMIT") == 1  # one commit, one fsync, for the four
    assert statements.count('SAVEPOINT "vantage6_writer"') == 4
    assert sorted(stored(sqlite_file)) == ["b", "c", "d", "first"]
    # Every writer's commit returned once all of the batch was committed, the first's too.
    assert {name: sorted(rows) for name, rows in answered.items()} == {
        name: ["b", "c", "d", "first"] for name in ("first", "b", "c", "d")
    }


def test_a_failing_writer_of_a_batch_leaves_nothing_and_the_others_are_stored(sqlite_file):
    statements = batch_statements(sqlite_file)

    answered, errors = writers(sqlite_file, ("first", INSERT), ("fail", INSERT), ("c", INSERT))

    assert errors == []
    assert statements.count("COMMIT") == 1
    assert sorted(stored(sqlite_file)) == ["c", "first"]
    assert sorted(answered) == ["c", "first"]
    write("after", errors)  # the connection is usable after it
    assert sorted(stored(sqlite_file)) == ["after", "c", "first"]


def test_a_batch_whose_commit_fails_fails_every_writer_in_it_and_stores_nothing(sqlite_file):
    with sqlite_file.cursor() as cursor:
        cursor.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        # As Django declares every foreign key on SQLite: checked at COMMIT only.
        cursor.execute(
            "CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    dangling = "INSERT INTO child VALUES (length(%s) + 1000)"

    answered, errors = writers(sqlite_file, ("first", INSERT), ("dangling", dangling))

    assert answered == {}
    assert sorted(errors) == [
        "dangling: FOREIGN KEY constraint failed",
        "first: FOREIGN KEY constraint failed",
    ]
    assert stored(sqlite_file) == []
    write("after", errors)
    assert errors[2:] == []
    assert stored(sqlite_file) == ["after"]


# The first thread's transaction ends while the main thread waits for the lock: it waits, unanswered, in
# the batch the main thread joins, which holds its transaction open until the process is killed.
KILLED_IN_BATCH = """
import threading, time, django
django.setup()
from django.db import connection, transaction

def first():
    with transaction.atomic():
        connection.cursor().execute("INSERT INTO entry VALUES ('first')")
        time.sleep(0.5)
    print("first answered", flush=True)

threading.Thread(target=first).start()
time.sleep(0.2)
with transaction.atomic():
    connection.cursor().execute("INSERT INTO entry VALUES ('second')")
    print("began", flush=True)
    time.sleep(600)
"""


def test_a_process_killed_with_a_batch_open_leaves_nothing_of_it(sqlite_file):
    other = other_process(Path(sqlite_file.settings_dict["NAME"]), "", 0, KILLED_IN_BATCH)
    began(other)
    other.send_signal(signal.SIGKILL)
    output, _ = other.communicate(timeout=10)

    assert "first answered" not in output
    assert stored(sqlite_file) == []  # neither the answered-to-no-one first nor the second
    errors: list[str] = []
    started = time.monotonic()
    write("this", errors)
    assert errors == []
    assert time.monotonic() - started < 2
    assert stored(sqlite_file) == ["this"]


# --- PostgreSQL: a write's transaction control and audit record ride with its statements ----------------
@requires_services("postgres")
@pytest.mark.usefixtures("transactional_db")
def test_a_write_begins_with_its_first_statement_and_commits_with_its_audit_record(api, sent):
    org = make_org("A")
    collab = make_collab(org)
    node, _ = make_node(org, collab)
    run = make_run(make_task(collab, org), org)
    headers = bearer(node)
    assert next_request(api, headers).status_code == 200  # the node's first call records when it was seen
    sent.clear()

    close_old_connections()
    response = api.post(
        "/api/port", {"port": 8080, "run_id": run.pk, "label": "api"}, format="json", **headers
    )

    assert response.status_code == 201, response.content
    # The port with its audit record and the caller's check (its token's login, its run), one statement
    # (atomic alone, without BEGIN and COMMIT; prepared with its first use): one round trip (psycopg2
    # sent BEGIN and COMMIT on their own, the audit record was a round trip of its own, and the caller
    # was read before the write).
    (insert,) = sent
    assert insert.startswith("PREPARE v6_") and " AS WITH n AS (" in insert
    assert 'INSERT INTO "algorithmport"' in insert and 'INSERT INTO "audit_entry"' in insert
    assert 'FROM "login_session"' in insert
    # Committed, as seen by another connection.
    port = response.json()["id"]
    assert from_another_connection("SELECT port, label FROM algorithmport WHERE id = %s", port) == [
        (8080, "api")
    ]
    assert from_another_connection(
        "SELECT actor_type, actor_id, action, object_id FROM audit_entry WHERE action = 'port.create'"
    ) == [("node", node.pk, "port.create", port)]


@requires_services("postgres")
@pytest.mark.parametrize(
    "before", [[], ["audit"], ["audit", "update"], ["update", "audit"]], ids=lambda steps: "+".join(steps)
)
@pytest.mark.usefixtures("transactional_db")
def test_a_failed_transaction_leaves_nothing_and_the_connection_usable(before):
    org = make_org("A")
    steps = {
        "audit": lambda: audit(None, "organization.edit", org),
        "update": lambda: Organization.objects.filter(pk=org.pk).update(name="B"),
    }
    with pytest.raises(DatabaseError), transaction.atomic():
        for step in before:
            steps[step]()
        Organization.objects.create(name="B" if "update" in before else "A")  # names are unique

    assert from_another_connection("SELECT name FROM organization") == [("A",)]
    assert from_another_connection("SELECT count(*) FROM audit_entry") == [(0,)]
    with transaction.atomic():  # the next transaction begins and commits as any
        audit(None, "organization.edit", org)
    assert from_another_connection("SELECT action FROM audit_entry") == [("organization.edit",)]


@requires_services("postgres")
@pytest.mark.usefixtures("transactional_db")
def test_statements_sent_together_keep_their_own_parameters():
    org = make_org("A")
    with transaction.atomic():
        audit(None, "organization.edit", org, note="50%s")
        with connection.cursor() as cursor:
            cursor.execute("SELECT '100%'")  # no parameters: its % is its own
            assert cursor.fetchone() == ("100%",)
            cursor.execute("SELECT %s || '%%'", ["5"])
            assert cursor.fetchone() == ("5%",)
    assert from_another_connection("SELECT data->>'note' FROM audit_entry") == [("50%s",)]
