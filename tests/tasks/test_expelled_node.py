"""A node whose organization was taken out of its collaboration, and its algorithm containers, reach
nothing there any more, and reach it again once the organization is a member again."""

from __future__ import annotations

import pytest

from tasks.models import AlgorithmPort, Run, Task
from tests.collaborations.helpers import headers_of
from tests.factories import bearer, make_run, make_task, make_user
from tests.tasks.conftest import container_headers_from, plain, task_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(world):
    """Task t in AB (by A) with runs ra (A) and rb (B); node B executes rb."""
    t = make_task(world.collab_ab, world.org_a, init_user=make_user(world.org_a))
    return {"t": t, "ra": make_run(t, world.org_a), "rb": make_run(t, world.org_b)}


def _membership(api, world, method: str) -> None:
    response = getattr(api, method)(
        f"/api/collaboration/{world.collab_ab.pk}/organization",
        {"id": world.org_b.pk},
        format="json",
        **headers_of(world.org_a, "Root"),
    )
    assert response.status_code in (200, 201), response.json()


# (method, path, body, status while a member): every request of a node into its collaboration.
def _cases(world, running) -> list[tuple[str, str, dict | None, int]]:
    t, rb = running["t"], running["rb"]
    ab = world.collab_ab.pk
    return [
        ("get", f"/api/task/{t.pk}", None, 200),
        ("get", f"/api/task/{t.pk}?include=results", None, 200),
        ("get", f"/api/task?collaboration_id={ab}", None, 200),
        ("get", f"/api/run/{rb.pk}", None, 200),
        ("get", f"/api/run?task_id={t.pk}", None, 200),
        ("get", f"/api/result/{rb.pk}", None, 200),
        ("get", f"/api/result?task_id={t.pk}", None, 200),
        ("get", f"/api/collaboration/{ab}", None, 200),
        ("get", f"/api/organization/{world.org_a.pk}", None, 200),
        ("patch", f"/api/run/{rb.pk}", {"log": "x"}, 200),
        ("post", "/api/port", {"run_id": rb.pk, "port": 8888, "label": "l"}, 201),
        ("delete", f"/api/port?run_id={rb.pk}", None, 200),
        ("post", "/api/token/container", {"task_id": t.pk, "image": t.image}, 200),
    ]


def _container_cases(world, running) -> list[tuple[str, str, dict | None, int]]:
    t, rb = running["t"], running["rb"]
    subtask = task_body(world, image=t.image, organizations=[{"id": world.org_b.pk, "input": plain()}])
    return [
        ("get", f"/api/task/{t.pk}", None, 200),
        ("get", f"/api/run/{rb.pk}", None, 200),
        ("get", f"/api/run?task_id={t.pk}", None, 200),
        ("get", f"/api/result?task_id={t.pk}", None, 200),
        ("get", f"/api/organization/{world.org_a.pk}", None, 200),
        ("post", "/api/task", subtask, 201),
    ]


def _statuses(api, world, running, cases=_cases, headers=None) -> list[tuple[str, int]]:
    headers = headers or bearer(world.node_b)
    statuses = []
    for method, path, body, _ in cases(world, running):
        if body is None:
            response = getattr(api, method)(path, **headers)
        else:
            response = getattr(api, method)(path, body, format="json", **headers)
        statuses.append((f"{method} {path}", response.status_code))
    return statuses


def test_an_expelled_node_reaches_nothing_in_its_collaboration_until_readmitted(api, world, running):
    member = [(f"{method} {path}", status) for method, path, _, status in _cases(world, running)]
    assert _statuses(api, world, running) == member
    AlgorithmPort.objects.create(run_id=running["rb"].pk, port=1)

    _membership(api, world, "delete")
    log, ports = Run.objects.get(pk=running["rb"].pk).log, AlgorithmPort.objects.count()
    assert _statuses(api, world, running) == [(request, 401) for request, _ in member]
    # Nothing it sent was written.
    assert (Run.objects.get(pk=running["rb"].pk).log, AlgorithmPort.objects.count()) == (log, ports)

    _membership(api, world, "post")
    assert _statuses(api, world, running) == member


def test_an_expelled_nodes_containers_reach_nothing_there_until_readmitted(api, world, running):
    headers = container_headers_from(api, world.node_b, running["t"])
    member = [(f"{method} {path}", status) for method, path, _, status in _container_cases(world, running)]
    assert _statuses(api, world, running, _container_cases, headers) == member

    _membership(api, world, "delete")
    tasks = Task.objects.count()
    assert _statuses(api, world, running, _container_cases, headers) == [
        (request, 401) for request, _ in member
    ]
    assert Task.objects.count() == tasks

    _membership(api, world, "post")
    assert _statuses(api, world, running, _container_cases, headers) == member


def test_an_expelled_node_still_logs_in_and_reads_its_own_node(api, world):
    """vantage6 nodes retry their login forever: the login works, the node only sees itself."""
    _membership(api, world, "delete")
    login = api.post("/api/token/node", {"api_key": world.keys[world.node_b.pk]}, format="json")
    assert login.status_code == 200, login.json()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {login.json()['access_token']}"}
    response = api.get(f"/api/node/{world.node_b.pk}", **headers)
    assert (response.status_code, response.json()["id"]) == (200, world.node_b.pk)
