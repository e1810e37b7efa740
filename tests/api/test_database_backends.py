"""The database backends (vantage6.db).

PostgreSQL: a kept connection is checked before each request's first query without a round trip (its
socket is looked at), and a connection the server ended is replaced by the next request, unnoticed.
"""

from __future__ import annotations

import select
import time

import psycopg2
import pytest
from django.db import close_old_connections, connection

from tests.conftest import requires_services
from tests.factories import bearer, make_org, make_user


@pytest.fixture
def sent() -> list[str]:
    """The statements sent on the test thread's PostgreSQL connection, Django's checks included (they
    bypass Django's cursor and its query log)."""
    statements: list[str] = []

    class Recording(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            statements.append(query if isinstance(query, str) else query.decode())
            return super().execute(query, vars)

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
    other = psycopg2.connect(**connection.get_connection_params())
    other.autocommit = True
    try:
        with other.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []
    finally:
        other.close()


@requires_services("postgres")
def test_a_kept_connection_is_checked_without_a_query(api, headers, sent):
    assert next_request(api, headers).status_code == 200
    sent.clear()

    response = next_request(api, headers)

    assert response.status_code == 200, response.content
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
