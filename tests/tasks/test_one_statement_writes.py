"""A kill and a new task write all their rows and their audit record, or nothing: on PostgreSQL each is
one statement (the kill's after its lock, in one query string) outside a transaction of Django's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection

from accounts.models import AuditEntry
from tasks import services
from tasks.models import Run, Task, TaskDatabase
from tests.conftest import requires_services
from tests.factories import bearer, make_run, make_task, make_user
from tests.tasks.conftest import container_headers_from, plain

pytestmark = pytest.mark.django_db


def body(world, **overrides) -> dict:
    return {
        "name": "one-statement",
        "image": "some/image",
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": org.pk, "input": plain()} for org in (world.org_a, world.org_b)],
        "databases": [{"label": "default"}, {"label": "other", "query": "SELECT 1"}],
        **overrides,
    }


def entries(action: str, task_id: int) -> list[tuple]:
    return list(
        AuditEntry.objects.filter(action=action, object_id=task_id).values_list(
            "actor_type", "actor_id", "object_type", "object_organization_id"
        )
    )


def kill(api, who, task_id: int):
    return api.post("/api/kill/task", {"id": task_id}, format="json", **bearer(who))


def check_new_task(api, world, headers: dict, reader: dict, parent: Task | None = None) -> Task:
    """A task created with ``headers``, its rows as written; the answer is what ``reader`` reads."""
    response = api.post("/api/task", body(world), format="json", **headers)
    assert response.status_code == 201, response.content
    task = Task.objects.get(pk=response.json()["id"])
    assert task.job_id == (parent.job_id if parent else task.pk) == response.json()["job_id"]
    assert sorted(Run.objects.filter(task=task).values_list("organization_id", flat=True)) == sorted(
        [world.org_a.pk, world.org_b.pk]
    )
    assert list(TaskDatabase.objects.filter(task=task).order_by("id").values_list("database", flat=True)) == [
        "default",
        "other",
    ]
    assert response.json() == api.get(f"/api/task/{task.pk}", **reader).json()
    return task


def test_a_new_task_has_its_job_its_runs_databases_and_audit_record(api, world):
    user = make_user(world.org_a, "Researcher")
    task = check_new_task(api, world, bearer(user), bearer(user))
    assert entries("task.create", task.pk) == [("user", user.pk, "task", world.org_a.pk)]


def test_a_subtask_is_part_of_its_parents_job(api, world):
    user = make_user(world.org_a, "Researcher")
    parent = check_new_task(api, world, bearer(user), bearer(user))
    node = world.node_b
    headers = container_headers_from(api, node, parent)
    subtask = check_new_task(api, world, headers, bearer(user), parent=parent)
    assert subtask.parent_id == parent.pk and subtask.init_user_id == user.pk
    assert entries("task.create", subtask.pk) == [("container", node.pk, "task", subtask.init_org_id)]


def test_a_kill_writes_its_runs_its_task_and_one_audit_record(api, world):
    task = make_task(world.collab_ab, world.org_a)
    runs = [make_run(task, world.org_a, status="active"), make_run(task, world.org_b)]
    root = make_user(world.org_a, "Root")
    assert kill(api, root, task.pk).status_code == 200
    assert set(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("status", flat=True)) == {
        "killed by user"
    }
    assert Task.objects.get(pk=task.pk).status == "killed by user"
    assert entries("task.kill", task.pk) == [("user", root.pk, "task", world.org_a.pk)]
    # Finished now: a second kill is a 400 and writes nothing.
    again = kill(api, root, task.pk)
    assert again.status_code == 400
    assert entries("task.kill", task.pk) == [("user", root.pk, "task", world.org_a.pk)]


@contextmanager
def refused(table: str, when: str) -> Iterator[None]:
    """The database refuses the rows of ``table`` that match ``when`` (a fault in the middle of a write)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION v6_test_refuse() RETURNS trigger AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER v6_test_refuse BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
            f"WHEN ({when}) EXECUTE FUNCTION v6_test_refuse()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER v6_test_refuse ON {table}")
            cursor.execute("DROP FUNCTION v6_test_refuse()")


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)  # the writes' own transactions, as the server runs them
def test_a_kill_whose_audit_record_fails_kills_nothing(api, world, monkeypatch):
    # The kill's lock compiled afresh, outside a transaction (as a new server process does).
    monkeypatch.setattr(services._lock_family, "_plans", {})
    task = make_task(world.collab_ab, world.org_a)
    run = make_run(task, world.org_a, status="active")
    root = make_user(world.org_a, "Root")
    with refused("audit_entry", "NEW.action = 'task.kill'"):
        assert kill(api, root, task.pk).status_code == 500
    assert Run.objects.get(pk=run.pk).status == "active" and Run.objects.get(pk=run.pk).finished_at is None
    assert Task.objects.get(pk=task.pk).status == task.status
    # Nothing was held: the kill goes through now.
    assert kill(api, root, task.pk).status_code == 200
    assert Run.objects.get(pk=run.pk).status == "killed by user"
    assert len(entries("task.kill", task.pk)) == 1


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_new_task_whose_run_fails_writes_nothing(api, world):
    user = make_user(world.org_a, "Researcher")
    before = [model.objects.count() for model in (Task, Run, TaskDatabase, AuditEntry)]
    with refused("run", f"NEW.organization_id = {world.org_b.pk}"):
        response = api.post("/api/task", body(world), format="json", **bearer(user))
    assert response.status_code == 500
    assert [model.objects.count() for model in (Task, Run, TaskDatabase, AuditEntry)] == before


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_kills_outside_the_usual_case_in_their_own_transaction(api, world):
    """The usual kill's statement finds nothing (subtasks; a finished task): the general kill follows."""
    root = make_user(world.org_a, "Root")
    parent = make_task(world.collab_ab, world.org_a)
    child = make_task(world.collab_ab, world.org_a, parent=parent)
    runs = [make_run(parent, world.org_a, status="active"), make_run(child, world.org_b)]
    assert kill(api, root, parent.pk).status_code == 200
    assert set(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("status", flat=True)) == {
        "killed by user"
    }
    assert entries("task.kill", parent.pk) == [("user", root.pk, "task", world.org_a.pk)]
    assert kill(api, root, parent.pk).status_code == 400
    assert len(entries("task.kill", parent.pk)) == 1
