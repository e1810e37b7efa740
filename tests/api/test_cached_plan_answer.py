"""PostgreSQL: a prepared statement whose result type a column change invalidated fails once where its
transaction had already run other statements. That one failure is transient, as an unreachable
database is: the client is asked to try again (503, ``Retry-After``), and the next try is answered."""

from __future__ import annotations

import pytest

from tests.api.test_prepared_statements_review import widened
from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task
from vantage6.api.errors import DATABASE_UNAVAILABLE

pytestmark = [requires_services("postgres"), pytest.mark.usefixtures("transactional_db")]


def test_a_plan_changed_inside_a_transaction_is_a_503_to_retry(api):
    a, b = make_org("A"), make_org("B")
    collab = make_collab(a, b)
    node, _ = make_node(a, collab)
    foreign = make_run(make_task(collab, a), b)  # not a run of node A
    headers = bearer(node)

    def port() -> tuple[int, dict, str | None]:
        # The port's conditional insert opens the transaction; the run's lookup for the 401 comes second.
        response = api.post(
            "/api/port", {"run_id": foreign.pk, "port": 1, "label": "l"}, format="json", **headers
        )
        return response.status_code, response.json(), response.headers.get("Retry-After")

    refused = port()  # prepares the run's lookup on this connection
    assert refused[0] == 401

    with widened("run", "status", 32):
        assert port() == (503, {"msg": DATABASE_UNAVAILABLE}, "1")
        assert port() == refused
