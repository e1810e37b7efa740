"""Blobs that escaped their organization's bound: uploads no run ever used, and blobs stored before
their sizes were recorded."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from nodes.events import housekeeping_jobs
from tasks.models import Blob
from tests.factories import make_run, make_task, make_user
from tests.tasks.test_blob_quota import MIB, _files, _upload, store  # noqa: F401 - store: a fixture

pytestmark = pytest.mark.django_db


def housekeeping(now) -> None:
    """One periodic round of a server process, at ``now``."""
    for job in housekeeping_jobs:
        if "now" in job.__code__.co_varnames:
            job(now=now)
        else:
            job()


def test_uploads_no_run_uses_give_their_room_back(api, world, store, django_capture_on_commit_callbacks):  # noqa: F811
    researcher = make_user(world.org_a, "Researcher")
    used = _upload(api, researcher, MIB).json()["uuid"]
    make_run(make_task(world.collab_ab, world.org_a), world.org_a, input=used, blob_storage_used=True)
    never_used = _upload(api, researcher, 2 * MIB).json()["uuid"]
    assert _upload(api, researcher, MIB).status_code == 413

    with django_capture_on_commit_callbacks(execute=True):
        housekeeping(timezone.now() + timedelta(hours=2))  # too soon to tell: kept
    assert set(_files(store)) == {used, never_used}
    with django_capture_on_commit_callbacks(execute=True):
        housekeeping(timezone.now() + timedelta(days=2))

    assert _files(store) == [used]
    assert list(Blob.objects.values_list("name", flat=True)) == [used]
    assert _upload(api, researcher, 2 * MIB).status_code == 201


@pytest.mark.usefixtures("store")
def test_blobs_stored_before_their_sizes_were_recorded_are_counted(api, world):
    researcher = make_user(world.org_a, "Researcher")
    name = _upload(api, researcher, 2 * MIB).json()["uuid"]
    result = _upload(api, make_user(world.org_b, "Researcher"), MIB).json()["uuid"]
    task = make_task(world.collab_ab, world.org_a)
    make_run(task, world.org_a, input=name, blob_storage_used=True)
    make_run(task, world.org_b, input="", result=result, blob_storage_used=True)
    Blob.objects.all().delete()  # as before the sizes were recorded
    assert _upload(api, researcher, 2 * MIB).status_code == 201  # room that was not counted
    Blob.objects.exclude(name__in=[name, result]).delete()

    importlib.import_module("tasks.migrations.0005_count_existing_blobs").count_existing(apps, None)

    assert set(Blob.objects.values_list("name", "organization_id", "size")) == {
        (name, world.org_a.pk, 2 * MIB),
        (result, world.org_b.pk, MIB),
    }
    assert _upload(api, researcher, 2 * MIB).status_code == 413
