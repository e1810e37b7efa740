"""A list of tasks with their results or runs, as the client asks for it (``task.list(include_results=True)``
sends ``per_page=20``), is bounded by its rows' bytes (tests/tasks/test_page_bytes.py); finding the rows too
large for the page must not sum the runs of every task the caller sees: at 100,000 tasks of five runs that
took 2 s for each such list of any user."""

from __future__ import annotations

import pytest
from django.db import connection

from tasks.models import Run, Task
from tests.factories import bearer, make_user

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's row counters"),
]

TASKS = 400


def _run_rows_read() -> int:
    """The rows of table ``run`` read in this transaction so far (the requests of the test run in it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
            "WHERE relname = 'run'"
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("include", ["results", "runs", "runs,results"])
def test_bounding_a_page_of_tasks_reads_the_runs_of_that_page_alone(api, world, include):
    tasks = Task.objects.bulk_create(
        Task(collaboration=world.collab_ab, init_org=world.org_a, image="some/image", job_id=n + 1)
        for n in range(TASKS)
    )
    Run.objects.bulk_create(
        Run(task=task, organization=org, input="i" * 100, result="r" * 100)
        for task in tasks
        for org in (world.org_a, world.org_b)
    )
    researcher = bearer(make_user(world.org_a, "Researcher"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE task, run")  # the statistics a server keeps of its tables
    before = _run_rows_read()

    response = api.get(f"/api/task?per_page=20&include={include}", **researcher)

    assert response.status_code == 200
    assert len(response.json()["data"]) == 20
    assert _run_rows_read() - before < 100  # the page's 40 runs, not the 800 of every task
