"""An algorithm container runs the code of whoever made its task: it reads the tasks, runs and results
of its own job (its task, the subtasks it made, their parent), not those of the collaboration's other
jobs (vantage6: every task of the collaboration, by the container role's collaboration-scope rules)."""

from __future__ import annotations

import pytest

from tests.factories import make_task, make_user
from tests.security.unreadable import assert_reads_none_of
from tests.tasks.conftest import container_headers_from

pytestmark = pytest.mark.django_db


@pytest.fixture
def jobs(world):
    """A task of A (the container's) with a subtask, and another job of B's in the same collaboration
    whose run at B holds a result."""
    own = make_task(world.collab_ab, world.org_a, world.org_a, init_user=make_user(world.org_a))
    subtask = make_task(world.collab_ab, world.org_a, world.org_b, parent=own, init_user=own.init_user)
    others = make_task(world.collab_ab, world.org_b, world.org_b, init_user=make_user(world.org_b))
    others.runs.update(result="c2VjcmV0")
    return own, subtask, others


def test_a_container_reads_nothing_of_another_job(api, world, jobs):
    own, _, others = jobs
    run = others.runs.get()
    container = container_headers_from(api, world.node_a, own)

    assert_reads_none_of(
        api,
        container,
        {"/api/task": others.pk, "/api/run": run.pk, "/api/result": run.pk},
        [
            f"/api/run?task_id={others.pk}",
            f"/api/result?task_id={others.pk}",
            f"/api/task?job_id={others.pk}",
        ],
    )
    assert api.get(f"/api/task/{others.pk}/status", **container).status_code in (401, 404)


def test_a_container_reads_its_own_job(api, world, jobs):
    own, subtask, _ = jobs
    container = container_headers_from(api, world.node_a, own)

    assert api.get(f"/api/task/{subtask.pk}", **container).status_code == 200
    assert api.get(f"/api/task/{subtask.pk}/status", **container).status_code == 200
    results = api.get(f"/api/result?task_id={subtask.pk}", **container)
    assert [row["id"] for row in results.json()["data"]] == [subtask.runs.get().pk]
    listed = api.get("/api/task", **container).json()["data"]
    assert sorted(row["id"] for row in listed) == [own.pk, subtask.pk]
