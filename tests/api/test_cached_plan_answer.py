"""PostgreSQL: a prepared statement whose result type a column change invalidated fails once where its
transaction had already run other statements. That one failure is transient, as an unreachable
database is: the client is asked to try again (503, ``Retry-After``), and the next try is answered.
Where the statement is the first of its transaction, it is prepared again at once and answered."""

from __future__ import annotations

import pytest
from django.db import NotSupportedError, connection, transaction
from django.test import RequestFactory

from tests.api.test_prepared_statements_review import widened
from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task
from vantage6.api.errors import DATABASE_UNAVAILABLE, exception_handler

pytestmark = [requires_services("postgres"), pytest.mark.usefixtures("transactional_db")]


def test_a_plan_changed_inside_a_transaction_is_a_503_to_retry():
    sql = 'SELECT "status" FROM "run" WHERE "id" = %s OR %s'
    connection.prepare(sql)  # type: ignore[attr-defined]  # the PostgreSQL backend's
    with connection.cursor() as cursor:
        cursor.execute(sql, [1, True])
        with widened("run", "status", 32), pytest.raises(NotSupportedError) as failed, transaction.atomic():
            cursor.execute("SELECT 1")
            cursor.execute(sql, [1, True])

    answer = exception_handler(failed.value, {"request": RequestFactory().get("/api/run")})

    assert (answer.status_code, answer.data, answer.headers.get("Retry-After")) == (
        503,
        {"msg": DATABASE_UNAVAILABLE},
        "1",
    )


def test_a_request_whose_plan_changed_is_answered_or_asked_to_retry(api):
    a, b = make_org("A"), make_org("B")
    collab = make_collab(a, b)
    node, _ = make_node(a, collab)
    foreign = make_run(make_task(collab, a), b)  # not a run of node A
    headers = bearer(node)

    def port() -> tuple[int, dict, str | None]:
        response = api.post(
            "/api/port", {"run_id": foreign.pk, "port": 1, "label": "l"}, format="json", **headers
        )
        return response.status_code, response.json(), response.headers.get("Retry-After")

    refused = port()  # prepares the run's lookup on this connection
    assert refused[0] == 401

    with widened("run", "status", 32):
        first, again = port(), port()

    assert first in (refused, (503, {"msg": DATABASE_UNAVAILABLE}, "1"))  # never a 500
    assert again == refused
