"""Fixtures of the task tests: users with chosen rules, container identities, captured events."""

from __future__ import annotations

import base64
import json

import pytest

from accounts.models import Rule
from accounts.tokens import decode
from nodes.events import event_emitted
from nodes.models import Node
from tasks.models import Task
from tests.factories import bearer, make_user

SCOPE_NAMES = {"glo": "GLOBAL", "col": "COLLABORATION", "org": "ORGANIZATION", "own": "OWN"}
OP_NAMES = {"view": "VIEW", "create": "CREATE", "delete": "DELETE", "send": "SEND", "edit": "EDIT"}


def plain(payload: object = None) -> str:
    """Unencrypted task input as the client sends it: base64 of the JSON."""
    return base64.b64encode(json.dumps(payload or {"method": "avg"}).encode()).decode()


ENCRYPTED = "c2VjcmV0IGtleQ==$aXY=$/w=="  # three base64 parts; the payload bytes are not UTF-8


def rules(*specs: str) -> list[Rule]:
    """Rules from "task.col.view"-style names."""
    found = []
    for spec in specs:
        resource, scope, operation = spec.split(".")
        found.append(Rule.objects.get(name=resource, scope=SCOPE_NAMES[scope], operation=OP_NAMES[operation]))
    return found


def user_with(org, *specs: str, roles: tuple[str, ...] = ()):
    return make_user(org, *roles, rules=rules(*specs))


def container_identity(task: Task, node, image: str | None = None) -> dict:
    """The identity the server puts in a container token for ``task`` run by ``node``."""
    return {
        "client_type": "container",
        "node_id": node.pk,
        "node_generation": Node.objects.get(pk=node.pk).token_generation,
        "organization_id": node.organization_id,
        "collaboration_id": task.collaboration_id,
        "study_id": task.study_id,
        "store_id": task.algorithm_store_id,
        "task_id": task.pk,
        "image": image or task.image,
        "databases": [],
    }


def container_headers_from(api, node, task) -> dict:
    """Headers with a container token obtained the way a node obtains it."""
    response = api.post(
        "/api/token/container", {"task_id": task.pk, "image": task.image}, format="json", **bearer(node)
    )
    assert response.status_code == 200, response.json()
    token = response.json()["container_token"]
    assert decode(token)["sub"]["task_id"] == task.pk
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def events():
    """The (event, data, room) triples emitted while the test runs (sent on commit)."""
    captured: list[tuple[str, object, str]] = []

    def receive(sender, event, data, room, namespace, **kwargs):  # noqa: ARG001 - signal signature
        captured.append((event, data, room))

    event_emitted.connect(receive, weak=False)
    yield captured
    event_emitted.disconnect(receive)


@pytest.fixture
def researcher(world):
    """A user of organization A with the built-in Researcher role (task.col.create, col views)."""
    return make_user(world.org_a, "Researcher")


def task_body(world, **overrides) -> dict:
    body = {
        "name": "t1",
        "description": "d",
        "image": "some/image",
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": world.org_a.pk, "input": plain()}, {"id": world.org_b.pk, "input": plain()}],
        "databases": [{"label": "default", "query": "q"}],
    }
    body.update(overrides)
    return body
