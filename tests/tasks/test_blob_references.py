"""A run names only blobs its writer may read: a task's input (a user's task, a container's subtask) and
a node's result. Knowing a blob's name (it shows in every run that names it) is not enough: a run of
one's own naming another's blob would show it to whoever views that run, and keep it from deletion."""

from __future__ import annotations

import pytest

from tasks.models import Run, Task
from tasks.selectors import blob_readers
from tests.factories import bearer, loaded_principal, make_run, make_task, make_user
from tests.tasks.conftest import container_headers_from, task_body

pytestmark = pytest.mark.django_db

REFUSED = "names no blob you uploaded or may read; upload it to /api/blobstream first"


@pytest.fixture(autouse=True)
def blob_store(settings, tmp_path):
    settings.LARGE_RESULT_STORE = f"file://{tmp_path}"
    return tmp_path


def upload(api, who, body: bytes) -> str:
    response = api.generic(
        "POST", "/api/blobstream", body, content_type="application/octet-stream", **bearer(who)
    )
    assert response.status_code == 201, response.json()
    return response.json()["uuid"]


def download(api, who, name: str):
    return api.get(f"/api/blobstream/{name}", **bearer(who))


def post_task(api, headers: dict, world, name: str):
    body = task_body(world, organizations=[{"id": world.org_b.pk, "input": name}])
    return api.post("/api/task", body, format="json", **headers)


@pytest.fixture
def result_of_c(api, world) -> str:
    """A result of organization C, reported by its node, in a collaboration A and B are not in."""
    run = make_run(make_task(world.collab_c, world.org_c), world.org_c, blob_storage_used=True)
    name = upload(api, world.node_c, b"C's secret result")
    response = api.patch(f"/api/run/{run.pk}", {"result": name}, format="json", **bearer(world.node_c))
    assert response.status_code == 200, response.json()
    return name


def test_a_researcher_cannot_name_a_blob_of_another_organization(api, world, result_of_c):
    """A researcher of A who learnt the name of C's result (an old view, a log) makes it the input of a
    task for B: B's node, and everyone viewing the task, could then download it."""
    researcher = make_user(world.org_a, "Researcher")
    assert download(api, researcher, result_of_c).status_code == 401
    response = post_task(api, bearer(researcher), world, result_of_c)
    assert response.status_code == 400
    assert response.json()["msg"] == f"Input for organization id={world.org_b.pk} {REFUSED}"
    assert not Task.objects.filter(collaboration=world.collab_ab).exists()
    assert download(api, world.node_b, result_of_c).status_code == 401


def test_a_name_of_no_blob_is_refused_alike(api, world):
    researcher = make_user(world.org_a, "Researcher")
    response = post_task(api, bearer(researcher), world, "0b9a3b4e-5c1d-4f7e-8a2b-6c3d4e5f6a7b")
    assert (response.status_code, response.json()["msg"]) == (
        400,
        f"Input for organization id={world.org_b.pk} {REFUSED}",
    )
    assert not Task.objects.exists()


def test_a_node_cannot_report_another_organizations_blob_as_its_result(api, world, result_of_c):
    run = make_run(make_task(world.collab_ab, world.org_a), world.org_a, blob_storage_used=True)
    response = api.patch(
        f"/api/run/{run.pk}",
        {"result": result_of_c, "status": "completed"},
        format="json",
        **bearer(world.node_a),
    )
    assert (response.status_code, response.json()["msg"]) == (400, f"The result {REFUSED}")
    run.refresh_from_db()
    assert (run.result, run.status) == (None, "pending")
    assert download(api, make_user(world.org_a, "Researcher"), result_of_c).status_code == 401


def test_a_container_cannot_name_another_organizations_blob_in_a_subtask(api, world, result_of_c):
    parent = make_task(world.collab_ab, world.org_a, world.org_a)
    response = post_task(api, container_headers_from(api, world.node_a, parent), world, result_of_c)
    assert (response.status_code, response.json()["msg"]) == (
        400,
        f"Input for organization id={world.org_b.pk} {REFUSED}",
    )
    assert not Task.objects.filter(parent=parent).exists()


def test_own_uploads_and_blobs_of_viewable_runs_are_named(api, world):
    """What the official client and node do: upload, then name the upload (a user's input, a container's
    subtask input, a node's result, reported again); and a blob that a run one may view names."""
    researcher = make_user(world.org_a, "Researcher")
    own = upload(api, researcher, b"input")
    assert download(api, researcher, own).status_code == 200  # an upload no run names yet: its organization's
    assert download(api, world.node_b, own).status_code == 401
    created = post_task(api, bearer(researcher), world, own)
    assert created.status_code == 201, created.json()
    run = Run.objects.get(task_id=created.json()["id"])
    assert run.blob_storage_used and download(api, world.node_b, own).status_code == 200

    result = upload(api, world.node_b, b"result")
    for body in (
        {"result": result, "status": "completed"},
        {"result": result, "finished_at": "2026-01-01T10:00:00Z"},
    ):
        response = api.patch(f"/api/run/{run.pk}", body, format="json", **bearer(world.node_b))
        assert response.status_code == 200, response.json()
    assert download(api, researcher, result).status_code == 200

    # B's result, in a run A's researcher may view, is named again by A's researcher.
    again = post_task(api, bearer(researcher), world, result)
    assert again.status_code == 201, again.json()

    parent = Task.objects.get(pk=again.json()["id"])
    container = container_headers_from(api, world.node_b, parent)
    sub_input = api.generic(
        "POST", "/api/blobstream", b"sub", content_type="application/octet-stream", **container
    )
    subtask = post_task(api, container, world, sub_input.json()["uuid"])
    assert subtask.status_code == 201, subtask.json()


def test_who_may_read_a_blob_is_one_aggregate_over_the_runs_naming_it(
    api, world, result_of_c, django_assert_num_queries
):
    """No run or task is loaded, however many runs name a blob: one statement for the blobs that runs
    name, one more for the uploads no run names yet."""
    for _ in range(3):
        make_run(
            make_task(world.collab_c, world.org_c), world.org_c, blob_storage_used=True, input=result_of_c
        )
    researcher_c = loaded_principal(make_user(world.org_c, "Researcher"))
    researcher_a = make_user(world.org_a, "Researcher")
    own_upload = upload(api, researcher_a, b"A's input")
    unknown = "0b9a3b4e-5c1d-4f7e-8a2b-6c3d4e5f6a7b"

    with django_assert_num_queries(1):
        readers = blob_readers(researcher_c, [result_of_c])
    assert researcher_c.reads_blob(*readers[result_of_c])

    principal_a = loaded_principal(researcher_a)
    with django_assert_num_queries(2):
        readers = blob_readers(principal_a, [result_of_c, own_upload, unknown])
    assert [principal_a.reads_blob(*readers[name]) for name in (result_of_c, own_upload, unknown)] == [
        False,
        True,
        False,
    ]
    assert [readers[name].exists for name in (result_of_c, own_upload, unknown)] == [True, True, False]
