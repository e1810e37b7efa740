"""PostgreSQL: the statements of every request (the caller's lookup, a run update's lock and read) are
prepared on the server once per connection, in the query string of their first use, and run by name
afterwards: the server parses and plans them once, at no round trip of their own."""

from __future__ import annotations

import pytest
from django.db import DataError, connection, transaction

from tasks.models import Run
from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task

pytestmark = [requires_services("postgres"), pytest.mark.usefixtures("transactional_db")]


def test_a_run_update_runs_its_statements_by_name_after_their_first_use(api, sent):
    org, other = make_org("A"), make_org("B")
    collab = make_collab(org, other)
    node, _ = make_node(org, collab)
    task = make_task(collab, org)
    first, second = make_run(task, org), make_run(task, org)
    headers = bearer(node)
    api.get("/api/organization", **headers)  # the node's first call records when it was seen
    sent.clear()

    updated = api.patch(f"/api/run/{first.pk}", {"status": "active"}, format="json", **headers)

    assert updated.status_code == 200, updated.content
    caller, read, write = sent  # three round trips, as without prepared statements
    assert caller.startswith("EXECUTE v6_")  # prepared by the call before
    assert read.startswith("BEGIN; PREPARE v6_") and " FOR UPDATE; " in read and read.count("PREPARE ") == 2
    assert write.startswith('UPDATE "run"') and write.endswith("; COMMIT")
    sent.clear()

    again = api.patch(f"/api/run/{second.pk}", {"status": "active"}, format="json", **headers)

    assert again.status_code == 200, again.content
    assert again.json()["id"] == second.pk and again.json()["status"] == "active"
    caller, read, write = sent
    assert caller.startswith("EXECUTE v6_")
    assert read.startswith("BEGIN; EXECUTE v6_") and read.count("; EXECUTE v6_") == 2
    assert "PREPARE" not in " ".join(sent)
    assert set(Run.objects.filter(task=task).values_list("status", flat=True)) == {"active"}


@pytest.mark.parametrize("failing", ["the statement itself", "a statement before it"])
def test_a_statement_whose_first_use_failed_is_prepared_again(failing):
    """A query string that failed may or may not have run its PREPARE: the next use prepares the
    statement under a new name rather than run a name that may not exist or prepare one that does."""
    sql = f'SELECT 10 / %s AS "{failing}"'
    connection.prepare(sql)  # type: ignore[attr-defined]  # the PostgreSQL backend's
    with connection.cursor() as cursor:
        with pytest.raises(DataError), transaction.atomic():
            if failing == "a statement before it":  # sent in front of the PREPARE, which never runs
                connection.defer("SELECT 1 / %s", [0])  # type: ignore[attr-defined]
                cursor.execute(sql, [5])
            else:  # PREPARE ran, EXECUTE failed
                cursor.execute(sql, [0])
        cursor.execute(sql, [5])
        assert cursor.fetchone() == (2,)
        cursor.execute(sql, [2])
        assert cursor.fetchone() == (5,)
        assert cursor.cursor.query.decode().startswith("EXECUTE v6_")


def test_a_key_beyond_an_integer_column_finds_no_row(api):
    org = make_org("A")
    collab = make_collab(org)
    node, _ = make_node(org, collab)
    headers = bearer(node)
    for _ in range(2):  # prepared with the first, run by name with the second
        response = api.patch(f"/api/run/{2**40}", {"status": "active"}, format="json", **headers)
        assert response.status_code == 401, response.content  # no row: as another organization's run
