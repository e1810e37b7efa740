"""The status and end of a task follow its runs: in details, lists, the status filter, subqueries; the
services that write runs keep them stored on the task (also under concurrent updates), and the migration
that added them filled them in."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tasks.models import FAILED_STATUSES, Run, Task, TaskStatus, task_status
from tests.conftest import requires_services
from tests.factories import (
    bearer,
    full_page,
    make_collab,
    make_node,
    make_org,
    make_run,
    make_task,
    make_user,
)

pytestmark = pytest.mark.django_db

T1, T2 = datetime(2024, 5, 1, 10, 0, 0), datetime(2024, 5, 2, 11, 30, 0, 250000)


def reference(runs: list[tuple[str, datetime | None]]) -> tuple[str, str | None]:
    """The rules of vantage6, spelled out: status and finished_at of a task with these runs."""
    failures = {status for status, _ in runs if status in FAILED_STATUSES}
    statuses = {status for status, _ in runs}
    if len(failures) == 1:
        status = failures.pop()
    elif failures:
        status = TaskStatus.FAILED
    else:
        open_ones = [
            s for s in (TaskStatus.ACTIVE, TaskStatus.INITIALIZING, TaskStatus.PENDING) if s in statuses
        ]
        status = open_ones[0] if open_ones else TaskStatus.COMPLETED
    ends = [end for _, end in runs if end is not None]
    completed = runs and statuses == {TaskStatus.COMPLETED}
    return str(status), (max(ends).isoformat() if completed and ends else None)


C, P, INIT, A = TaskStatus.COMPLETED, TaskStatus.PENDING, TaskStatus.INITIALIZING, TaskStatus.ACTIVE
CASES = [
    [],
    [(C, T1)],
    [(C, T1), (C, T2)],
    [(C, None)],
    [(P, None)],
    [(P, None), (INIT, None)],
    [(INIT, None), (A, None), (C, T2)],
    [(C, T1), (P, None)],
    [(TaskStatus.CRASHED, T1)],
    [(TaskStatus.CRASHED, T1), (TaskStatus.CRASHED, T2)],
    [(TaskStatus.CRASHED, T1), (TaskStatus.KILLED, T2)],
    [(TaskStatus.NO_DOCKER_IMAGE, T1), (C, T2), (A, None)],
    [(TaskStatus.START_FAILED, None), (P, None)],
    [(TaskStatus.FAILED, T1), (TaskStatus.NOT_ALLOWED, T1), (TaskStatus.UNKNOWN_ERROR, T2)],
]


@pytest.fixture
def viewer(world):
    return make_user(world.org_a, "Viewer")


def task_with_runs(world, runs) -> Task:
    task = make_task(world.collab_ab, world.org_a)
    for status, end in runs:
        make_run(task, world.org_a, status=status, finished_at=end)
    return task


@pytest.mark.parametrize("runs", CASES, ids=lambda runs: "+".join(s for s, _ in runs) or "no-runs")
def test_status_and_end_follow_the_runs_everywhere(api, world, viewer, runs):
    task = task_with_runs(world, runs)
    status, finished_at = reference(runs)
    headers = bearer(viewer)

    detail = api.get(f"/api/task/{task.pk}", **headers).json()
    assert (detail["status"], detail["finished_at"]) == (status, finished_at)
    assert api.get(f"/api/task/{task.pk}/status", **headers).json() == {"status": status}
    listed = {row["id"]: row for row in api.get("/api/task?per_page=100", **headers).json()["data"]}
    assert (listed[task.pk]["status"], listed[task.pk]["finished_at"]) == (status, finished_at)
    embedded = api.get(f"/api/run?task_id={task.pk}&include=task", **headers).json()["data"]
    assert all(
        (row["task"]["status"], row["task"]["finished_at"]) == (status, finished_at) for row in embedded
    )


def test_the_status_filter_selects_by_the_derived_status(api, world, viewer):
    tasks = {i: task_with_runs(world, runs) for i, runs in enumerate(CASES)}
    headers = bearer(viewer)
    for status in TaskStatus:
        response = api.get(f"/api/task?status={status.value}&per_page=100", **headers)
        expected = {task.pk for i, task in tasks.items() if reference(CASES[i])[0] == status}
        assert {row["id"] for row in response.json()["data"]} == expected
        assert response["total-count"] == str(len(expected))


def test_the_status_works_inside_a_subquery_with_other_table_aliases(world):
    failed = task_with_runs(world, [(TaskStatus.CRASHED, T1)])
    task_with_runs(world, [(C, T1)])
    runs = Run.objects.filter(task__in=Task.objects.filter(status=TaskStatus.CRASHED))
    assert {run.task_id for run in runs} == {failed.pk}
    children = Task.objects.filter(parent__in=Task.objects.filter(status="crashed"))
    assert list(children) == []


def test_a_task_list_page_costs_the_same_queries_for_any_size(api, world, viewer):
    headers = bearer(viewer)
    task_with_runs(world, CASES[2])
    api.get("/api/task", **headers)
    with CaptureQueriesContext(connection) as one:
        api.get("/api/task?per_page=1", **headers)
    for runs in CASES:
        task_with_runs(world, runs)
    path = full_page(api, "/api/task", headers)
    with CaptureQueriesContext(connection) as many:
        api.get(path, **headers)
    assert len(one) == len(many)


def stored_and_shown(api, task, headers) -> tuple[tuple, tuple]:
    """The task's (status, finished_at) as its runs give them, and as the API shows them."""
    runs = list(Run.objects.filter(task=task).values_list("status", "finished_at"))
    shown = api.get(f"/api/task/{task.pk}", **headers).json()
    return reference(runs), (shown["status"], shown["finished_at"])


END_A, END_B = "2024-05-01T10:00:00", "2024-05-02T11:30:00"
# Steps of the nodes of organizations A and B on a task with a run for each; "kill" is the user's kill.
UPDATES = {
    "both complete": [
        ("a", {"status": "initializing"}),
        ("a", {"status": "active", "started_at": END_A}),
        ("b", {"status": "active", "started_at": END_A}),
        ("b", {"status": "completed", "finished_at": END_B, "result": "cg=="}),
        ("a", {"status": "completed", "finished_at": END_A, "result": "cg=="}),
    ],
    "a crash fails the run not started": [("a", {"status": "crashed", "finished_at": END_A})],
    "one failure while the other runs": [
        ("b", {"status": "active", "started_at": END_A}),
        ("a", {"status": "non-existing Docker image", "finished_at": END_A}),
        ("b", {"status": "completed", "finished_at": END_B}),
    ],
    "a final status first, its end later": [
        ("a", {"status": "completed"}),
        ("b", {"status": "completed", "finished_at": END_B}),
        ("a", {"status": "completed", "finished_at": END_A}),
    ],
    "killed": [("a", {"status": "active", "started_at": END_A}), ("kill", None)],
}


@pytest.mark.parametrize("case", UPDATES)
def test_the_stored_status_follows_the_updates_of_the_runs(api, world, viewer, case):
    task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    runs = {run.organization_id: run for run in task.runs.all()}
    headers, killer = bearer(viewer), bearer(make_user(world.org_a, "Root"))
    for who, body in UPDATES[case]:
        if who == "kill":
            response = api.post("/api/kill/task", {"id": task.pk}, format="json", **killer)
        else:
            node, org = (world.node_a, world.org_a) if who == "a" else (world.node_b, world.org_b)
            response = api.patch(f"/api/run/{runs[org.pk].pk}", body, format="json", **bearer(node))
        assert response.status_code == 200, response.json()
        expected, shown = stored_and_shown(api, task, headers)
        assert shown == expected
        task.refresh_from_db()
        assert task.status == expected[0]


def together(requests: list) -> list[int]:
    """Make these requests (each a function of an API client) at the same moment, each on its own
    connection; their status codes."""
    start, answers = threading.Barrier(len(requests)), []

    def call(request) -> None:
        try:
            client = APIClient()
            start.wait()
            answers.append(request(client).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(request,)) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def completion(node, run: Run):
    body, headers = {"status": "completed", "finished_at": END_A}, bearer(node)
    return lambda api: api.patch(f"/api/run/{run.pk}", body, format="json", **headers)


def race(size: int, name: str):
    orgs = [make_org(f"{name}-{i}") for i in range(size)]
    collab = make_collab(*orgs)
    return orgs, collab, [make_node(org, collab, f"{name}-node-{i}")[0] for i, org in enumerate(orgs)]


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_of_the_runs_of_one_task_leave_its_status_right():
    """The nodes of a task report at the same moment: the last one to commit sees the others' runs, so
    the task ends completed, not with the status one of them saw."""
    orgs, collab, nodes = race(6, "race")
    for _ in range(3):
        task = make_task(collab, orgs[0], *orgs)
        runs = {run.organization_id: run for run in task.runs.all()}
        assert together([completion(node, runs[node.organization_id]) for node in nodes]) == [200] * 6
        task.refresh_from_db()
        assert (task.status, task.finished_at.isoformat()) == ("completed", END_A)


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_kill_racing_the_nodes_updates_leaves_a_status_that_follows_the_runs():
    """Kills lock the rows of the task and its children before their runs, as updates do: no deadlock
    (which PostgreSQL would answer with an error, a 500), and the stored status is that of the runs."""
    orgs, collab, nodes = race(5, "kill-race")
    headers = bearer(make_user(orgs[0], "Root"))
    for _ in range(3):
        task = make_task(collab, orgs[0], *orgs)
        make_task(collab, orgs[0], orgs[1], parent=task)  # a child, killed with it
        runs = {run.organization_id: run for run in task.runs.all()}
        kill = lambda api, pk=task.pk: api.post("/api/kill/task", {"id": pk}, format="json", **headers)  # noqa: E731
        answers = together([kill, *(completion(node, runs[node.organization_id]) for node in nodes)])
        assert set(answers) <= {200, 400}, answers
        for one in Task.objects.filter(Q(pk=task.pk) | Q(parent=task)):
            assert (one.status, one.finished_at) == task_status(one.runs.values_list("status", "finished_at"))


@pytest.mark.django_db(transaction=True)
def test_the_migration_stores_the_status_of_existing_tasks(world):
    before, after = [("tasks", "0002_periodic_job")], [("tasks", "0003_task_status")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    OldTask, OldRun = old.get_model("tasks", "Task"), old.get_model("tasks", "Run")
    tasks = {}
    for i, runs in enumerate(CASES):
        tasks[i] = OldTask.objects.create(
            collaboration_id=world.collab_ab.pk, init_org_id=world.org_a.pk, image="i", job_id=i
        )
        for status, end in runs:
            OldRun.objects.create(
                task=tasks[i], organization_id=world.org_a.pk, status=status, finished_at=end
            )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    for i, runs in enumerate(CASES):
        task = Task.objects.get(pk=tasks[i].pk)
        shown = (task.status, task.finished_at and task.finished_at.replace(tzinfo=None).isoformat())
        assert shown == reference(runs)
