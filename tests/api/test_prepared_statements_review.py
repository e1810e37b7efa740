"""PostgreSQL: a prepared statement keeps the row type of its result. A column's type changed while the
server runs (a migration widening a text field) makes every run of it by name fail with "cached plan
must not change result type": the server prepares it again instead of answering 500 until the
connection is replaced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import NotSupportedError, connection, transaction

from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task, make_user
from tests.realtime.live import sql_apart

pytestmark = [requires_services("postgres"), pytest.mark.usefixtures("transactional_db")]


@contextmanager
def widened(table: str, column: str, length: int) -> Iterator[None]:
    """``table.column`` a ``varchar`` one longer than ``length`` (from another connection, as a migration
    would) for the block."""
    params = connection.get_connection_params()
    sql_apart(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar({length + 1})', **params)
    try:
        yield
    finally:
        sql_apart(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE varchar({length})', **params)


def test_the_callers_lookup_answers_after_a_column_of_it_changed_type(api, sent):
    headers = bearer(make_user(make_org("A"), "Researcher"))
    assert api.get("/api/organization", **headers).status_code == 200  # the lookup is prepared
    assert api.get("/api/organization", **headers).status_code == 200

    with widened("authenticatable", "ip", 64):
        for again in ("PREPARE v6_", "EXECUTE v6_"):  # prepared again, then run by name
            sent.clear()
            response = api.get("/api/organization", **headers)
            assert response.status_code == 200, response.content
            assert response.json()["data"][0]["name"] == "A"
            assert sent[-2].startswith(again)


def test_a_run_update_answers_after_a_column_of_the_run_changed_type(api):
    org = make_org("A")
    collab = make_collab(org)
    node, _ = make_node(org, collab)
    task = make_task(collab, org)
    first, second = make_run(task, org), make_run(task, org)
    headers = bearer(node)
    updated = api.patch(f"/api/run/{first.pk}", {"status": "active"}, format="json", **headers)
    assert updated.status_code == 200, updated.content  # the run's lock and read are prepared

    with widened("run", "status", 32):  # the read is the first statement of the update's transaction
        again = api.patch(f"/api/run/{second.pk}", {"status": "active"}, format="json", **headers)

        assert again.status_code == 200, again.content
        assert again.json()["status"] == "active"


def test_a_statement_failing_inside_a_transaction_fails_once():
    """In a transaction that already ran a statement the failure cannot be undone: the transaction
    fails, and the statement is prepared again with its next use."""
    sql = 'SELECT "ip" FROM "authenticatable" WHERE "id" = %s OR %s'
    connection.prepare(sql)  # type: ignore[attr-defined]  # the PostgreSQL backend's
    with connection.cursor() as cursor:
        cursor.execute(sql, [1, True])
        with widened("authenticatable", "ip", 64):
            with pytest.raises(NotSupportedError), transaction.atomic():
                cursor.execute("SELECT 1")
                cursor.execute(sql, [1, True])
            for _ in range(2):
                cursor.execute(sql, [1, True])
                assert cursor.fetchall() == []


def test_statements_a_pooled_session_kept_from_an_earlier_client_are_no_obstacle(api):
    """A pooler in session mode without a reset (``server_reset_query`` empty) hands over a server
    session with the prepared statements of its earlier client: names of this server's, from a
    connection before. Its own are prepared under names no other connection used."""
    headers = bearer(make_user(make_org("A"), "Researcher"))
    connection.close()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        for number in range(1, 21):
            cursor.execute(f"PREPARE v6_{number} AS SELECT {number}")

    for _ in range(3):
        response = api.get("/api/organization", **headers)
        assert response.status_code == 200, response.content
        assert response.json()["data"][0]["name"] == "A"


def test_a_statement_prepared_in_a_transaction_rolled_back_later_is_run_by_name():
    """PREPARE is not undone by the rollback of the transaction it ran in: the name stays good."""
    sql = 'SELECT count(*) FROM "authenticatable" WHERE "id" > %s'
    connection.prepare(sql)  # type: ignore[attr-defined]  # the PostgreSQL backend's
    with connection.cursor() as cursor:
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            cursor.execute(sql, [0])
            assert cursor.cursor.query.decode().startswith("BEGIN; PREPARE v6_")
            1 / 0  # noqa: B018 - the transaction fails after the statement's first use
        cursor.execute(sql, [0])
        assert cursor.fetchone() == (0,)
        assert cursor.cursor.query.decode().startswith("EXECUTE v6_")
