"""Large results: the blob store (status, streamed upload and download, clean-up with runs)."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest
from django.core.files.storage import storages

from accounts.models import AuditEntry
from tasks.models import Blob, Run
from tests.factories import bearer, make_run, make_task, make_user, store_status
from tests.tasks.conftest import container_identity, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def blob_store(settings, tmp_path):
    settings.LARGE_RESULT_STORE = f"file://{tmp_path}"
    return tmp_path


def upload(api, who, body: bytes):
    return api.generic(
        "POST", "/api/blobstream", body, content_type="application/octet-stream", **bearer(who)
    )


def test_without_a_store_blobs_are_off(api, world, settings):
    settings.LARGE_RESULT_STORE = ""
    for who in (world.node_a, make_user(world.org_a)):
        assert api.get("/api/blobstream/status", **bearer(who)).json() == {"blob_store_enabled": False}
    researcher = make_user(world.org_a, "Researcher")
    assert upload(api, researcher, b"x").status_code == 501
    assert api.get(f"/api/blobstream/{uuid.uuid4()}", **bearer(researcher)).status_code == 501


def test_upload_and_download_round_trip(api, world, blob_store):
    researcher = make_user(world.org_a, "Researcher")
    assert api.get("/api/blobstream/status", **bearer(researcher)).json() == {"blob_store_enabled": True}
    response = upload(api, researcher, b"\x00\x01payload")
    assert response.status_code == 201
    name = response.json()["uuid"]
    assert uuid.UUID(name) and (blob_store / name).read_bytes() == b"\x00\x01payload"
    recorded = AuditEntry.objects.get(action="blob.create")
    assert (recorded.actor_id, recorded.data) == (researcher.pk, {"uuid": name})

    # Readable once a run refers to it, by those who may view that run.
    task = make_task(world.collab_ab, world.org_a)
    make_run(task, world.org_b, input=name, blob_storage_used=True)
    download = api.get(f"/api/blobstream/{name}", **bearer(world.node_b))
    assert download.status_code == 200
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"] == f"attachment; filename=result_{name}.bin"
    assert b"".join(download.streaming_content) == b"\x00\x01payload"
    assert api.get(f"/api/blobstream/{name}", **bearer(world.node_c)).status_code == 401
    assert api.get(f"/api/blobstream/{uuid.uuid4()}", **bearer(world.node_b)).status_code == 404
    assert api.get("/api/blobstream/not-a-uuid", **bearer(world.node_b)).status_code == 404


@pytest.mark.usefixtures("blob_store")
def test_upload_rights(api, world):
    assert upload(api, make_user(world.org_a, "Viewer"), b"x").status_code == 401
    assert upload(api, user_with(world.org_a, "task.col.create"), b"x").status_code == 201
    assert upload(api, world.node_a, b"x").status_code == 201
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    assert upload(api, container_identity(task, world.node_a), b"x").status_code == 201
    Run.objects.filter(task=task).update(status="completed")
    store_status(task)
    # The token itself ends with its task (vantage6: a 403 from the upload).
    assert upload(api, container_identity(task, world.node_a), b"x").status_code == 401


def test_a_store_that_fails_answers_503_without_its_paths(api, world, settings, tmp_path):
    # The store's directory is a file: every write fails in the file system (FileExistsError).
    occupied = tmp_path / "store"
    occupied.write_bytes(b"")
    settings.LARGE_RESULT_STORE = f"file://{occupied}"
    audits = AuditEntry.objects.count()

    response = upload(api, make_user(world.org_a, "Researcher"), b"payload")

    assert response.status_code == 503
    assert response.json() == {"msg": "The large result store cannot take the upload now"}
    assert not Blob.objects.exists() and AuditEntry.objects.count() == audits


def test_a_django_storage_backend_can_hold_the_blobs(api, world, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    settings.LARGE_RESULT_STORE = "storage:blobs"
    name = upload(api, world.node_a, b"in memory").json()["uuid"]
    assert storages["blobs"].open(name).read() == b"in memory"


def test_deleting_runs_deletes_their_blobs(api, world, blob_store, django_capture_on_commit_callbacks):
    names = [upload(api, world.node_a, b"data").json()["uuid"] for _ in range(3)]
    task = make_task(world.collab_ab, world.org_a)
    make_run(task, world.org_a, input=names[0], result=names[1], blob_storage_used=True)
    root = make_user(world.org_a, "Root")
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/task/{task.pk}", **bearer(root)).status_code == 200
    assert sorted(path.name for path in blob_store.iterdir()) == [names[2]]


def test_big_bodies_stream_through_in_constant_memory(api, world, blob_store):
    """50 MB up and down; the peak of Python allocations stays a few chunks, not the body size."""
    size, chunk = 50 * 1024 * 1024, b"\xab" * (1024 * 1024)

    class Body:
        """A request body that produces its bytes on demand (like a socket)."""

        def __init__(self):
            self.left = size

        def read(self, n=-1):
            n = self.left if n is None or n < 0 else min(n, self.left)
            self.left -= n
            return chunk[:n] if n <= len(chunk) else chunk * (n // len(chunk)) + chunk[: n % len(chunk)]

        def readline(self, n=-1):
            return self.read(n)

    researcher = make_user(world.org_a, "Researcher")
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/blobstream", "CONTENT_TYPE": "application/octet-stream",
        "CONTENT_LENGTH": str(size), "wsgi.input": Body(), **bearer(researcher),
    }  # fmt: skip
    tracemalloc.start()
    try:
        response = api.request(**environ)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert response.status_code == 201, response.content
        name = response.json()["uuid"]
        assert (blob_store / name).stat().st_size == size

        task = make_task(world.collab_ab, world.org_a)
        make_run(task, world.org_a, result=name, blob_storage_used=True)
        download = api.get(f"/api/blobstream/{name}", **bearer(researcher))
        total = sum(len(part) for part in download.streaming_content)
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == size
    assert upload_peak < 8 * 1024 * 1024, upload_peak
    assert download_peak < 8 * 1024 * 1024, download_peak
