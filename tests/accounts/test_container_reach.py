"""An algorithm container reaches its own task's collaboration only, not the other collaborations its
organization is a member of."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_collab, make_org, make_task
from tests.tasks.conftest import container_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(world):
    """A container of node A in collaboration AB, and a second collaboration of A's organization (with
    an organization outside AB) holding a task."""
    outsider = make_org("X")
    elsewhere = make_collab(world.org_a, outsider, name="AX")
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    hidden = make_task(elsewhere, world.org_a, world.org_a)
    headers = bearer(container_identity(task, world.node_a))
    return world, elsewhere, outsider, task, hidden, headers


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.json()
    return {row["id"] for row in response.json()["data"]}


def test_a_container_lists_only_its_own_collaboration(api, scene):
    world, _, _, task, _, headers = scene
    assert _ids(api.get("/api/task", **headers)) == {task.pk}
    assert _ids(api.get("/api/organization", **headers)) == {world.org_a.pk, world.org_b.pk}


def test_a_container_cannot_read_the_rows_of_its_organizations_other_collaborations(api, scene):
    _, _, outsider, _, hidden, headers = scene
    for path in (
        f"/api/task/{hidden.pk}",
        f"/api/organization/{outsider.pk}",
        f"/api/run?task_id={hidden.pk}",
    ):
        assert api.get(path, **headers).status_code == 401, path
