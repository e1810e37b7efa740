"""A thief of a node's API key (or token) takes container tokens for the tasks its node runs. Once the
node's logins all end (a new API key), those tokens stop working too, though their tasks still run:
else the thief would act in the tasks' names (create subtasks, read their results) as long as they run."""

from __future__ import annotations

import pytest

from tasks.models import Task
from tests.collaborations.helpers import headers_of
from tests.factories import make_task
from tests.tasks.conftest import container_headers_from
from tests.test_attacker_sweep import _state

pytestmark = pytest.mark.django_db


def _subtask(task: Task) -> dict:
    return {
        "name": "subtask", "image": task.image, "collaboration_id": task.collaboration_id,
        "organizations": [{"id": task.init_org_id, "input": ""}], "databases": [],
    }  # fmt: skip


def test_a_new_api_key_ends_the_container_tokens_its_node_took(api, world):
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    stolen = container_headers_from(api, world.node_a, task)
    assert api.get(f"/api/task/{task.pk}", **stolen).status_code == 200

    reset = api.post(
        "/api/recover/node",
        {"id": world.node_a.pk},
        format="json",
        **headers_of(world.org_a, "Organization Admin"),
    )
    assert reset.status_code == 200
    before = _state()

    assert api.get(f"/api/task/{task.pk}", **stolen).status_code == 401
    assert api.post("/api/task", _subtask(task), format="json", **stolen).status_code == 401
    assert _state() == before
    assert Task.objects.filter(parent=task).count() == 0


def test_a_container_token_of_the_node_s_current_logins_works(api, world):
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    api.post("/api/recover/node", {"id": world.node_a.pk}, format="json", **headers_of(world.org_a, "Root"))
    headers = container_headers_from(api, world.node_a, task)  # taken after the new key

    assert api.get(f"/api/task/{task.pk}", **headers).status_code == 200
    response = api.post("/api/task", _subtask(task), format="json", **headers)
    assert response.status_code == 201, response.json()
