"""An organization cannot fill the large result store: its blobs are bounded in total
(``V6_BLOB_QUOTA_MB``), whoever of it uploads (user, node or algorithm container)."""

from __future__ import annotations

import pytest

from tasks.blobs import CHUNK_SIZE
from tests.factories import bearer, make_run, make_task, make_user

pytestmark = pytest.mark.django_db

MIB = 2**20


@pytest.fixture
def store(settings, tmp_path):
    settings.LARGE_RESULT_STORE = f"file://{tmp_path}"
    settings.BLOB_QUOTA_BYTES = 3 * MIB
    return tmp_path


def _upload(api, who, size: int):
    body = b"x" * size
    return api.generic(
        "POST", "/api/blobstream", body, content_type="application/octet-stream", **bearer(who)
    )


def _files(store) -> list[str]:
    return sorted(path.name for path in store.iterdir())


def test_an_organization_cannot_store_more_than_its_bound(api, world, store):
    researcher = make_user(world.org_a, "Researcher")
    first = _upload(api, researcher, 2 * MIB)
    assert first.status_code == 201
    stored = _files(store)

    # More than what is left: refused while it streams in, nothing of it kept.
    for who in (researcher, world.node_a):
        refused = _upload(api, who, 2 * MIB + CHUNK_SIZE // 2)
        assert refused.status_code == 413, refused.content
        assert refused.json() == {
            "msg": "The large result store holds 2 MiB of your organization's; more than 3 MiB is not taken"
        }
        assert _files(store) == stored
    # Other organizations have bounds of their own; what is left still fits.
    assert _upload(api, make_user(world.org_b, "Researcher"), 2 * MIB).status_code == 201
    assert _upload(api, researcher, MIB).status_code == 201


@pytest.mark.usefixtures("store")
def test_deleted_blobs_give_their_room_back(api, world, django_capture_on_commit_callbacks):
    researcher = make_user(world.org_a, "Researcher")
    name = _upload(api, researcher, 3 * MIB).json()["uuid"]
    assert _upload(api, researcher, 1).status_code == 413
    task = make_task(world.collab_ab, world.org_a)
    make_run(task, world.org_a, input=name, blob_storage_used=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/task/{task.pk}", **bearer(make_user(world.org_a, "Root"))).status_code == 200
    assert _upload(api, researcher, 3 * MIB).status_code == 201


@pytest.mark.usefixtures("store")
def test_no_bound_when_it_is_zero(api, world, settings):
    settings.BLOB_QUOTA_BYTES = 0
    researcher = make_user(world.org_a, "Researcher")
    for _ in range(3):
        assert _upload(api, researcher, 2 * MIB).status_code == 201
