"""A container token works only while its task runs, on a node that is still in place."""

# The ways of ending a container's reason share one signature; not every one needs every argument.
# ruff: noqa: ARG001

from __future__ import annotations

import pytest

from tasks.models import Run, Task
from tests.collaborations.helpers import headers_of
from tests.factories import bearer, make_run, make_task, make_user
from tests.tasks.conftest import container_headers_from, task_body

pytestmark = pytest.mark.django_db

ENDED = {"msg": "This container token is no longer valid"}


@pytest.fixture
def running(world):
    """Task t (AB, by A) with runs ra (A) and rb (B), and the container token node B got for it."""
    t = make_task(world.collab_ab, world.org_a, init_user=make_user(world.org_a))
    ra, rb = make_run(t, world.org_a), make_run(t, world.org_b)
    return {"t": t, "ra": ra, "rb": rb}


def reads(running) -> list[str]:
    t, rb = running["t"], running["rb"]
    return [
        f"/api/task/{t.pk}",
        f"/api/run?task_id={t.pk}",
        f"/api/run/{rb.pk}",
        f"/api/result?task_id={t.pk}",
    ]


def _removed_from_ab(api, world, member: str, pk: int) -> None:
    """Collaboration AB's admin takes its ``member`` (``organization`` or ``node``) ``pk`` out of it."""
    response = api.delete(
        f"/api/collaboration/{world.collab_ab.pk}/{member}",
        {"id": pk},
        format="json",
        **headers_of(world.org_a, "Collaboration Admin"),
    )
    assert response.status_code == 200


def _organization_leaves(api, world, running) -> None:
    _removed_from_ab(api, world, "organization", world.org_b.pk)


def _node_deleted(api, world, running) -> None:
    response = api.delete(f"/api/node/{world.node_b.pk}", **headers_of(world.org_a, "Root"))
    assert response.status_code == 200


def _node_detached(api, world, running) -> None:
    _removed_from_ab(api, world, "node", world.node_b.pk)


def _task_finished(api, world, running) -> None:
    for node, run in ((world.node_a, running["ra"]), (world.node_b, running["rb"])):
        response = api.patch(f"/api/run/{run.pk}", {"status": "completed"}, format="json", **bearer(node))
        assert response.status_code == 200, response.json()


def _task_failed(api, world, running) -> None:
    response = api.patch(
        f"/api/run/{running['ra'].pk}", {"status": "crashed"}, format="json", **bearer(world.node_a)
    )
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    "end", [_organization_leaves, _node_deleted, _node_detached, _task_finished, _task_failed]
)
def test_a_container_token_ends_with_its_reason(api, world, running, end):
    headers = container_headers_from(api, world.node_b, running["t"])
    for path in reads(running):
        assert api.get(path, **headers).status_code == 200, path

    end(api, world, running)

    for path in reads(running):
        response = api.get(path, **headers)
        assert (response.status_code, response.json()) == (401, ENDED), path
    body = task_body(world, image=running["t"].image, organizations=[{"id": world.org_a.pk, "input": "x"}])
    tasks = Task.objects.count()
    subtask = api.post("/api/task", body, format="json", **headers)
    assert (subtask.status_code, subtask.json()) == (401, ENDED)
    assert Task.objects.count() == tasks


def test_a_sibling_still_running_keeps_the_token(api, world, running):
    """The token of node B's container works while the task runs, whatever node A's run does."""
    headers = container_headers_from(api, world.node_b, running["t"])
    Run.objects.filter(pk=running["ra"].pk).update(status="active")
    assert api.get(f"/api/task/{running['t'].pk}", **headers).status_code == 200


def test_a_forged_identity_without_its_node_is_refused(api, world, running):
    """Tokens are signed, but one issued with a node id that never matched is refused as well."""
    from tests.tasks.conftest import container_identity

    identity = {**container_identity(running["t"], world.node_b), "node_id": world.node_c.pk}
    response = api.get(f"/api/task/{running['t'].pk}", **bearer(identity))
    assert (response.status_code, response.json()) == (401, ENDED)


def test_a_forged_identity_of_a_node_with_another_organization_is_refused(api, world, running):
    """Node B's identity naming organization A, which is in the collaboration and has a run of the task."""
    from tests.tasks.conftest import container_identity

    identity = {**container_identity(running["t"], world.node_b), "organization_id": world.org_a.pk}
    response = api.get(f"/api/task/{running['t'].pk}", **bearer(identity))
    assert (response.status_code, response.json()) == (401, ENDED)


def test_a_forged_identity_naming_another_collaboration_than_its_task_s_is_refused(api, world, running):
    """Node C's identity in its own collaboration, for a task of AB that has a run of organization C."""
    from tests.tasks.conftest import container_identity

    make_run(running["t"], world.org_c)
    identity = container_identity(running["t"], world.node_c)
    identity["collaboration_id"] = world.collab_c.pk
    response = api.get(f"/api/task/{running['t'].pk}", **bearer(identity))
    assert (response.status_code, response.json()) == (401, ENDED)


@pytest.mark.parametrize("end", [_organization_leaves, _node_deleted, _task_failed, "own run ended"])
def test_the_blob_store_closes_with_the_token(api, world, running, settings, tmp_path, end):
    """Uploading and reading blobs with the token of a container whose reason ended: refused, nothing kept,
    also while the task goes on for another organization's run."""
    settings.LARGE_RESULT_STORE = f"file://{tmp_path}"
    headers = container_headers_from(api, world.node_b, running["t"])
    stored = api.generic("POST", "/api/blobstream", b"x", content_type="application/octet-stream", **headers)
    assert stored.status_code == 201, stored.json()
    name = stored.json()["uuid"]
    Run.objects.filter(pk=running["rb"].pk).update(input=name, blob_storage_used=True)
    assert api.get(f"/api/blobstream/{name}", **headers).status_code == 200

    if end == "own run ended":
        rb = running["rb"].pk
        ended = api.patch(f"/api/run/{rb}", {"status": "completed"}, format="json", **bearer(world.node_b))
        assert ended.status_code == 200, ended.json()
    else:
        end(api, world, running)

    upload = api.generic("POST", "/api/blobstream", b"y", content_type="application/octet-stream", **headers)
    assert (upload.status_code, upload.json()) == (401, ENDED)
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]
    download = api.get(f"/api/blobstream/{name}", **headers)
    assert (download.status_code, download.json()) == (401, ENDED)
