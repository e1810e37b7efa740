"""A run names its blobs by UUID, and whoever may view a run reads those UUIDs. A researcher of another
organization in the collaboration names the result blob of someone else's run as the input of a task of
their own and deletes that task, or a node (its key stolen) names it as its run's result and lets the
clean-up wipe it: the blob stays while another run still names it, and the owner still downloads it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks.models import Run
from tasks.services import runs_cleanup
from tests.factories import bearer, make_collab, make_node, make_run, make_task, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def victims_result(api, world, settings, tmp_path) -> tuple[Run, str]:
    """A run of organization B whose result is a blob uploaded by B's node."""
    settings.LARGE_RESULT_STORE = f"file://{tmp_path}"
    octets = "application/octet-stream"
    uploaded = api.generic(
        "POST", "/api/blobstream", b"B's result", content_type=octets, **bearer(world.node_b)
    )
    assert uploaded.status_code == 201
    name = uploaded.json()["uuid"]
    task = make_task(world.collab_ab, world.org_b)
    run = make_run(task, world.org_b, status="completed", result=name, blob_storage_used=True)
    return run, name


def _still_there(api, world, name: str) -> None:
    download = api.get(f"/api/blobstream/{name}", **bearer(make_user(world.org_b, "Researcher")))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"B's result"


def test_a_task_naming_anothers_blob_takes_it_with_it_when_deleted_no_more(
    api, world, victims_result, django_capture_on_commit_callbacks
):
    run, name = victims_result
    attacker = bearer(make_user(world.org_a, "Researcher"))
    seen = api.get(f"/api/result/{run.pk}", **attacker)
    assert seen.status_code == 200 and seen.json()["result"] == name  # what the attacker reads
    body = {
        "collaboration_id": world.collab_ab.pk,
        "image": "some/image",
        "organizations": [{"id": world.org_a.pk, "input": name}],
    }
    created = api.post("/api/task", body, format="json", **attacker)
    assert created.status_code == 201, created.json()

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/task/{created.json()['id']}", **attacker).status_code == 200

    _still_there(api, world, name)


def test_a_node_naming_anothers_blob_as_its_result_does_not_have_it_cleaned_up(
    api, world, victims_result, django_capture_on_commit_callbacks
):
    _, name = victims_result
    # A run of a task made while the store is on (as POST /task makes them).
    own_task = make_task(world.collab_ab, world.org_a)
    own_run = make_run(own_task, world.org_a, status="active", blob_storage_used=True)
    node_a = bearer(world.node_a)
    patched = api.patch(
        f"/api/run/{own_run.pk}", {"result": name, "status": "completed"}, format="json", **node_a
    )
    assert patched.status_code == 200, patched.json()
    Run.objects.filter(pk=own_run.pk).update(finished_at=timezone.now() - timedelta(days=40))

    with django_capture_on_commit_callbacks(execute=True):
        assert runs_cleanup(days=30, include_input=False) == 1

    _still_there(api, world, name)


def test_a_run_elsewhere_naming_anothers_blob_does_not_lock_its_owners_out(api, world, settings, tmp_path):
    settings.LARGE_RESULT_STORE = f"file://{tmp_path}"
    # Organization A's run in a collaboration B is not in, older than B's result.
    elsewhere = make_collab(world.org_a, world.org_c, name="X")
    node_a_elsewhere, _ = make_node(world.org_a, elsewhere, "node-a-x")
    older_run = make_run(
        make_task(elsewhere, world.org_a), world.org_a, status="active", blob_storage_used=True
    )
    octets = "application/octet-stream"
    uploaded = api.generic(
        "POST", "/api/blobstream", b"B's result", content_type=octets, **bearer(world.node_b)
    )
    name = uploaded.json()["uuid"]
    make_run(
        make_task(world.collab_ab, world.org_b),
        world.org_b,
        status="completed",
        result=name,
        blob_storage_used=True,
    )

    patched = api.patch(
        f"/api/run/{older_run.pk}", {"result": name}, format="json", **bearer(node_a_elsewhere)
    )
    # A node views the runs of its own collaboration alone: B's blob, named in AB only, is not its to name.
    assert patched.status_code == 400, patched.json()

    _still_there(api, world, name)
