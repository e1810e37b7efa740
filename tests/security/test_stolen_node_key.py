"""What a node's key, stolen, still reads of its organization's other collaborations (what it writes:
test_node_writes_fields)."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_collab, make_node, make_task
from tests.security.unreadable import assert_reads_none_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_collaboration(world):
    """Organization A also in collaboration AC with C (served by another node of A), with a task of C
    there whose run at A holds a result."""
    ac = make_collab(world.org_a, world.org_c, name="AC")
    make_node(world.org_a, ac, "node-a-in-ac")
    task = make_task(ac, world.org_c, world.org_a)
    task.runs.update(result="c2VjcmV0", input="c2VjcmV0")
    return ac, task


def test_a_node_reads_nothing_of_its_organizations_other_collaborations(api, world, other_collaboration):
    ac, task = other_collaboration
    run = task.runs.get()
    thief = bearer(world.node_a)  # node of A in AB

    assert_reads_none_of(
        api,
        thief,
        {
            "/api/task": task.pk,
            "/api/run": run.pk,
            "/api/result": run.pk,
            "/api/collaboration": ac.pk,
            "/api/organization": world.org_c.pk,
        },
        [
            f"/api/task?collaboration_id={ac.pk}",
            f"/api/run?task_id={task.pk}",
            f"/api/result?task_id={task.pk}",
        ],
    )


@pytest.mark.usefixtures("other_collaboration")
def test_a_node_still_reads_its_own_collaboration(api, world):
    task = make_task(world.collab_ab, world.org_b, world.org_a)
    run = task.runs.get()
    node = bearer(world.node_a)

    assert api.get(f"/api/task/{task.pk}", **node).status_code == 200
    assert api.get(f"/api/result/{run.pk}", **node).status_code == 200
    assert api.get(f"/api/organization/{world.org_b.pk}", **node).status_code == 200
    assert api.get(f"/api/collaboration/{world.collab_ab.pk}", **node).status_code == 200
    open_runs = api.get(f"/api/run?state=open&node_id={world.node_a.pk}&include=task", **node).json()["data"]
    assert [row["id"] for row in open_runs] == [run.pk]
