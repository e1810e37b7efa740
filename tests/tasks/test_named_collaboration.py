"""POST /api/task names a collaboration: a container's subtask checked by its write alone (without a read
of the collaboration) and the full checks of ``task_create`` ask the engine the same question
(``Principal.names_collaboration``), so they give every caller the same answer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts.catalogue import CONTAINER
from accounts.models import Role, Rule
from tasks import services
from tasks.models import Task
from tests.factories import bearer, make_task
from tests.tasks.conftest import container_headers_from, plain, user_with

pytestmark = pytest.mark.django_db

IMAGE = "repo/algo@sha256:aa"


def _user(org: str, *rules: str) -> Callable:
    return lambda _api, world: bearer(user_with(getattr(world, org), *rules))


def _container(node: str, *, without: str = "") -> Callable:
    """The token of a container that runs a task of the node's collaboration; ``without``: a rule the
    container role no longer holds."""

    def headers(api, world):
        if without:
            resource, scope, operation = without.split(".")
            rule = Rule.objects.get(name=resource, scope=scope, operation=operation)
            Role.objects.get(name=CONTAINER, organization=None).rules.remove(rule)
        node_row = getattr(world, node)
        task = make_task(node_row.collaboration, node_row.organization, node_row.organization, image=IMAGE)
        return container_headers_from(api, node_row, task)

    return headers


def _node(_api, world):
    return bearer(world.node_a)


# Per caller (each names collaboration AB): its headers, its status, and what the subtask checked by its
# write alone did (written: True; left to the full checks: False; not tried, for a user or a node: None).
PRINCIPALS = {
    "member creating tasks": (_user("org_a", "task.col.create"), 201, None),
    "member viewing the collaboration only": (_user("org_a", "collaboration.org.view"), 401, None),
    "outsider creating tasks": (_user("org_c", "task.col.create"), 401, None),
    "outsider viewing every collaboration": (
        _user("org_c", "collaboration.glo.view", "task.col.create"),
        401,
        None,
    ),
    "container of the collaboration": (_container("node_a"), 201, True),
    "container of another collaboration": (_container("node_c"), 401, False),
    "container whose role views no collaboration": (
        _container("node_a", without="collaboration.ORGANIZATION.VIEW"),
        401,
        False,
    ),
    "node": (_node, 401, None),
}


def _answer(response) -> tuple:
    """What a client learns: the status, and the body (of a created task, what it was made of)."""
    body = response.json()
    if response.status_code != 201:
        return response.status_code, body
    task = Task.objects.get(pk=body["id"])
    runs = sorted(task.runs.values_list("organization_id", flat=True))
    made = (task.collaboration_id, task.parent_id, task.init_org_id, task.init_user_id, task.image)
    return response.status_code, made, runs


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_the_subtask_checked_by_its_write_and_the_full_checks_answer_alike(
    api, world, monkeypatch, principal
):
    make_headers, status, alone = PRINCIPALS[principal]
    headers = make_headers(api, world)
    body = {
        "image": IMAGE,
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": world.org_a.pk, "input": plain()}],
    }
    checked_by_its_write = services._subtask_checked_by_its_write
    written_alone = []

    def recorded(*args, **kwargs):
        task = checked_by_its_write(*args, **kwargs)
        written_alone.append(task is not None)
        return task

    monkeypatch.setattr(services, "_subtask_checked_by_its_write", recorded)
    fast = _answer(api.post("/api/task", body, format="json", **headers))
    monkeypatch.setattr(services, "_subtask_checked_by_its_write", lambda *_: None)
    full = _answer(api.post("/api/task", body, format="json", **headers))

    assert fast[0] == status
    assert fast == full
    assert written_alone == ([] if alone is None else [alone])
