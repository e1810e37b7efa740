"""PostgreSQL: the statements of every request (the caller's lookup, a run update's lock and read) are
prepared on the server once per connection, in the query string of their first use, and run by name
afterwards: the server parses and plans them once, at no round trip of their own."""

from __future__ import annotations

import pytest
from django.db import DataError, connection, transaction
from django.db.models import OuterRef, Subquery

from tasks.models import Run, Task, TaskStatus
from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task, make_user
from vantage6.api import sql as sql_module
from vantage6.api.sql import CompiledRows

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
    read, write = sent  # two round trips, as without prepared statements: the caller comes with the run
    assert read.startswith("BEGIN; PREPARE v6_") and " FOR UPDATE; " in read and read.count("PREPARE ") == 2
    assert write.startswith('UPDATE "run"') and write.endswith("; COMMIT")
    sent.clear()

    again = api.patch(f"/api/run/{second.pk}", {"status": "active"}, format="json", **headers)

    assert again.status_code == 200, again.content
    assert again.json()["id"] == second.pk and again.json()["status"] == "active"
    read, write = sent
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


def test_a_kill_checked_by_its_statement_builds_its_guarded_lock_once_and_runs_it_by_name(
    api, sent, monkeypatch
):
    """The lock of a kill that carries the caller's check is built once per form of that check, and
    run, as the write after it, by the name prepared with its first use: one query string of two
    EXECUTEs from the second kill on."""
    built = []
    build = sql_module._guarded
    monkeypatch.setattr(sql_module, "_guarded", lambda *args: built.append(args) or build(*args))
    org = make_org("A")
    collab = make_collab(org)
    root = make_user(org, "Root")  # a global right: its kill is checked by its own statement
    headers = bearer(root)
    tasks = [make_task(collab, org) for _ in range(3)]
    for task in tasks:
        make_run(task, org, status="active")

    for task in tasks:
        sent.clear()
        response = api.post("/api/kill/task", {"id": task.pk}, format="json", **headers)
        assert response.status_code == 200, response.content

    (killed,) = sent  # the last kill: one round trip
    lock, write = killed.split("; ", 1)
    assert lock.startswith("EXECUTE v6_") and write.startswith("EXECUTE v6_"), killed
    assert "PREPARE" not in killed
    assert len(built) <= 1, "the guarded lock was built again"  # once, unless an earlier test did
    assert set(Run.objects.filter(task__in=tasks).values_list("status", flat=True)) == {TaskStatus.KILLED}


def test_a_guard_needs_a_query_whose_first_where_is_its_own():
    """The guard goes into the first WHERE of the compiled query: a query whose first WHERE is a
    subquery's is refused when its guarded form is built (not by an ``assert``, which ``-O`` drops)."""
    first_run = Subquery(Run.objects.filter(task_id=OuterRef("pk")).values("id")[:1])
    rows = CompiledRows(
        lambda task: (
            Task.objects.select_for_update().annotate(run=first_run).filter(pk=task).values_list("id", "run")
        ),
        "task",
    )
    with pytest.raises(ValueError, match="not a query of one table with a WHERE"):
        rows.lock_later(("1 = %s", [1]), task=1)


def _create_task(api, headers: dict, collab, orgs: list) -> dict:
    body = {
        "image": "some/image",
        "collaboration_id": collab.pk,
        "organizations": [{"id": org.pk, "input": "e30="} for org in orgs],
        "databases": [{"label": "default"}],
    }
    response = api.post("/api/task", body, format="json", **headers)
    assert response.status_code == 201, response.content
    return response.json()


def test_a_task_creation_writes_its_rows_by_the_name_prepared_with_its_first_use(api, sent):
    """The one statement writing a task, its runs, databases and audit record is prepared per shape
    (count of rows): from the second task of a shape on it runs by name, and writes what it wrote."""
    orgs = [make_org(f"O{i}") for i in range(2)]
    collab = make_collab(*orgs)
    for org in orgs:
        make_node(org, collab)
    headers = bearer(make_user(orgs[0], "Root"))

    tasks = []
    for _ in range(2):
        sent.clear()
        tasks.append(_create_task(api, headers, collab, orgs))

    write = sent[-1]
    assert write.startswith("EXECUTE v6_") and "PREPARE" not in write, write
    assert tasks[1]["id"] > tasks[0]["id"] and tasks[1]["job_id"] == tasks[1]["id"]
    for task in tasks:
        runs = Run.objects.filter(task_id=task["id"])
        assert sorted(runs.values_list("organization_id", flat=True)) == [org.pk for org in orgs]
        assert Task.objects.get(pk=task["id"]).databases.get().database == "default"


def test_a_task_creation_of_many_rows_is_not_prepared(api, sent):
    """Past ``PREPARED_CHILDREN`` child rows the statement is sent as written (a bounded set of
    prepared texts per connection)."""
    count = sql_module.CompiledInsert.PREPARED_CHILDREN  # runs, with a database and the audit record
    orgs = [make_org(f"O{i}") for i in range(count)]
    collab = make_collab(*orgs)
    for org in orgs:
        make_node(org, collab)
    headers = bearer(make_user(orgs[0], "Root"))

    for _ in range(2):
        sent.clear()
        task = _create_task(api, headers, collab, orgs)

    assert sent[-1].startswith("WITH k AS MATERIALIZED"), sent[-1]
    assert Run.objects.filter(task_id=task["id"]).count() == count
