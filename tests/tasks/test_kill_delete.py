"""Killing tasks and a node's work, and deleting tasks with everything below them."""

from __future__ import annotations

from datetime import datetime

import pytest

from accounts.models import AuditEntry, Authenticatable
from tasks.models import AlgorithmPort, Run, Task, TaskDatabase, task_status
from tests.factories import bearer, make_run, make_task, make_user
from tests.tasks.conftest import rules, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def family(world):
    """parent (AB) → child → grandchild, each with open runs at A and B; plus a finished run."""
    creator = make_user(world.org_a)
    parent = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, init_user=creator)
    done = make_run(parent, world.org_b, status="completed", finished_at=datetime(2024, 1, 1))
    child = make_task(world.collab_ab, world.org_a, world.org_a, parent=parent, init_user=creator)
    grandchild = make_task(world.collab_ab, world.org_b, world.org_b, parent=child, init_user=creator)
    TaskDatabase.objects.create(task=grandchild, database="db", parameters="{}")
    AlgorithmPort.objects.create(run=grandchild.runs.get(), port=1234)
    return {"parent": parent, "child": child, "grandchild": grandchild, "done": done, "creator": creator}


def kill(api, who, task_id):
    return api.post("/api/kill/task", {"id": task_id}, format="json", **bearer(who))


def test_kill_task_stops_open_runs_of_the_task_and_its_direct_children(
    api, world, family, events, django_capture_on_commit_callbacks
):
    sender = user_with(world.org_a, "event.col.send")
    with django_capture_on_commit_callbacks(execute=True):
        response = kill(api, sender, family["parent"].pk)
    assert response.status_code == 200
    event, data, room = events[-1]
    assert (event, room) == ("kill_containers", f"collaboration_{world.collab_ab.pk}")
    assert data["collaboration_id"] == world.collab_ab.pk
    expected = Run.objects.filter(task__in=[family["parent"], family["child"]]).exclude(pk=family["done"].pk)
    assert sorted(entry["run_id"] for entry in data["kill_list"]) == sorted(
        expected.values_list("id", flat=True)
    )
    assert all(set(entry) == {"task_id", "run_id", "organization_id"} for entry in data["kill_list"])
    assert set(expected.values_list("status", flat=True)) == {"killed by user"}
    assert not expected.filter(finished_at__isnull=True).exists()
    assert Run.objects.get(pk=family["done"].pk).status == "completed"
    assert family["grandchild"].runs.get().status == "pending"
    # Now finished: a second kill has nothing to do.
    again = kill(api, sender, family["parent"].pk)
    assert again.status_code == 400


def test_kill_of_a_task_without_subtasks_stops_exactly_its_open_runs(
    api, world, events, django_capture_on_commit_callbacks
):
    task = make_task(world.collab_ab, world.org_a)
    end = datetime(2024, 1, 1)
    runs = {
        "pending": make_run(task, world.org_a),
        "active": make_run(task, world.org_b, status="active"),
        "done": make_run(task, world.org_b, status="completed", finished_at=end),
        "reported": make_run(task, world.org_a, status="active", finished_at=end),  # its end is stored
        "initializing": make_run(task, world.org_a, status="initializing"),
    }
    other = make_run(make_task(world.collab_ab, world.org_a), world.org_a)  # another task's open run
    sender = user_with(world.org_a, "event.col.send")
    with django_capture_on_commit_callbacks(execute=True):
        assert kill(api, sender, task.pk).status_code == 200
    event, data, _ = events[-1]
    stopped = [runs[name] for name in ("pending", "active", "initializing")]
    assert (event, data["kill_list"]) == (
        "kill_containers",
        [{"task_id": task.pk, "run_id": run.pk, "organization_id": run.organization_id} for run in stopped],
    )
    states = {
        name: Run.objects.values_list("status", "finished_at").get(pk=run.pk) for name, run in runs.items()
    }
    assert {name: status for name, (status, _) in states.items()} == {
        "pending": "killed by user",
        "active": "killed by user",
        "done": "completed",
        "reported": "active",
        "initializing": "killed by user",
    }
    assert all(states[name][1] is not None for name in states)
    assert Run.objects.get(pk=other.pk).status == "pending"
    task.refresh_from_db()
    assert (task.status, task.finished_at) == ("killed by user", None)
    assert (task.status, task.finished_at) == task_status(task.runs.values_list("status", "finished_at"))


@pytest.mark.parametrize("specs", [("event.glo.send",), ("event.col.send",)])
def test_a_kill_answers_records_and_tells_the_same_whatever_the_callers_scope(
    api, world, events, django_capture_on_commit_callbacks, specs
):
    """A global right needs no read of the task before the kill (PostgreSQL): its organization and
    collaboration come with the kill's statement, and must be those the read gives."""
    task = make_task(world.collab_ab, world.org_b)  # created by B, killed by a user of A
    active, pending = make_run(task, world.org_a, status="active"), make_run(task, world.org_b)
    sender = user_with(world.org_a, *specs)
    with django_capture_on_commit_callbacks(execute=True):
        response = kill(api, sender, task.pk)
    assert response.status_code == 200
    assert response.json() == {"msg": f"Nodes have been instructed to kill the runs of task id={task.pk}."}
    assert events[-1] == (
        "kill_containers",
        {
            "kill_list": [
                {"task_id": task.pk, "run_id": run.pk, "organization_id": run.organization_id}
                for run in (active, pending)
            ],
            "collaboration_id": world.collab_ab.pk,
        },
        f"collaboration_{world.collab_ab.pk}",
    )
    entry = AuditEntry.objects.get(action="task.kill")
    assert (entry.actor_type, entry.actor_id, entry.actor_organization_id) == (
        "user",
        sender.pk,
        world.org_a.pk,
    )
    assert (entry.object_type, entry.object_id, entry.object_organization_id) == (
        "task",
        task.pk,
        world.org_b.pk,
    )
    assert entry.data == {}
    task.refresh_from_db()
    assert task.status == "killed by user"


@pytest.mark.parametrize(
    "specs, org, allowed",
    [
        (("event.glo.send",), "c", True),
        (("event.col.send",), "a", True),
        (("event.col.send",), "c", False),
        (("event.org.send",), "a", False),
        (("task.glo.delete",), "a", False),
    ],
)
def test_kill_task_permissions(api, world, family, specs, org, allowed):
    user = user_with({"a": world.org_a, "c": world.org_c}[org], *specs)
    response = kill(api, user, family["parent"].pk)
    assert response.status_code == (200 if allowed else 401)
    assert (Run.objects.filter(status="killed by user").exists()) is allowed


def test_kill_task_errors(api, world):
    sender = user_with(world.org_a, "event.glo.send")
    assert kill(api, sender, 99999).status_code == 401  # as a task out of reach: ids tell nothing
    assert kill(api, user_with(world.org_a, "event.glo.send", "task.glo.view"), 99999).status_code == 404
    assert api.post("/api/kill/task", {"id": "x"}, format="json", **bearer(sender)).status_code == 400
    no_runs = make_task(world.collab_ab, world.org_a)  # no runs: completed
    assert kill(api, sender, no_runs.pk).status_code == 400
    assert kill(api, world.node_a, no_runs.pk).status_code == 401


@pytest.mark.parametrize(
    "specs, org, allowed",
    [
        (("event.glo.send",), "c", True),
        (("event.col.send",), "b", True),
        (("event.org.send",), "a", True),
        (("event.org.send",), "b", False),
        (("event.col.send",), "c", False),
    ],
)
def test_kill_node_tasks(api, world, specs, org, allowed, events, django_capture_on_commit_callbacks):
    Authenticatable.objects.filter(pk=world.node_a.pk).update(status="online")
    user = user_with({"a": world.org_a, "b": world.org_b, "c": world.org_c}[org], *specs)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/kill/node/tasks", {"id": world.node_a.pk}, format="json", **bearer(user))
    assert response.status_code == (200 if allowed else 401)
    if allowed:
        assert events == [
            ("kill_containers", {"node_id": world.node_a.pk, "collaboration_id": world.collab_ab.pk},
             f"collaboration_{world.collab_ab.pk}"),
        ]  # fmt: skip
    else:
        assert events == []
    recorded = AuditEntry.objects.filter(action="node.kill_tasks").values_list("actor_id", "object_id")
    assert list(recorded) == ([(user.pk, world.node_a.pk)] if allowed else [])


def test_kill_node_tasks_needs_an_online_node(api, world):
    user = user_with(world.org_a, "event.glo.send")
    response = api.post("/api/kill/node/tasks", {"id": world.node_b.pk}, format="json", **bearer(user))
    assert response.status_code == 400
    assert api.post("/api/kill/node/tasks", {"id": 99999}, format="json", **bearer(user)).status_code == 401


# --- delete ------------------------------------------------------------------------------------------------
def test_delete_removes_the_whole_subtree_and_kills_open_work(
    api, world, family, events, django_capture_on_commit_callbacks
):
    deleter = user_with(world.org_a, "task.col.delete")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/task/{family['parent'].pk}", **bearer(deleter))
    assert response.status_code == 200
    assert response.json() == {
        "msg": f"task id={family['parent'].pk} and its algorithm run data have been successfully deleted"
    }
    assert Task.objects.count() == Run.objects.count() == TaskDatabase.objects.count() == 0
    assert AlgorithmPort.objects.count() == 0
    (event, data, _room), = events  # fmt: skip
    assert event == "kill_containers" and len(data["kill_list"]) == 4  # every open run of the subtree


def test_delete_of_a_finished_task_sends_no_kill(api, world, events, django_capture_on_commit_callbacks):
    task = make_task(world.collab_ab, world.org_a)
    make_run(task, world.org_a, status="completed", finished_at=datetime(2024, 1, 1))
    deleter = user_with(world.org_c, "task.glo.delete")
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/task/{task.pk}", **bearer(deleter)).status_code == 200
    assert events == []


@pytest.mark.parametrize(
    "specs, org, creator, allowed",
    [
        (("task.glo.delete",), "c", False, True),
        (("task.col.delete",), "b", False, True),
        (("task.col.delete",), "c", False, False),
        (("task.org.delete",), "a", False, True),
        (("task.org.delete",), "b", False, False),
        (("task.own.delete",), "a", True, True),
        (("task.own.delete",), "a", False, False),
        (("task.glo.view",), "a", False, False),
    ],
)
def test_delete_permissions(api, world, family, specs, org, creator, allowed):
    if creator:
        user = family["creator"]
        user.rules.add(*rules(*specs))
    else:
        user = user_with({"a": world.org_a, "b": world.org_b, "c": world.org_c}[org], *specs)
    response = api.delete(f"/api/task/{family['parent'].pk}", **bearer(user))
    assert response.status_code == (200 if allowed else 401)
    assert Task.objects.filter(pk=family["parent"].pk).exists() is not allowed


def test_delete_unknown_task_and_by_nodes(api, world, family):
    root = make_user(world.org_a, "Root")
    assert api.delete("/api/task/99999", **bearer(root)).status_code == 404
    assert api.delete(f"/api/task/{family['parent'].pk}", **bearer(world.node_a)).status_code == 401
