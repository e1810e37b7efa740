"""The derived status and end of a task from its runs: in details, lists, the status filter, subqueries."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks.models import FAILED_STATUSES, Run, Task, TaskStatus
from tests.factories import bearer, make_run, make_task, make_user

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
    runs = Run.objects.filter(task__in=Task.objects.with_status().filter(status=TaskStatus.CRASHED))
    assert {run.task_id for run in runs} == {failed.pk}
    children = Task.objects.with_status().filter(
        parent__in=Task.objects.with_status().filter(status="crashed")
    )
    assert list(children) == []


def test_a_task_list_page_costs_the_same_queries_for_any_size(api, world, viewer):
    headers = bearer(viewer)
    task_with_runs(world, CASES[2])
    api.get("/api/task", **headers)
    with CaptureQueriesContext(connection) as one:
        api.get("/api/task?per_page=1", **headers)
    for runs in CASES:
        task_with_runs(world, runs)
    with CaptureQueriesContext(connection) as many:
        api.get("/api/task?per_page=100", **headers)
    assert len(one) == len(many)
