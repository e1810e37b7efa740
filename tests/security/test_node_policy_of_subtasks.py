"""A node's policy (``allowed_users``/``allowed_orgs``) holds for the subtasks of a job as for its task:
a researcher that B's node refuses sends the task to A alone, and its algorithm's container on A's node
must not reach B with a subtask in the researcher's name."""

from __future__ import annotations

import pytest

from nodes.models import NodeConfig
from tasks.models import Task
from tests.factories import bearer, make_study, make_user
from tests.tasks.conftest import container_headers_from, plain, task_body

# The policy of B's node, as it names the researcher of A (or not): whether a subtask reaches B.
POLICIES = [
    pytest.param("allowed_users", "999999", False, id="another-user"),
    pytest.param("allowed_orgs", "B", False, id="another-org"),
    pytest.param("allowed_users", "researcher", True, id="the-researcher"),
    pytest.param("allowed_orgs", "A", True, id="the-researchers-org-by-name"),
]


@pytest.mark.parametrize("in_study", [False, True], ids=["collaboration", "study"])
@pytest.mark.parametrize("key, value, allowed", POLICIES)
def test_subtask_to_a_node_that_refuses_the_jobs_user(api, world, in_study, key, value, allowed):
    researcher = make_user(world.org_a, "Researcher")
    NodeConfig.objects.create(
        node=world.node_b, key=key, value=str(researcher.pk) if value == "researcher" else value
    )
    study = make_study(world.collab_ab, world.org_a, world.org_b) if in_study else None
    to_a = [{"id": world.org_a.pk, "input": plain()}]
    to_b = [{"id": world.org_b.pk, "input": plain()}]
    where = {"study_id": study.pk} if study else {}

    # The researcher's own task to B: as the policy says.
    direct = api.post(
        "/api/task", task_body(world, organizations=to_b, **where), format="json", **bearer(researcher)
    )
    assert direct.status_code == (201 if allowed else 400), direct.json()

    # Its task to A alone, and the subtask its container on A's node makes for B.
    response = api.post(
        "/api/task", task_body(world, organizations=to_a, **where), format="json", **bearer(researcher)
    )
    assert response.status_code == 201, response.json()
    parent = Task.objects.get(pk=response.json()["id"])
    before = Task.objects.count()
    body = task_body(world, image=parent.image, organizations=to_b)
    subtask = api.post("/api/task", body, format="json", **container_headers_from(api, world.node_a, parent))
    if allowed:
        assert subtask.status_code == 201, subtask.json()
        assert Task.objects.get(pk=subtask.json()["id"]).init_user_id == researcher.pk
    else:
        assert subtask.status_code == 400, subtask.json()
        assert "node-b" in subtask.json()["msg"]
        assert Task.objects.count() == before
