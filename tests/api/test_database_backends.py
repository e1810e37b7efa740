"""The database backends (vantage6.db).

PostgreSQL: a kept connection is checked before each request's first query without a round trip (its
socket is looked at), and a connection the server ended is replaced by the next request, unnoticed.
SQLite: the write transactions of one process queue for each other instead of SQLite's busy handler.
"""

from __future__ import annotations

import select
import threading
import time

import psycopg2
import pytest
from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction

from tests.conftest import requires_services
from tests.factories import bearer, make_org, make_user
from tests.realtime.live import sql_apart


@pytest.fixture
def sent() -> list[str]:
    """The statements sent on the test thread's PostgreSQL connection, Django's checks included (they
    bypass Django's cursor and its query log)."""
    statements: list[str] = []

    class Recording(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            statements.append(query if isinstance(query, str) else query.decode())
            return super().execute(query, vars)

    connection.close()  # a new connection: none of the suite's earlier tests reaches its maximum age
    connection.ensure_connection()
    connection.connection.cursor_factory = Recording
    return statements


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
    database = {
        "ENGINE": "vantage6.db.sqlite3",
        "NAME": str(tmp_path / "writers.sqlite3"),
        "OPTIONS": {**settings.DATABASES["default"].get("OPTIONS", {})},
    }
    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        database["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    configured = connections.configure_settings({"default": settings.DATABASES["default"], WRITERS: database})
    connections.settings[WRITERS] = configured[WRITERS]
    with django_db_blocker.unblock():
        with connections[WRITERS].cursor() as cursor:
            cursor.execute("CREATE TABLE entry (writer TEXT)")
        yield connections[WRITERS]
        connections[WRITERS].close()
    del connections[WRITERS]
    del connections.settings[WRITERS]


def write(name: str, began: threading.Event, hold: float, fail: bool, errors: list) -> None:
    """One writer's transaction, on its thread's own connection. SQLite itself would wait for the write
    lock only 50 ms here, much less than the other writer holds it."""
    try:
        with connections[WRITERS].cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 50")
        with transaction.atomic(using=WRITERS):
            connections[WRITERS].cursor().execute("INSERT INTO entry VALUES (%s)", [name])
            began.set()
            time.sleep(hold)
            if fail:
                raise RuntimeError("the first writer's transaction fails")
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
    first = threading.Thread(target=write, args=("first", began, 0.3, first_fails, errors))
    second = threading.Thread(target=write, args=("second", threading.Event(), 0, False, errors))
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
